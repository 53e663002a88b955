"""`admarket replicate`: the MOSAIC paper's one-shot study (Sec. 6, App. C), end to end.

    admarket replicate [--scenario paper_replication] [--engine synthetic|hf|vllm] [--queries Q]
                       [--seeds S] [--m 1 2 4 8 16] [--out DIR] [--set PATH=VALUE ...]
    admarket replicate --resume DIR

The scenario (default ``scenarios/builtin/paper_replication.yaml``) holds the defaults: engine,
mechanism τ, sampling, the queries and advertisers, ``rounds`` = seeds per instance, ``seed`` =
root seed, ``mechanism.kwargs.candidates`` = M_max (the grid is 1, 2, 4, ... then M_max), and one
variant per generator (π_con "context", π_ref "baseline"). The study
(`market.studies.replication`) runs through the study runner into a run folder like any run
(``scenario.yaml``, ``meta.json``, its tables ``instances``, ``advertisers``, ``candidates``,
``optima``); `reports.replication.build_study_report` then draws ``figures/*.png`` and
``replication.html`` from that folder alone. See docs/replication.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from market.engines.base import EngineError
from market.runner import FLUSH_SECONDS, RunError, create, reopen
from market.studies.replication import replicate_overrides
from scenarios import ScenarioError, load_scenario
from scenarios.schema import ENGINE_TYPES

DEFAULT_SCENARIO = "paper_replication"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="admarket replicate",
        description="Replicate the MOSAIC paper's one-shot study (Figures 1a, 1b, 2, 3, 4, 5/6).",
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="built-in name or YAML path")
    p.add_argument("--engine", choices=ENGINE_TYPES, help="engine type (default: the scenario's)")
    p.add_argument("--queries", type=int, help="number of query/advertiser-pair instances")
    p.add_argument("--seeds", type=int, help="seeds per instance (default: scenario rounds)")
    p.add_argument("--m", type=int, nargs="+", help="candidate counts M (default: 1, 2, 4, ...)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/replication-...)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the study in DIR")
    p.add_argument(
        "--repair",
        action="store_true",
        help="with --resume: drop rounds whose files are damaged and compute them again",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="scenario override, e.g. engine.kwargs.model=HuggingFaceTB/SmolLM2-360M-Instruct",
    )
    return p


def _prepare(args: argparse.Namespace):
    if args.resume is not None:
        given = [
            flag
            for flag, value in (
                ("--engine", args.engine),
                ("--queries", args.queries),
                ("--seeds", args.seeds),
                ("--m", args.m),
                ("--out", args.out),
                ("--set", args.overrides),
            )
            if value
        ]
        if given:
            raise RunError(
                f"--resume reloads the study from the run folder; drop {', '.join(given)}"
            )
        folder, study, engines = reopen(args.resume, repair=args.repair)
        if folder.study != "replication":
            folder.release()
            raise RunError(
                f"{folder.path} holds a {folder.study} run, not a replication; continue it with "
                f"`admarket run --resume {folder.path}`"
            )
        return folder, study, engines
    if args.repair:
        raise RunError("--repair applies to --resume DIR; add --resume DIR or drop --repair")
    base = load_scenario(args.scenario)
    overrides = replicate_overrides(base.engine.type, args.engine, args.seeds, args.overrides)
    scenario = load_scenario(args.scenario, overrides)
    out = args.out or (
        Path("runs") / f"replication-{scenario.engine.type}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    options = {"queries": args.queries, "m_grid": args.m}
    return create(scenario, out, [scenario.seed], study="replication", options=options)


def main(argv: Sequence[str] | None = None) -> int:
    from market.cli import run_with_progress  # the shared progress bar and Ctrl-C handling
    from reports.replication import build_study_report, print_study_summary

    args = parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        folder, study, engines = _prepare(args)
    except (ScenarioError, ValueError, RunError, EngineError) as err:
        print(f"admarket: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    console.print(
        f"replicating on {folder.scenario.engine.type}: {len(study.instances)} instances × "
        f"{study.settings.n_seeds} seeds × {len(study.variants)} generators, "
        f"M in {list(study.settings.m_grid)} → {folder.path}"
    )
    stopped = run_with_progress(folder, study, engines, FLUSH_SECONDS)
    if stopped is not None:
        return stopped
    page = build_study_report(folder.path)
    print_study_summary(folder.path, Console())
    console.print(f"report: {page}")
    return 0
