"""The study runner: every study — market runs, seed sweeps, the paper's replication — goes through
here, into one run-folder layout (`market.runfolder`, docs/data.md).

Seeding: a run folder lists its root seeds; each (variant, seed) *replicate* gets its root seed
and derives every random stream from it as ``SeedSequence`` children (`market.studies`), so a
replicate's rows depend on nothing but the scenario, the variant and that seed — not on the other
replicates, on their order or on the process that runs them.

For sweeps and notebooks, `run_one` runs ONE job — a scenario (all its variants) under one root
seed into one output folder — and returns when it is done; called again on the same folder it
resumes (or returns at once when finished). A sweep worker calls it with its own `EnginePool`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from market.columns import RUN_TABLES, SCHEMAS
from market.engines.base import EngineInfo
from market.engines.pool import EnginePool
from market.runfolder import (
    META_FILE,
    SCENARIO_FILE,
    TIMING_COLUMNS,
    RunError,
    RunFolder,
    check_writable_target,
    comparable,
    read_table,
)
from market.studies import STUDY_TABLES, Replicate, Study, build_study
from scenarios.loader import dump_scenario

TABLES = tuple(RUN_TABLES)
FLUSH_SECONDS = 2.0
MAX_PARTS = 256  # parts a folder holds before they are compacted mid-run (meta.json stays small)

__all__ = [
    "FLUSH_SECONDS",
    "SCHEMAS",
    "TABLES",
    "TIMING_COLUMNS",
    "EnginePool",
    "RunError",
    "RunFolder",
    "RunInterrupted",
    "RunWriteError",
    "Terminated",
    "comparable",
    "create",
    "default_run_dir",
    "execute",
    "read_table",
    "reopen",
    "run_one",
]


MAX_SEED = 2**63 - 1  # seeds are stored as 64-bit integers


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so a terminated run stops like a Ctrl-C'd one."""


class RunInterrupted(Exception):
    """The user stopped the run (Ctrl-C or SIGTERM); every completed round up to the last flush
    is saved. ``terminated``: it was SIGTERM."""

    def __init__(self, run_dir: Path, completed: int, *, terminated: bool = False) -> None:
        self.run_dir = run_dir
        self.completed = completed
        self.terminated = terminated
        super().__init__(f"interrupted after {completed} completed rounds in {run_dir}")


class RunWriteError(RunError):
    """Writing the run folder failed mid-run (a full disk); what was committed is kept."""


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<timestamp>``."""
    return Path(root) / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _engine_json(info: EngineInfo) -> dict[str, Any]:
    return {
        "engine": info.engine,
        "model": info.model,
        "device": info.device,
        "dtype": info.dtype,
        "extra": {str(k): str(v) for k, v in dict(info.extra).items()},
    }


def _checked(study: Study, engines: EnginePool, seed: int) -> None:
    """Build what the study needs once (engines load here) so bad settings fail before running."""
    try:
        study.check(engines, seed)
    except (ValueError, TypeError, KeyError) as err:
        raise RunError(str(err)) from err


def create(
    scenario: Any,
    out: Path,
    seeds: Sequence[int],
    *,
    study: str = "market",
    options: Mapping[str, Any] | None = None,
    engines: EnginePool | None = None,
    cache: bool = True,
) -> tuple[RunFolder, Study, EnginePool]:
    """A new run folder for a resolved scenario, after checking that every replicate can be
    built (nothing is written for a bad scenario). Returns the folder, the study rebuilt from
    the scenario as written there, and the engines."""
    try:
        built = build_study(study, scenario, options)
    except ValueError as err:
        raise RunError(str(err)) from err
    for seed in seeds:
        if not 0 <= int(seed) <= MAX_SEED:
            raise RunError(
                f"seed {seed} is out of range: seeds are stored as 64-bit integers, "
                f"0 to {MAX_SEED}; pick a smaller --seed"
            )
    check_writable_target(Path(out))
    engines = engines if engines is not None else EnginePool(scenario.catalog(), cache=cache)
    _checked(built, engines, seeds[0])
    folder = RunFolder.create(
        out,
        scenario,
        seeds,
        study=built.kind,
        options=built.options(),
        variants=built.variants,
        rounds=built.rounds,
        tables=built.tables,
        facts=built.facts(),
    )
    try:
        return folder, build_study(built.kind, folder.scenario, folder.options), engines
    except BaseException:
        folder.release()
        raise


def reopen(
    path: Path,
    *,
    rounds: int | None = None,
    engines: EnginePool | None = None,
    cache: bool = True,
    repair: bool = False,
) -> tuple[RunFolder, Study, EnginePool]:
    """An existing run folder to resume (locked, checked against its meta.json), its study and
    engines; ``rounds`` may extend a market run, ``repair`` drops damaged rounds (they are
    computed again)."""
    folder = RunFolder.open(path, STUDY_TABLES, rounds=rounds, repair=repair)
    try:
        try:
            study = build_study(folder.study, folder.scenario, folder.options)
        except ValueError as err:
            raise RunError(f"{Path(path) / META_FILE}: {err}") from err
        if tuple(study.variants) != folder.variants:
            raise RunError(
                f"{Path(path) / SCENARIO_FILE}: its variants {list(study.variants)} are not the "
                f"run's {list(folder.variants)} (meta.json) — restore the run's own scenario.yaml"
            )
        engines = (
            engines if engines is not None else EnginePool(folder.scenario.catalog(), cache=cache)
        )
        _checked(study, engines, folder.seeds[0])
    except BaseException:
        folder.release()
        raise
    return folder, study, engines


def execute(
    folder: RunFolder,
    study: Study,
    engines: EnginePool,
    *,
    on_round: Callable[[], None] = lambda: None,
    flush_seconds: float = FLUSH_SECONDS,
) -> None:
    """Run every (seed, variant) replicate of the folder up to its rounds, flushing as rounds
    complete.

    Rows are flushed when ``flush_seconds`` have passed since the last flush (0: after every
    round), at the end of each replicate, and when the run stops early: on Ctrl-C, which then
    raises `RunInterrupted`, and on an error, which is re-raised; either way the folder can be
    resumed.
    """
    started = time.perf_counter()
    replicate: Replicate | None = None  # the replicate running, once restored
    flushing = False
    last_flush = time.monotonic()
    engine_seconds = 0.0  # of the current replicate, already recorded

    def flush() -> None:
        nonlocal flushing, last_flush, engine_seconds
        flushing = True
        folder.meta["engine_seconds"] = round(
            float(folder.meta.get("engine_seconds", 0.0))
            + replicate.engine_seconds
            - engine_seconds,
            6,
        )
        engine_seconds = replicate.engine_seconds
        folder.write(replicate.drain(), replicate.variant, replicate.seed, replicate.round)
        flushing = False
        last_flush = time.monotonic()

    folder.commit(status="running")
    try:
        for seed in folder.seeds:
            for variant in folder.variants:
                done = folder.completed(variant, seed)
                if done >= folder.rounds:
                    continue
                starting = study.replicate(variant, seed, engines)
                try:
                    folder.meta["engines"][variant] = _engine_json(starting.engine.info)
                    if done:
                        starting.restore(folder, done)
                except BaseException:
                    starting.close()  # nothing new to save: the folder keeps its rounds
                    raise
                replicate, engine_seconds = starting, 0.0
                while replicate.round < folder.rounds:
                    replicate.step()
                    on_round()
                    if time.monotonic() - last_flush >= flush_seconds:
                        flush()
                        if len(folder.meta["part_log"]) >= MAX_PARTS:
                            folder.compact()
                flush()
                replicate.close()
                replicate = None
        try:
            folder.compact()
        except OSError:
            pass  # the parts stay, and stay readable; a later resume compacts them
    except BaseException as error:  # keep every completed round, whatever stopped the run
        interrupted = isinstance(error, KeyboardInterrupt)
        try:
            if replicate is not None and not flushing:  # a flush cut short is dropped on resume
                flush()
        except OSError:
            pass  # the rounds since the last flush are lost; resuming computes them again
        finally:
            if replicate is not None:
                replicate.close()
            status = "interrupted" if interrupted else "failed"
            try:
                folder.record_status(status, wall_seconds=time.perf_counter() - started)
            except OSError:
                pass  # meta.json cannot be written at all: it keeps its last commit
        if interrupted:
            raise RunInterrupted(
                folder.path, folder.completed_rounds, terminated=isinstance(error, Terminated)
            ) from None
        if isinstance(error, OSError):
            raise RunWriteError(
                f"{getattr(error, 'filename', None) or folder.path}: "
                f"{error.strerror or error} while writing the run folder; "
                f"{folder.completed_rounds} completed rounds are saved — free space (or fix the "
                f"folder) and resume with `admarket run --resume {folder.path}`"
            ) from error
        raise
    folder.commit(status="finished", wall_seconds=time.perf_counter() - started)


def run_one(
    scenario: Any,
    seed: int,
    out: Path,
    *,
    engines: EnginePool | None = None,
    study: str = "market",
    options: Mapping[str, Any] | None = None,
    flush_seconds: float = FLUSH_SECONDS,
    on_round: Callable[[], None] = lambda: None,
) -> RunFolder:
    """Run ONE job — every variant of ``scenario`` under root seed ``seed`` — into ``out``.

    The entry point for sweeps: a worker process calls it once per job with its own engine pool
    (built once per worker and reused; its disk cache is shared). Resumable: when ``out`` already
    holds this job (same scenario, seed and study), the call continues it from its last flush,
    or returns at once when it is finished; a folder holding anything else is a `RunError`.
    Returns the finished folder (`read_table(folder.path, name)` reads its tables).
    """
    out = Path(out)
    if (out / META_FILE).exists():
        folder, built, engines = reopen(out, engines=engines)
        try:
            wanted = build_study(study, scenario, options)
        except ValueError as err:
            folder.release()
            raise RunError(str(err)) from err
        same = (
            folder.study == wanted.kind
            and folder.seeds == (int(seed),)
            and dump_scenario(folder.scenario) == dump_scenario(scenario)
            and folder.options == wanted.options()
        )
        if not same:
            folder.release()
            raise RunError(
                f"{out} holds another job (scenario, seed or study differ); pick another folder"
            )
    else:
        folder, built, engines = create(
            scenario, out, [int(seed)], study=study, options=options, engines=engines
        )
    try:
        if folder.completed_rounds < folder.total_rounds or folder.meta["status"] != "finished":
            execute(folder, built, engines, on_round=on_round, flush_seconds=flush_seconds)
    finally:
        folder.release()
    return folder
