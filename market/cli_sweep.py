"""`admarket sweep --grid ...`: a grid sweep with a progress bar (the sweep package does the work).

Split from `market.cli`, which dispatches here for grid sweeps and for ``--resume`` of a sweep
folder; plain ``sweep --seeds N`` stays a run of N seeds in one run folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from market.cli_usage import EXIT_INTERRUPTED, UsageError, overrides_of
from market.runner import default_run_dir
from scenarios.loader import load_scenario


def grid_sweep(args: argparse.Namespace, console: Console) -> int:
    from market import sweep

    backend = sweep.make_backend(args.backend, args.workers, args.address)
    errors = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("jobs"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    )
    common = {"backend": backend, "cache": not args.no_cache, "flush_seconds": args.flush_seconds}
    try:
        if args.resume is not None:  # check everything before the progress bar shows
            no_new_settings(args)
            manifest = sweep.SweepFolder.open(args.resume).manifest
            name, total = str(manifest["scenario"]), int(manifest["jobs"])
        else:
            overrides = overrides_of(args)
            name = load_scenario(args.scenario, overrides).name
            grid = sweep.build_grid(args.grid, args.grid_file)
            plan = sweep.plan_sweep(
                args.scenario,
                grid,
                seeds=args.seeds,
                out=args.out or default_run_dir(f"{name}-sweep"),
                overrides=overrides,
                cache=not args.no_cache,
            )
            total = plan.jobs
        backend.start()
        with progress:
            task = progress.add_task(f"{name} sweep", total=total)
            on_job = lambda outcome: progress.advance(task)  # noqa: E731
            if args.resume is not None:
                result = sweep.resume_sweep(args.resume, on_job=on_job, **common)
            else:
                result = sweep.launch_sweep(plan, on_job=on_job, **common)
    except sweep.SweepInterrupted as stop:
        progress.stop()
        errors.print(
            f"admarket: interrupted; {stop.finished} of {stop.total} jobs finished in "
            f"{stop.path}. Resume with: admarket sweep --resume {stop.path}",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    finally:
        backend.close()
    console.print(
        f"sweep folder: {result.path} ({result.computed} jobs run, {result.skipped} already "
        "finished)",
        highlight=False,
        soft_wrap=True,
    )
    from reports import sweep_report

    if not args.no_report:
        path = sweep_report.build_sweep_report(result.path)
        console.print(f"report: {path}", highlight=False, soft_wrap=True)
    sweep_report.print_sweep_summary(result.path, console)
    if not args.no_report:
        regime_map_report(result.path, console)
    return 0


def regime_map_report(path: Path, console: Console) -> None:
    """A free-riding regime map's own page (`reports.regime_map`), beside sweep.html."""
    from reports import regime_map

    if regime_map.is_regime_map(path):
        regime_map.build_regime_map(path)
        regime_map.print_regime_summary(path, console)


def no_new_settings(args: argparse.Namespace) -> None:
    given = [
        flag
        for flag, value in (
            ("SCENARIO", args.scenario),
            ("--grid", args.grid),
            ("--grid-file", args.grid_file),
            ("--seeds", args.seeds is not None),
            ("--seed", args.seed is not None),
            ("--rounds", args.rounds is not None),
            ("--set", args.overrides),
            ("--out", args.out),
        )
        if value
    ]
    if given:
        raise UsageError(f"--resume reloads the sweep from its folder; drop {', '.join(given)}")
