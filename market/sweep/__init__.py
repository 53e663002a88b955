"""Sweeps: a scenario over a grid of parameters × seeds, in parallel, resumable (issue 9).

    from market.sweep import build_grid, make_backend, start_sweep
    grid = build_grid(["mechanism.kwargs.tau=0.5,1,2"])
    result = start_sweep("free_riding", grid, seeds=5, out=Path("runs/tau"),
                         backend=make_backend("process", workers=2))
    result.summary  # one row per cell × seed × variant (``summary.parquet``)

Modules: `grid` (keys, values, cells), `folder` (the sweep folder, jobs and their seeds),
`adapter` (the only door into `market.runner`), `worker` (one job, in any process), `metrics`
(a job's headline numbers), `backends` (this process, a process pool, Ray), `driver` (start,
resume, stop). The command line is ``admarket sweep``; notebooks use `market.api`.
"""

from market.sweep.backends import BACKENDS, default_workers, make_backend
from market.sweep.driver import (
    SweepInterrupted,
    SweepPlan,
    SweepResult,
    launch_sweep,
    plan_sweep,
    resume_sweep,
    start_sweep,
)
from market.sweep.errors import JobFailed, SweepError
from market.sweep.folder import (
    CELLS_FILE,
    SUMMARY_FILE,
    SWEEP_FILE,
    Job,
    SweepFolder,
    is_sweep_folder,
    job_seed,
)
from market.sweep.grid import Axis, Cell, Grid, build_grid, parse_grid_flag, read_grid_file
from market.sweep.metrics import METRICS

__all__ = [
    "BACKENDS",
    "CELLS_FILE",
    "METRICS",
    "SUMMARY_FILE",
    "SWEEP_FILE",
    "Axis",
    "Cell",
    "Grid",
    "Job",
    "JobFailed",
    "SweepError",
    "SweepFolder",
    "SweepInterrupted",
    "SweepPlan",
    "SweepResult",
    "build_grid",
    "default_workers",
    "is_sweep_folder",
    "job_seed",
    "launch_sweep",
    "make_backend",
    "parse_grid_flag",
    "plan_sweep",
    "read_grid_file",
    "resume_sweep",
    "start_sweep",
]
