"""What a worker does with one job, whatever runs it (this process, a process pool, a Ray task).

Each worker process keeps one engine pool per scenario catalog (`engines_for`), so the engine is
built once per process and reused by every job it runs; real LLMs sit behind the SQLite call cache
in ``$ADMARKET_CACHE`` (or the user's cache folder), one file that every worker on a machine reads
and writes (WAL mode, `market.engines.cache`).

A task never raises: it returns an `Outcome` carrying the job's metric rows, or the error, or the
news that it was stopped, so that outcomes cross process boundaries as plain data.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market.engines.cache import CACHE_ENV
from scenarios.loader import load_scenario

from .adapter import FLUSH_SECONDS, EnginePool, RunInterrupted, new_engines, run_job
from .folder import Job
from .metrics import job_metrics

_ENGINES: dict[tuple[str, bool, str], EnginePool] = {}
_CELLS: dict[str, Any] = {}  # a cell file's content digest -> its resolved scenario
_STOP: Any = None  # a multiprocessing Event in pool workers: set by the parent to stop the sweep
_ORPHANED = threading.Event()  # set when the parent process is gone
_RUNNING = threading.Event()  # set while this process runs a job


@dataclass(frozen=True)
class Task:
    """One job to bring to its last round, and where its scenario and run folder live."""

    job: Job
    cell_file: Path
    run_dir: Path
    cache: bool = True
    flush_seconds: float = FLUSH_SECONDS
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What became of a task: ``rows`` (one per variant) when finished, else why not."""

    job: Job
    rows: tuple[dict[str, Any], ...] = ()
    computed: bool = False
    error: str | None = None
    interrupted: bool = False
    cpu_seconds: float = 0.0  # CPU time of the process that ran it, spent on it

    @property
    def finished(self) -> bool:
        return self.error is None and not self.interrupted


def shared_env() -> dict[str, str]:
    """The settings a worker must share with the process that started the sweep: the engine
    call cache's folder, when one is set."""
    return {CACHE_ENV: os.environ[CACHE_ENV]} if os.environ.get(CACHE_ENV) else {}


def engines_for(scenario: Any, *, cache: bool) -> EnginePool:
    """This process's engine pool for the scenario's catalog (built on first use)."""
    catalog = scenario.catalog()
    key = (
        json.dumps([dict(catalog.brand_topics), dict(catalog.query_topics)], sort_keys=True),
        bool(cache),
        os.environ.get(CACHE_ENV, ""),
    )
    if key not in _ENGINES:
        _ENGINES[key] = new_engines(scenario, cache=cache)
    return _ENGINES[key]


def cell_scenario(path: Path) -> Any:
    """A cell's resolved scenario (``cells/cNNNN.yaml``), parsed once per process and content."""
    key = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    if key not in _CELLS:
        _CELLS[key] = load_scenario(path)
    return _CELLS[key]


def release_engines() -> None:
    """Drop this process's engines (the sweep's parent, once workers take over)."""
    _ENGINES.clear()


def init_pool_worker(stop: Any, env: Mapping[str, str], lifeline: Any) -> None:
    """Process-pool initializer: Ctrl-C goes to the parent, which stops the workers through
    ``stop``. ``lifeline`` is the read end of a pipe whose write end only the parent holds: when
    the parent dies (killed) it reads EOF, a running job stops after its round, flushed, and the
    worker exits (`_watch_parent`): nothing keeps running or waiting unowned."""
    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop
    os.environ.update(env)
    threading.Thread(
        target=_watch_parent, args=(lifeline,), name="watch-parent", daemon=True
    ).start()


def _watch_parent(lifeline: Any) -> None:
    try:
        lifeline.recv()  # the parent never sends: this returns only by EOF, when it is gone
    except (EOFError, OSError):
        pass
    _ORPHANED.set()
    while _RUNNING.is_set():  # the job stops after its round (`_check_stop`) and flushes
        time.sleep(0.05)
    os._exit(0)


def _check_stop() -> None:
    """Called after every round: stopping is the runner's Ctrl-C path (flush, then resumable)."""
    if _STOP is not None and (_STOP.is_set() or _ORPHANED.is_set()):
        raise KeyboardInterrupt


def run_task(task: Task) -> Outcome:
    """Run (or resume, or skip when finished) one job, then read its metrics."""
    if _STOP is not None and (_STOP.is_set() or _ORPHANED.is_set()):  # queued before a stop
        return Outcome(task.job, interrupted=True)
    _RUNNING.set()
    cpu = time.process_time()
    try:
        os.environ.update(task.env)
        scenario = cell_scenario(task.cell_file).model_copy(update={"seed": task.job.seed})
        computed = run_job(
            scenario,
            task.job.seed,
            task.run_dir,
            engines_for(scenario, cache=task.cache),
            on_round=_check_stop,
            flush_seconds=task.flush_seconds,
        )
        rows = tuple(job_metrics(Path(task.run_dir)))
        return Outcome(task.job, rows, computed, cpu_seconds=time.process_time() - cpu)
    except RunInterrupted:
        return Outcome(task.job, interrupted=True)
    except Exception as error:  # reported by the parent with the job's cell and seed
        text = " ".join(str(error).split()) or "(no message)"
        return Outcome(task.job, error=f"{type(error).__name__}: {text}")
    finally:
        _RUNNING.clear()
