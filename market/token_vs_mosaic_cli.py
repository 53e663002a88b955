"""The token-auction-vs-MOSAIC study on the command line: the rich tables and the CSV files.

    python -m market.token_vs_mosaic_cli [SCENARIO] [--seeds 5] [--search-rounds 40]
        [--eval-rounds 200] [--max-passes 8] [--bid-unit 1] [--out DIR] [--set PATH=VALUE ...]

`main(argv)` is what `admarket` calls for the study; `print_result` prints a `StudyResult`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from market.token_vs_mosaic import (
    ASSUMPTIONS,
    METRICS,
    StudyConfig,
    StudyError,
    StudyResult,
    run_study,
)

__all__ = ["main", "print_result"]


def _cell(row: pd.Series, key: str) -> str:
    estimate, low, high = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if not np.isfinite(estimate):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{estimate:.3g}"
    return f"{estimate:.3g} [{low:.3g}, {high:.3g}]"


def print_result(result: StudyResult, console: Console | None = None) -> None:
    """The table (rows: metrics and equilibrium actions; columns: mechanism × bidding) and the
    assumptions table, printed with rich."""
    console = console if console is not None else Console()
    table = Table(
        title="Token auction vs MOSAIC, like for like (synthetic engine, untempered, same rounds)",
        caption=escape(
            f"mean [95% t-interval] over {result.config.seeds} seeds × "
            f"{result.config.eval_rounds} evaluation rounds; best responses searched on "
            f"{result.config.search_rounds} rounds per seed with common random numbers. Payments "
            "in reward units: MOSAIC eq. 13; token auction κ · Σ_t c_t, the per-token critical "
            "bids c_t (bid units) times κ reward units per bid unit per token. Advertiser utility "
            "is r_i(y) − p_i under both, not a gain from participation: staying out is not worth 0 "
            "(MOSAIC's outside option, eq. 15, is usually negative; in the token auction a bid of "
            "0 is staying out, and it is on the bid grid)."
        ),
    )
    table.add_column("metric")
    rows = [row for _, row in result.table.iterrows()]
    for row in rows:
        table.add_column(escape(f"{row['mechanism']}: {row['bidding']}"), justify="right")
    for key, label in METRICS.items():
        table.add_row(escape(label), *(escape(_cell(r, key)) for r in rows))
    for advertiser in result.advertisers:
        table.add_row(
            escape(f"{advertiser.name} (v = {advertiser.value:g}): bid b / report scale s"),
            *(escape(_cell(r, f"action_{advertiser.name}")) for r in rows),
        )
    table.add_row(
        "best-response search converged (seeds)",
        *(
            f"{r['converged_seeds']:.0f}/{r['seeds']}"
            if np.isfinite(r["converged_seeds"])
            else "fixed actions"
            for r in rows
        ),
    )
    table.add_row(
        escape("ε: largest gain from deviating on the grid (reward units / round, search rounds)"),
        *(escape(_cell(r, "epsilon")) for r in rows),
    )
    top = result.searches.groupby("mechanism")["at_grid_top"].sum()
    total = len(result.advertisers) * result.config.seeds
    table.add_row(
        "best responses at the grid's top (of seeds × advertisers)",
        *(
            f"{top[r['mechanism']]}/{total}" if r["bidding"] == "best response" else "—"
            for r in rows
        ),
    )
    table.add_row("payment (reward units)", *(escape(r["payment_units"]) for r in rows))
    console.print(table)
    assumptions = Table(title="What differs in the two mechanisms' assumptions")
    for column in ("aspect", "token auction (Duetting et al.)", "MOSAIC"):
        assumptions.add_column(column)
    for aspect, token, mosaic in ASSUMPTIONS:
        assumptions.add_row(escape(aspect), escape(token), escape(mosaic))
    console.print(assumptions)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the study, print the tables, write the CSVs. Bad input: one line, exit 2."""
    parser = argparse.ArgumentParser(
        prog="admarket study token_vs_mosaic", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        default=StudyConfig.scenario,
        help="built-in scenario or YAML file with a mosaic and a token_auction variant",
    )
    parser.add_argument("--seeds", type=int, default=StudyConfig.seeds, help="replicates (>= 2)")
    parser.add_argument(
        "--search-rounds",
        type=int,
        default=StudyConfig.search_rounds,
        help="rounds per seed the best responses are computed on",
    )
    parser.add_argument(
        "--eval-rounds",
        type=int,
        default=StudyConfig.eval_rounds,
        help="fresh rounds per seed the profiles are evaluated on",
    )
    parser.add_argument(
        "--max-passes", type=int, default=StudyConfig.max_passes, help="cap on best-response passes"
    )
    parser.add_argument(
        "--bid-unit",
        type=float,
        default=StudyConfig.bid_unit,
        help="reward units per token-auction bid unit per token (κ)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario key (repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / "token_vs_mosaic",
        help="folder for the CSV files",
    )
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    if args.out.exists() and not args.out.is_dir():
        print(
            f"token_vs_mosaic: error: --out {args.out} is a file — give a folder", file=sys.stderr
        )
        return 2
    try:
        config = StudyConfig(
            scenario=args.scenario,
            overrides=tuple(args.overrides),
            seeds=args.seeds,
            search_rounds=args.search_rounds,
            eval_rounds=args.eval_rounds,
            max_passes=args.max_passes,
            bid_unit=args.bid_unit,
        )
        result = run_study(config, progress=lambda m: console.print(escape(m), style="dim"))
    except StudyError as error:
        print(f"token_vs_mosaic: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print_result(result, console)
    try:
        written = result.write(args.out)
    except OSError as error:  # the table is printed above: nothing computed is lost
        print(
            f"token_vs_mosaic: error: --out {args.out}: {error.strerror or error}", file=sys.stderr
        )
        return 2
    for path in written:
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
