"""`admarket study free_riding_map`: the regime map of free-riding (issue 8 item 3).

    admarket study free_riding_map [--seeds 5] [--rounds 160] [--workers K] [--out DIR]
                                   [--no-cache] [--set PATH=VALUE ...]
    admarket study free_riding_map --resume DIR

It is the sweep of the free_riding scenario over the grid file ``scenarios/studies/
free_riding_map.yaml`` (entry cost × M × τ × engine shoehorn; the scenario's two variants are the
offset on and off), i.e. exactly

    admarket sweep free_riding --grid-file scenarios/studies/free_riding_map.yaml \\
        --seeds 5 --rounds 160 [--workers K] [--out DIR]

which writes ``sweep.html`` and, because it is a free-riding map (`reports.regime_map.
is_regime_map`), ``regime_map.html``; ``admarket report DIR`` rebuilds both. docs/regime_map.md
says what the map shows and what it measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import scenarios

SCENARIO = "free_riding"
SEEDS = 5
ROUNDS = 160


def grid_file() -> Path:
    """The map's grid: ``scenarios/studies/free_riding_map.yaml`` (installed with the package)."""
    return Path(scenarios.__file__).parent / "studies" / "free_riding_map.yaml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="admarket study free_riding_map",
        description="The free-riding regime map: free_riding over entry cost × M × τ × shoehorn, "
        "offset on and off (a sweep; docs/regime_map.md).",
    )
    p.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds per cell (default {SEEDS})")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per run (default {ROUNDS})")
    p.add_argument("--workers", type=int, help="processes (default: the number of cores)")
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
    common = (["--workers", str(args.workers)] if args.workers is not None else []) + (
        ["--no-cache"] if args.no_cache else []
    )
    if args.resume is not None:
        return ["sweep", "--resume", str(args.resume), *common]
    argv = ["sweep", SCENARIO, "--grid-file", str(grid_file())]
    argv += ["--seeds", str(args.seeds), "--rounds", str(args.rounds), *common]
    argv += ["--out", str(args.out)] if args.out is not None else []
    for override in args.overrides:
        argv += ["--set", override]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    from market.cli import main as admarket

    return admarket(sweep_argv(parser().parse_args(argv)))
