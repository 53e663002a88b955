"""`admarket`: run, sweep, report, replicate, bench, probe, scenarios.

Bad input (a scenario that does not validate, an engine that will not load, a missing run folder,
bad arguments) prints ONE line ``admarket: error: <message>`` on stderr and exits 2, without a
traceback. Ctrl-C during a run flushes the completed rounds, says how to resume, and exits 130.
"""

from __future__ import annotations

import argparse
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

from market.engines.base import EngineError
from market.runner import (
    FLUSH_SECONDS,
    EnginePool,
    RunError,
    RunFolder,
    RunInterrupted,
    check_buildable,
    default_run_dir,
    execute,
)
from scenarios.loader import ScenarioError, list_scenarios, load_scenario

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line arguments."""


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
    run_options(run)

    sweep = commands.add_parser("sweep", help="N replicates (seeds seed..seed+N-1) in one folder")
    sweep.add_argument("scenario", help="built-in scenario name or YAML file")
    sweep.add_argument("--seeds", type=int, required=True, help="number of replicates N")
    run_options(sweep)

    commands.add_parser("scenarios", help="list the built-in scenarios")

    report = commands.add_parser("report", help="rebuild report.html from a run folder")
    report.add_argument("run_dir", type=Path)

    # These forward every further argument (--help included) to the command they delegate to.
    commands.add_parser("replicate", help="replicate the MOSAIC paper's figures", add_help=False)
    bench = commands.add_parser(
        "bench", help="benchmarks: bench engine|market [ARGS]", add_help=False
    )
    bench.add_argument("target", choices=("engine", "market"))
    commands.add_parser(
        "probe", help="how often the LLM names the brands it is asked to (dilution)", add_help=False
    )
    return parser


def _check_run_args(args: argparse.Namespace) -> None:
    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.flush_seconds < 0:
        raise UsageError(f"--flush-seconds must be >= 0, got {args.flush_seconds}")
    if getattr(args, "seeds", 1) < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")


def _new_folder(
    args: argparse.Namespace, n_seeds: int, cache: bool
) -> tuple[RunFolder, EnginePool]:
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.rounds is not None:
        overrides.append(f"rounds={args.rounds}")
    scenario = load_scenario(args.scenario, overrides)
    engines = EnginePool(scenario.catalog(), cache=cache)
    check_buildable(scenario, engines, scenario.seed)  # nothing is written for a bad scenario
    seeds = [scenario.seed + k for k in range(n_seeds)]
    out = args.out or default_run_dir(scenario.name)
    return RunFolder.create(out, scenario, seeds), engines


def _resumed_folder(args: argparse.Namespace) -> RunFolder:
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
    return RunFolder.open(args.resume, rounds=args.rounds)


def _run(args: argparse.Namespace, n_seeds: int, console: Console) -> int:
    _check_run_args(args)
    if getattr(args, "resume", None) is not None:
        folder = _resumed_folder(args)
        engines = EnginePool(folder.scenario.catalog(), cache=not args.no_cache)
        check_buildable(folder.scenario, engines, folder.seeds[0])
    elif args.scenario is None:
        raise UsageError("give a SCENARIO (name or YAML file) or --resume DIR")
    else:
        folder, engines = _new_folder(args, n_seeds, cache=not args.no_cache)

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
    with progress:
        task = progress.add_task(
            folder.scenario.name, total=folder.total_rounds, completed=folder.completed_rounds
        )
        try:
            execute(
                folder,
                engines,
                on_round=lambda: progress.advance(task),
                flush_seconds=args.flush_seconds,
            )
        except RunInterrupted as stop:
            progress.stop()
            errors.print(
                f"admarket: interrupted; {stop.completed} completed rounds are saved in "
                f"{stop.run_dir}. Resume with: admarket run --resume {stop.run_dir}",
                highlight=False,
                soft_wrap=True,
            )
            return EXIT_INTERRUPTED
    console.print(f"run folder: {folder.path}", highlight=False, soft_wrap=True)
    return _finish(folder.path, console, build=not args.no_report)


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

    try:
        return _finish(args.run_dir, console, build=True)
    except (RunDataError, FileNotFoundError) as err:
        raise RunError(str(err)) from err


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
        from reports import replication

        return int(replication.main(forwarded) or 0)
    if args.command == "probe":
        from market import probe

        return int(probe.main(forwarded) or 0)
    if args.target == "engine":
        from benchmarks import engine

        return int(engine.main(forwarded) or 0)
    from benchmarks import market

    return int(market.main(forwarded) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """The `admarket` entry point; returns the exit code."""
    console = Console()
    try:
        args, forwarded = _parser().parse_known_args(argv)
        if args.command in ("replicate", "bench", "probe"):
            return _delegate(args, forwarded)
        if forwarded:
            raise UsageError(f"unrecognized arguments: {' '.join(forwarded)}")
        if args.command == "run":
            return _run(args, 1, console)
        if args.command == "sweep":
            return _run(args, args.seeds, console)
        if args.command == "scenarios":
            return _scenarios(console)
        return _report(args, console)
    except (UsageError, ScenarioError, EngineError, RunError) as err:
        print(f"admarket: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("admarket: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
