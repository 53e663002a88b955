"""`admarket`: run, sweep, report, replicate, study, probe, bench, scenarios, dashboard.

Bad input (a scenario that does not validate, an engine that will not load, a missing, damaged,
locked or unwritable run folder, bad arguments, a full disk) prints ONE line
``admarket: error: <message>`` on stderr and exits 2, without a traceback; a grid with several bad
keys or values prints one such line for each. A sweep job that raises prints one line naming its
cell and seed and exits 1. Ctrl-C during a run or sweep flushes the completed rounds, says how to
resume, and exits 130; SIGTERM does the same and exits 143.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from market.cli_sweep import grid_sweep, regime_map_report
from market.cli_usage import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    overrides_of,
)
from market.dashboard.server import DashboardError
from market.engines.base import EngineError
from market.runner import (
    FLUSH_SECONDS,
    MAX_SEED,
    EnginePool,
    RunError,
    RunFolder,
    RunInterrupted,
    Terminated,
    create,
    default_run_dir,
    execute,
    reopen,
)
from market.studies import Study
from market.sweep.backends import BACKENDS
from market.sweep.errors import JobFailed, SweepError
from market.sweep.folder import is_sweep_folder
from scenarios.loader import ScenarioError, list_scenarios, load_scenario


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line through `main` instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _RoundsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} rounds/s" if speed else "– rounds/s", style="cyan")


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="admarket", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def run_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--seed", type=int, help="root seed (default: the scenario's)")
        sub.add_argument("--rounds", type=int, help="rounds per variant and seed")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="PATH=VALUE",
            help="override a scenario key, e.g. --set mechanism.kwargs.tau=0.5 (repeatable)",
        )
        sub.add_argument("--out", type=Path, help="run folder (default: runs/<name>-<timestamp>)")
        sub.add_argument("--no-report", action="store_true", help="skip report.html at the end")
        sub.add_argument("--no-cache", action="store_true", help="do not cache engine calls")
        sub.add_argument(
            "--flush-seconds",
            type=float,
            default=FLUSH_SECONDS,
            help=f"flush rows at most this often (default {FLUSH_SECONDS}; 0: every round)",
        )

    run = commands.add_parser("run", help="run a scenario (every variant) into a run folder")
    run.add_argument("scenario", nargs="?", help="built-in scenario name or YAML file")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    run.add_argument(
        "--repair",
        action="store_true",
        help="with --resume: drop rounds whose files are damaged and compute them again",
    )
    run_options(run)

    sweep = commands.add_parser(
        "sweep",
        help="N replicates (seeds seed..seed+N-1) in one run folder, or a grid of parameters",
    )
    sweep.add_argument("scenario", nargs="?", help="built-in scenario name or YAML file")
    sweep.add_argument("--seeds", type=int, help="number of replicates N (per grid cell)")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a grid key and its values, e.g. --grid mechanism.kwargs.tau=0.5,1,2 (repeatable; "
        "cells are the cartesian product)",
    )
    sweep.add_argument("--grid-file", type=Path, metavar="FILE", help="grid as YAML: KEY: [values]")
    sweep.add_argument(
        "--workers", type=int, help="processes for a grid sweep (default: the number of cores)"
    )
    sweep.add_argument(
        "--backend", choices=BACKENDS, default="process", help="process pool (default) or ray"
    )
    sweep.add_argument("--address", metavar="ADDR", help="Ray cluster address (--backend ray)")
    sweep.add_argument(
        "--resume", type=Path, metavar="DIR", help="continue the sweep (or run) in DIR"
    )
    run_options(sweep)

    commands.add_parser("scenarios", help="list the built-in scenarios")

    report = commands.add_parser(
        "report", help="rebuild report.html of a run folder (sweep.html of a sweep folder)"
    )
    report.add_argument("run_dir", type=Path)

    # These forward every further argument (--help included) to the command they delegate to.
    commands.add_parser("replicate", help="replicate the MOSAIC paper's figures", add_help=False)
    bench = commands.add_parser(
        "bench", help="benchmarks: bench engine|market|sweep [ARGS]", add_help=False
    )
    bench.add_argument("target", choices=("engine", "market", "sweep"))
    study = commands.add_parser(
        "study",
        help="built-in studies: study token_vs_mosaic|free_riding_map [ARGS]",
        add_help=False,
    )
    study.add_argument("target", choices=("token_vs_mosaic", "free_riding_map"))

    dashboard = commands.add_parser("dashboard", help="watch a market live in the browser")
    dashboard.add_argument(
        "scenario", nargs="?", help="built-in name or YAML (default free_riding)"
    )
    dashboard.add_argument("--port", type=int, default=8521, help="port to serve on (default 8521)")
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    commands.add_parser(
        "probe", help="how often the LLM names the brands it is asked to (dilution)", add_help=False
    )
    return parser


def _check_run_args(args: argparse.Namespace) -> None:
    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and 2^63 - 1, got {args.seed}")
    if not (math.isfinite(args.flush_seconds) and args.flush_seconds >= 0):
        raise UsageError(
            f"--flush-seconds must be a finite number of seconds >= 0, got {args.flush_seconds}"
        )
    if getattr(args, "seeds", None) is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    n_seeds = getattr(args, "seeds", None) or 1
    if args.seed is not None and args.seed + n_seeds - 1 > MAX_SEED:
        raise UsageError(
            f"--seed {args.seed} with --seeds {n_seeds} runs past the largest seed 2^63 - 1; "
            "give a smaller --seed"
        )
    if getattr(args, "repair", False) and getattr(args, "resume", None) is None:
        raise UsageError("--repair applies to --resume DIR; add --resume DIR or drop --repair")


def _new_folder(
    args: argparse.Namespace, n_seeds: int, cache: bool
) -> tuple[RunFolder, Study, EnginePool]:
    scenario = load_scenario(args.scenario, overrides_of(args))
    seeds = [scenario.seed + k for k in range(n_seeds)]
    out = args.out or default_run_dir(scenario.name)
    try:
        return create(scenario, out, seeds, cache=cache)  # nothing is written for a bad scenario
    except EngineError as error:  # name the scenario file the engine's settings came from
        raise EngineError(f"{scenario.source}: {error}", field=error.field) from error


def _resumed_folder(args: argparse.Namespace) -> tuple[RunFolder, Study, EnginePool]:
    conflicting = [
        flag
        for flag, given in (
            ("SCENARIO", args.scenario),
            ("--seed", args.seed is not None),
            ("--set", args.overrides),
            ("--out", args.out),
        )
        if given
    ]
    if conflicting:
        raise UsageError(
            f"--resume reloads the scenario from the run folder; drop {', '.join(conflicting)}"
        )
    return reopen(
        args.resume,
        rounds=args.rounds,
        cache=not args.no_cache,
        repair=getattr(args, "repair", False),
    )


def run_with_progress(
    folder: RunFolder, study: Study, engines: EnginePool, flush_seconds: float
) -> int | None:
    """Execute a study with a progress bar on stderr; the exit code when the user stopped it
    (the folder is saved and resumable), None when it finished."""
    errors = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RoundsPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    )
    for note in folder.repairs:
        errors.print(f"admarket: repaired {folder.path}: {note}", highlight=False, soft_wrap=True)
    with progress, _sigterm_stops_the_run():
        task = progress.add_task(
            folder.scenario.name, total=folder.total_rounds, completed=folder.completed_rounds
        )
        try:
            execute(
                folder,
                study,
                engines,
                on_round=lambda: progress.advance(task),
                flush_seconds=flush_seconds,
            )
        except RunInterrupted as stop:
            progress.stop()
            resume = "replicate" if folder.study == "replication" else "run"
            errors.print(
                f"admarket: {'terminated' if stop.terminated else 'interrupted'}; "
                f"{stop.completed} completed rounds are saved in {stop.run_dir}. Resume with: "
                f"admarket {resume} --resume {stop.run_dir}",
                highlight=False,
                soft_wrap=True,
            )
            return EXIT_TERMINATED if stop.terminated else EXIT_INTERRUPTED
        except BaseException:
            progress.live.transient = True  # the error's one line stands alone
            raise
        finally:
            folder.release()
    return None


@contextlib.contextmanager
def _sigterm_stops_the_run():
    """While a run executes, SIGTERM stops it like Ctrl-C (final flush, status "interrupted")."""

    def stop(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, n_seeds: int, console: Console) -> int:
    _check_run_args(args)
    if getattr(args, "resume", None) is not None:
        folder, study, engines = _resumed_folder(args)
    elif args.scenario is None:
        raise UsageError("give a SCENARIO (name or YAML file) or --resume DIR")
    else:
        folder, study, engines = _new_folder(args, n_seeds, cache=not args.no_cache)
    if folder.study != "market":
        folder.release()
        raise UsageError(
            f"{folder.path} holds a {folder.study} study; continue it with "
            f"`admarket replicate --resume {folder.path}`"
        )
    stopped = run_with_progress(folder, study, engines, args.flush_seconds)
    if stopped is not None:
        return stopped
    console.print(f"run folder: {folder.path}", highlight=False, soft_wrap=True)
    return _finish(folder.path, console, build=not args.no_report)


def _sweep(args: argparse.Namespace, console: Console) -> int:
    """``admarket sweep``: a grid sweep (--grid/--grid-file, or --resume of a sweep folder), or
    N seeds of one scenario in one run folder as `admarket run` writes it (no grid)."""
    _check_run_args(args)
    gridded = bool(args.grid or args.grid_file)
    if args.resume is not None and is_sweep_folder(args.resume):
        return grid_sweep(args, console)
    if args.resume is not None and gridded:
        raise UsageError(
            f"--resume {args.resume} is not a sweep folder (no sweep.json): drop --grid and "
            "--grid-file to continue a run folder, or pass the --out DIR of a grid sweep"
        )
    if args.resume is not None or not gridded:
        flags = [
            flag
            for flag, given in (
                ("--workers", args.workers is not None),
                ("--backend", args.backend != "process"),
                ("--address", args.address is not None),
            )
            if given
        ]
        if flags:
            raise UsageError(
                f"{', '.join(flags)} need a grid: add --grid KEY=V1,V2 (one value is a one-cell "
                "grid) or --grid-file FILE; without a grid the seeds run in one process into one "
                "run folder"
            )
        if args.resume is None and args.seeds is None:
            raise UsageError("--seeds N is required: the number of replicates (or --resume DIR)")
        return _run(args, args.seeds or 1, console)
    if args.scenario is None:
        raise UsageError("give a SCENARIO (name or YAML file) or --resume DIR")
    if args.seeds is None:
        raise UsageError("--seeds N is required: the number of replicates per grid cell")
    return grid_sweep(args, console)


def _finish(run_dir: Path, console: Console, *, build: bool) -> int:
    import reports

    if build:
        path = reports.build_report(run_dir)
        console.print(f"report: {path}", highlight=False, soft_wrap=True)
    reports.print_summary(run_dir, console)
    return 0


def _report(args: argparse.Namespace, console: Console) -> int:
    if not args.run_dir.is_dir():
        raise RunError(f"run folder {args.run_dir} does not exist; pass the --out DIR of a run")
    from reports.data import RunDataError

    _check_readable(args.run_dir)
    try:
        if is_sweep_folder(args.run_dir):
            from reports import sweep_report

            path = sweep_report.build_sweep_report(args.run_dir)
            console.print(f"report: {path}", highlight=False, soft_wrap=True)
            sweep_report.print_sweep_summary(args.run_dir, console)
            regime_map_report(args.run_dir, console)
            return 0
        if _study_of(args.run_dir) == "replication":
            from reports.replication import build_study_report, print_study_summary

            page = build_study_report(args.run_dir)
            print_study_summary(args.run_dir, console)
            console.print(f"report: {page}", highlight=False, soft_wrap=True)
            return 0
        return _finish(args.run_dir, console, build=True)
    except (RunDataError, FileNotFoundError) as err:
        raise RunError(str(err)) from err
    except OSError as err:
        raise RunError(
            f"{getattr(err, 'filename', None) or args.run_dir}: cannot write the report "
            f"({err.strerror or err}) — copy the run folder somewhere writable and report the copy"
        ) from err


def _check_readable(run_dir: Path) -> None:
    """A run folder's meta.json, scenario.yaml and data files are what its run wrote."""
    from market.lock import holder

    if not (run_dir / "meta.json").exists() or holder(run_dir) is not None:
        return  # written by hand (the report checks its columns), or a run is writing it now
    from market.integrity import check_files, read_meta
    from market.runfolder import check_scenario
    from market.studies import STUDY_TABLES

    meta = read_meta(run_dir)
    check_scenario(run_dir, meta)
    study = (
        meta.get("study", {}).get("kind", "market")
        if isinstance(meta.get("study"), dict)
        else "market"
    )
    check_files(run_dir, list(STUDY_TABLES.get(study, {})))


def _study_of(run_dir: Path) -> str:
    """The study kind a run folder's meta.json records (``market`` when it says none)."""
    import json

    try:
        meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "market"
    study = meta.get("study") if isinstance(meta, dict) else None
    return str(study.get("kind", "market")) if isinstance(study, dict) else "market"


def _scenarios(console: Console) -> int:
    table = Table(title="built-in scenarios")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in list_scenarios():
        table.add_row(name, description)
    console.print(table)
    return 0


def _delegate(args: argparse.Namespace, forwarded: list[str]) -> int:
    if args.command == "replicate":
        from market import replicate

        return int(replicate.main(forwarded) or 0)
    if args.command == "study" and args.target == "free_riding_map":
        from market import regime_map_cli

        return int(regime_map_cli.main(forwarded) or 0)
    if args.command == "study":
        from market import token_vs_mosaic_cli

        return int(token_vs_mosaic_cli.main(forwarded) or 0)
    if args.command == "probe":
        from market import probe

        return int(probe.main(forwarded) or 0)
    if args.target == "engine":
        from benchmarks import engine

        return int(engine.main(forwarded) or 0)
    if args.target == "sweep":
        from benchmarks import sweep

        return int(sweep.main(forwarded) or 0)
    from benchmarks import market

    return int(market.main(forwarded) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """The `admarket` entry point; returns the exit code."""
    console = Console()
    try:
        args, forwarded = _parser().parse_known_args(argv)
        if args.command in ("replicate", "bench", "study", "probe"):
            return _delegate(args, forwarded)
        if forwarded:
            raise UsageError(f"unrecognized arguments: {' '.join(forwarded)}")
        if args.command == "run":
            return _run(args, 1, console)
        if args.command == "sweep":
            return _sweep(args, console)
        if args.command == "scenarios":
            return _scenarios(console)
        if args.command == "dashboard":
            from market.dashboard.server import run_dashboard

            return run_dashboard(args.scenario, args.host, args.port)
        return _report(args, console)
    except JobFailed as err:
        print(f"admarket: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except SweepError as err:
        for line in err.lines:
            print(f"admarket: error: {_one_line(line)}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ScenarioError, EngineError, RunError, DashboardError) as err:
        print(f"admarket: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print("admarket: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("admarket: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
