"""`admarket study free_riding_map`: the regime map of free-riding (issue 8 item 3).

    admarket study free_riding_map [--seeds 5] [--rounds 160] [--workers K] [--out DIR]
                                   [--no-cache] [--set PATH=VALUE ...]
    admarket study free_riding_map --llm [--seeds 4] [--rounds 24] [--workers 2] ...
    admarket study free_riding_map [--llm] --resume DIR

It is the sweep of the free_riding scenario over the grid file ``scenarios/studies/
free_riding_map.yaml`` (entry cost × M × τ × engine shoehorn; the scenario's two variants are the
offset on and off), i.e. exactly

    admarket sweep free_riding --grid-file scenarios/studies/free_riding_map.yaml \\
        --seeds 5 --rounds 160 [--workers K] [--out DIR]

``--llm`` runs the map's real-model slice instead: one row of that grid, the entry cost at M = 4,
τ = 1 (``scenarios/studies/free_riding_map_llm.yaml``; no shoehorn axis, a synthetic-engine knob),
on the embedded SmolLM2-135M-Instruct with one torch thread per worker process:

    admarket sweep free_riding --grid-file scenarios/studies/free_riding_map_llm.yaml \\
        --set 'engine={type: hf, kwargs: {threads: 1, prompt_style: user}}' --seeds 4 --rounds 24 --workers 2

Both write ``sweep.html`` and, because they are free-riding maps (`reports.regime_map.
is_regime_map`), ``regime_map.html``; ``admarket report DIR`` rebuilds both. docs/regime_map.md
says what the map shows and what both measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import scenarios

SCENARIO = "free_riding"


@dataclass(frozen=True)
class MapPlan:
    """One map's grid file and defaults: seeds per cell, rounds per run, worker processes (None:
    every core) and the overrides that choose its engine."""

    grid: str
    seeds: int
    rounds: int
    workers: int | None = None
    engine: tuple[str, ...] = ()


SYNTHETIC = MapPlan("free_riding_map.yaml", seeds=5, rounds=160)
# Sized on the 2-core CPU (docs/regime_map.md, "On the embedded model"): a round of M = 4 replies
# of 32 tokens with 13 prompts scored takes 12-20 s of one loaded core. Every cell runs the same
# seeds, so as long as two cells' advertisers make the same entry decisions (entry costs of at
# most 0.6 against utilities of tens of nats) they make the same engine calls, and the call cache
# computes them once: the map costs about seeds × rounds rounds plus the rounds where cells part.
LLM = MapPlan(
    "free_riding_map_llm.yaml",
    seeds=4,
    rounds=24,
    workers=2,
    engine=("engine={type: hf, kwargs: {threads: 1, prompt_style: user}}",),
)


def grid_file(llm: bool = False) -> Path:
    """The map's grid, ``scenarios/studies/free_riding_map.yaml`` (or ``free_riding_map_llm.yaml``,
    the real-model slice); installed with the package."""
    return Path(scenarios.__file__).parent / "studies" / (LLM if llm else SYNTHETIC).grid


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="admarket study free_riding_map",
        description="The free-riding regime map: free_riding over entry cost × M × τ × shoehorn, "
        "offset on and off (a sweep; docs/regime_map.md). --llm: its one-row slice on the "
        "embedded model.",
    )
    p.add_argument(
        "--llm",
        action="store_true",
        help=f"the real-model slice: cost at M = 4, τ = 1 on the embedded SmolLM2-135M (engine "
        f"hf, 1 torch thread per worker; defaults {LLM.seeds} seeds, {LLM.rounds} rounds, "
        f"{LLM.workers} workers)",
    )
    p.add_argument(
        "--seeds", type=int, help=f"seeds per cell (default {SYNTHETIC.seeds}; --llm {LLM.seeds})"
    )
    p.add_argument(
        "--rounds",
        type=int,
        help=f"rounds per run (default {SYNTHETIC.rounds}; --llm {LLM.rounds})",
    )
    p.add_argument(
        "--workers",
        type=int,
        help=f"processes (default: the number of cores; --llm {LLM.workers})",
    )
    p.add_argument("--out", type=Path, help="sweep folder (default: runs/free_riding-sweep-...)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the map in DIR")
    p.add_argument("--no-cache", action="store_true", help="do not cache engine calls")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="scenario override applied to every cell, e.g. --set sampling.top_p=1",
    )
    return p


def sweep_argv(args: argparse.Namespace) -> list[str]:
    """The `admarket sweep` command line the study runs."""
    plan = LLM if args.llm else SYNTHETIC
    workers = args.workers if args.workers is not None else plan.workers
    common = (["--workers", str(workers)] if workers is not None else []) + (
        ["--no-cache"] if args.no_cache else []
    )
    if args.resume is not None:
        return ["sweep", "--resume", str(args.resume), *common]
    seeds = plan.seeds if args.seeds is None else args.seeds
    rounds = plan.rounds if args.rounds is None else args.rounds
    argv = ["sweep", SCENARIO, "--grid-file", str(grid_file(args.llm))]
    argv += ["--seeds", str(seeds), "--rounds", str(rounds), *common]
    argv += ["--out", str(args.out)] if args.out is not None else []
    for override in (*plan.engine, *args.overrides):
        argv += ["--set", override]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    from market.cli import main as admarket

    return admarket(sweep_argv(parser().parse_args(argv)))
