"""The sweep's only door into the run machinery (`market.runner`): run one job into its own run
folder, check that a job can be built, and read a job's tables.

A job's run folder is exactly the folder ``admarket run SCENARIO --seed S --out DIR`` writes (one
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

from market.runner import (
    FLUSH_SECONDS,
    EnginePool,
    RunError,
    RunFolder,
    RunInterrupted,
    check_buildable,
    execute,
)

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
    """Bring one job's run folder to its last round: create it, resume it where a killed run
    left it, or leave it alone when it is finished. Returns whether any round was computed.

    ``scenario`` is the job's resolved scenario with its seed set to ``seed``. Raises
    `RunInterrupted` when ``on_round`` raises KeyboardInterrupt (rows flushed first).
    """
    folder = Path(folder)
    if (folder / _META).is_file():
        run = RunFolder.open(folder)
        if run.completed_rounds >= run.total_rounds:
            return False
    else:  # new, or cut short before its meta.json was written: start it afresh
        run = RunFolder.create(folder, scenario, [int(seed)])
    execute(run, engines, on_round=on_round, flush_seconds=flush_seconds)
    return True


def job_started(folder: Path) -> bool:
    """Whether a run folder exists there (it has a ``meta.json``)."""
    return (Path(folder) / _META).is_file()


def job_finished(folder: Path) -> bool:
    """Whether a job's run folder holds every round of every variant (reads ``meta.json``)."""
    meta_path = Path(folder) / _META
    if not meta_path.is_file():
        return False
    try:
        run = RunFolder(Path(folder), json.loads(meta_path.read_text(encoding="utf-8")))
        return run.completed_rounds >= run.total_rounds
    except (ValueError, KeyError, TypeError):
        return False


def check_job(scenario: Any, engines: EnginePool, seed: int) -> None:
    """Build every variant's model once (engines load here), so bad settings fail up front."""
    check_buildable(scenario, engines, seed)


def new_engines(scenario: Any, *, cache: bool) -> EnginePool:
    """An engine pool for the scenario's catalog (one engine per distinct engine spec)."""
    return EnginePool(scenario.catalog(), cache=cache)


def read_job_table(folder: Path, table: str, columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of one table of a job's run folder (its part files, or one parquet file)."""
    folder = Path(folder)
    source = folder / table if (folder / table).is_dir() else folder / f"{table}.parquet"
    return pd.read_parquet(source, columns=list(columns))
