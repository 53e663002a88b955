"""Start, resume and finish a sweep: validate everything, write the plan, run the jobs on a
backend, collect ``summary.parquet``.

Nothing is written until the scenario, every grid key, value and cell, every cell's engines and
the backend (Ray's address) have been checked. A job that raises stops the sweep: its cell and seed
are named, the jobs that finished are kept (and summarized), the running ones flush their rounds,
and ``resume_sweep`` continues from there: finished jobs are skipped, unfinished ones resume from
their last flushed round, so no round is computed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from market.engines.base import EngineError
from scenarios.loader import load_scenario

from .adapter import FLUSH_SECONDS, RunError, check_job
from .backends import SerialBackend
from .errors import JobFailed, SweepError
from .folder import Job, SweepFolder, check_new_folder
from .grid import Grid
from .worker import Outcome, Task, engines_for, release_engines, shared_env


class SweepInterrupted(Exception):
    """The user stopped the sweep (Ctrl-C); finished jobs and flushed rounds are kept."""

    def __init__(self, path: Path, finished: int, total: int) -> None:
        self.path, self.finished, self.total = path, finished, total
        super().__init__(f"interrupted with {finished} of {total} jobs finished in {path}")


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: its folder, its summary, how many jobs ran rounds and how many were
    already finished (skipped)."""

    path: Path
    summary: pd.DataFrame
    computed: int
    skipped: int


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep, not yet written: the base scenario, each cell's resolved scenario."""

    scenario: str
    grid: Grid
    seeds: int
    out: Path
    overrides: tuple[str, ...]
    base: Any
    resolved: tuple[Any, ...]

    @property
    def jobs(self) -> int:
        return len(self.resolved) * self.seeds


def plan_sweep(
    scenario: str | Path,
    grid: Grid,
    *,
    seeds: int,
    out: Path,
    overrides: Sequence[str] = (),
    cache: bool = True,
) -> SweepPlan:
    """Check everything a sweep needs before it writes anything: ``seeds``, the scenario with
    its ``--set`` ``overrides``, every grid key, value and cell, the output folder, and every
    cell's engines and models (built once here; real LLMs load in this process)."""
    if isinstance(seeds, bool) or int(seeds) < 1:
        raise SweepError(f"--seeds {seeds}: must be at least 1 — e.g. --seeds 5")
    out = Path(out)
    base = load_scenario(scenario, overrides)
    resolved = grid.validate(scenario, overrides)
    check_new_folder(out)
    for cell, cell_scenario in zip(grid.cells(), resolved, strict=True):
        try:
            check_job(cell_scenario, engines_for(cell_scenario, cache=cache), base.seed)
        except (RunError, EngineError) as err:
            raise SweepError(f"--grid cell {cell.label}: {' '.join(str(err).split())}") from err
    return SweepPlan(str(scenario), grid, int(seeds), out, tuple(overrides), base, tuple(resolved))


def launch_sweep(
    plan: SweepPlan,
    *,
    backend=None,
    cache: bool = True,
    flush_seconds: float = FLUSH_SECONDS,
    on_job: Callable[[Outcome], None] = lambda outcome: None,
) -> SweepResult:
    """Connect the backend, write the plan into its folder, run every job."""
    backend = backend or SerialBackend()
    if not isinstance(backend, SerialBackend):
        release_engines()  # the workers build their own
    try:
        backend.start()
        folder = SweepFolder.create(
            plan.out,
            base=plan.base,
            origin=getattr(plan.base, "source", plan.scenario),
            overrides=plan.overrides,
            grid=plan.grid,
            resolved=plan.resolved,
            seeds=plan.seeds,
        )
        return _execute(folder, backend, cache, flush_seconds, on_job)
    finally:
        backend.close()


def start_sweep(
    scenario: str | Path,
    grid: Grid,
    *,
    seeds: int,
    out: Path,
    overrides: Sequence[str] = (),
    backend=None,
    cache: bool = True,
    flush_seconds: float = FLUSH_SECONDS,
    on_job: Callable[[Outcome], None] = lambda outcome: None,
) -> SweepResult:
    """`plan_sweep`, then `launch_sweep`: every cell × seed of ``grid`` on ``scenario`` into
    ``out``, ``seeds`` replicates per cell with seeds root, root + 1, ... (`folder.job_seed`)."""
    plan = plan_sweep(scenario, grid, seeds=seeds, out=out, overrides=overrides, cache=cache)
    return launch_sweep(
        plan, backend=backend, cache=cache, flush_seconds=flush_seconds, on_job=on_job
    )


def resume_sweep(
    path: Path,
    *,
    backend=None,
    cache: bool = True,
    flush_seconds: float = FLUSH_SECONDS,
    on_job: Callable[[Outcome], None] = lambda outcome: None,
) -> SweepResult:
    """Continue the sweep in ``path``: skip finished jobs, resume the others."""
    folder = SweepFolder.open(path)
    backend = backend or SerialBackend()
    backend.start()
    try:
        return _execute(folder, backend, cache, flush_seconds, on_job)
    finally:
        backend.close()


def _execute(folder, backend, cache: bool, flush_seconds: float, on_job) -> SweepResult:
    env = shared_env()
    tasks = [
        Task(job, folder.cell_file(job.cell), folder.run_dir(job), cache, flush_seconds, env)
        for job in folder.jobs
    ]
    rows: dict[Job, tuple] = {}
    computed = 0
    failed: Outcome | None = None
    interrupted = False

    def on_outcome(outcome: Outcome) -> bool:
        nonlocal computed, failed, interrupted
        if outcome.error is not None:
            failed = failed or outcome
            return False
        if outcome.interrupted:
            interrupted = True
            return False
        rows[outcome.job] = outcome.rows
        computed += outcome.computed
        on_job(outcome)
        return True

    folder.commit("running", backend=backend.label, failed=None)
    crashed = False
    try:
        backend.run(tasks, on_outcome)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        crashed = True
        raise
    finally:  # whatever stopped the sweep, the finished jobs are summarized
        summary = folder.write_summary(rows)
        complete = len(rows) == len(tasks)
        status = "failed" if failed or crashed else "finished" if complete else "interrupted"
        folder.commit(status, finished_jobs=len(rows), failed=_failure(folder, failed))
    if failed is not None:
        raise JobFailed(
            f"job {failed.job.name} failed (cell {_cell_label(folder, failed.job)}, seed index "
            f"{failed.job.seed_index}, seed {failed.job.seed}): {failed.error} — its run folder "
            f"is {folder.run_dir(failed.job)}; {len(rows)} finished jobs are kept; fix the cause "
            f"and continue with `admarket sweep --resume {folder.path}`"
        )
    if interrupted or len(rows) < len(tasks):
        raise SweepInterrupted(folder.path, len(rows), len(tasks))
    return SweepResult(folder.path, summary, computed, len(rows) - computed)


def _cell_label(folder: SweepFolder, job: Job) -> str:
    return folder.grid.cells()[job.cell].label


def _failure(folder: SweepFolder, failed: Outcome | None) -> dict | None:
    if failed is None:
        return None
    job = failed.job
    return {
        "job": job.name,
        "cell": job.cell,
        "label": _cell_label(folder, job),
        "seed_index": job.seed_index,
        "seed": job.seed,
        "error": failed.error,
    }


__all__ = [
    "SweepInterrupted",
    "SweepPlan",
    "SweepResult",
    "launch_sweep",
    "plan_sweep",
    "resume_sweep",
    "start_sweep",
]
