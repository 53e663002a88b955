"""The sweep's only door into the run machinery (`market.runner`): run one job into its own run
folder, check that a job can be built, and read a job's tables.

A job's run folder is exactly the folder ``admarket run SCENARIO --seed S --out DIR`` writes
(through the runner's one-job entry point `market.runner.run_one`) (one
seed, every variant), so it resumes, reports and reads back like any run. Everything the sweep
needs from the runner goes through the functions below, so a change of the runner's API is one
edit here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from market.engines.pool import EnginePool
from market.runner import FLUSH_SECONDS, RunError, RunInterrupted, run_one
from market.studies import build_study

__all__ = [
    "FLUSH_SECONDS",
    "EnginePool",
    "RunError",
    "RunInterrupted",
    "check_job",
    "job_finished",
    "job_started",
    "new_engines",
    "read_job_table",
    "run_job",
]

_META = "meta.json"


def run_job(
    scenario: Any,
    seed: int,
    folder: Path,
    engines: EnginePool,
    *,
    on_round: Callable[[], None] = lambda: None,
    flush_seconds: float = FLUSH_SECONDS,
) -> bool:
    """Bring one job's run folder to its last round through the runner's `run_one`: create it,
    resume it where a killed run left it, or leave it alone when it is finished. Returns whether
    any round was computed.

    ``scenario`` is the job's resolved scenario with its seed set to ``seed``. Raises
    `RunInterrupted` when ``on_round`` raises KeyboardInterrupt (rows flushed first).
    """
    folder = Path(folder)
    meta = _meta(folder)
    if meta is not None and _rounds_done(meta):
        if meta.get("status") != "finished":  # cut short while compacting: no round to compute
            run_one(scenario, int(seed), folder, engines=engines, flush_seconds=flush_seconds)
        return False
    run_one(
        scenario, int(seed), folder, engines=engines, on_round=on_round, flush_seconds=flush_seconds
    )
    return True


def job_started(folder: Path) -> bool:
    """Whether a run folder exists there (it has a ``meta.json``)."""
    return (Path(folder) / _META).is_file()


def job_finished(folder: Path) -> bool:
    """Whether a job's run folder is finished: every round of every variant computed and the
    folder closed (its tables compacted), as its ``meta.json`` says."""
    meta = _meta(Path(folder))
    return meta is not None and _rounds_done(meta) and meta.get("status") == "finished"


def _meta(folder: Path) -> dict | None:
    """A job folder's ``meta.json``, or None when it has none (or it cannot be read)."""
    try:
        return json.loads((folder / _META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rounds_done(meta: dict) -> bool:
    """Whether every (variant, seed) of the job has computed all its rounds."""
    try:
        rounds = int(meta["rounds"])
        done = [int(d) for per in meta["completed"].values() for d in per.values()]
        return len(done) == len(meta["seeds"]) * len(meta["variants"]) and min(done) >= rounds
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def check_job(scenario: Any, engines: EnginePool, seed: int) -> None:
    """Build every variant's model once (engines load here), so bad settings fail up front."""
    try:
        build_study("market", scenario).check(engines, seed)
    except (ValueError, TypeError, KeyError) as err:
        raise RunError(str(err)) from err


def new_engines(scenario: Any, *, cache: bool) -> EnginePool:
    """An engine pool for the scenario's catalog (one engine per distinct engine spec)."""
    return EnginePool(scenario.catalog(), cache=cache)


def read_job_table(folder: Path, table: str, columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of one table of a job's run folder (its part files, or one parquet file)."""
    folder = Path(folder)
    source = folder / table if (folder / table).is_dir() else folder / f"{table}.parquet"
    return pd.read_parquet(source, columns=list(columns))
