"""A short terminal summary of a run: its result in a sentence, then headline numbers per variant.

The sentence (`headline_sentences`) is computed from the run's rows, never written by hand: the
market's point in numbers — relevant vs irrelevant advertisers' 2nd-half entry (the headline
table's estimates), how many returned replies name an entrant, and, when the number of entrants
varies, how mentions per relevant entrant change with it (dilution, App. B.4). The run report
opens with the same sentences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.data import RunData, load_run
from reports.tables import HEADLINE_METRICS, dilution_table, format_interval, headline_table

MIN_DILUTION_ROWS = 5  # relevant entrant-rounds a number of entrants needs to be quoted


def _entry_clause(headline: pd.DataFrame, variant: str, n_seeds: int) -> str | None:
    rows = headline[headline["variant"] == variant].set_index("metric")["estimate"]
    relevant = rows.get("participation_relevant_late", np.nan)
    irrelevant = rows.get("participation_irrelevant_late", np.nan)
    over = f" (mean over {n_seeds} seeds)" if n_seeds > 1 else ""
    if np.isfinite(relevant) and np.isfinite(irrelevant):
        return (
            f"relevant advertisers entered {relevant:.0%} of 2nd-half rounds, irrelevant ones "
            f"{irrelevant:.0%}{over}"
        )
    if np.isfinite(relevant):
        return f"relevant advertisers entered {relevant:.0%} of 2nd-half rounds{over}"
    if np.isfinite(irrelevant):
        return f"irrelevant advertisers entered {irrelevant:.0%} of 2nd-half rounds{over}"
    return None


def _mention_clause(data: RunData, variant: str) -> str:
    rounds = data.rounds[data.rounds["variant"] == variant]
    entered = rounds[rounds["n_entrants"] > 0]
    said = int((entered["mentioned"].map(len) > 0).sum())
    empty = len(rounds) - len(entered)
    left_out = (
        f" ({empty} round{'s' if empty != 1 else ''} without entrants left out)" if empty else ""
    )
    return f"{said} of {len(entered)} returned replies mention an entrant{left_out}"


def _dilution_sentence(data: RunData) -> str | None:
    """Mentions per relevant entrant by number of entrants, pooled over variants and seeds."""
    table = dilution_table(data)
    if table.empty:
        return None
    table = table.assign(mentions=table["mention_rate"] * table["n"])
    pooled = table.groupby("n_entrants")[["mentions", "n"]].sum()
    pooled = pooled[pooled["n"] >= MIN_DILUTION_ROWS]
    if len(pooled) < 2:
        return None
    rates = pooled["mentions"] / pooled["n"]
    first, last = rates.index[0], rates.index[-1]
    if rates.iloc[-1] < rates.iloc[0]:
        trend = "fall"
    elif rates.iloc[-1] > rates.iloc[0]:
        trend = "rise"
    else:
        trend = "stay level"
    listed = ", ".join(
        f"{rates[k]:.0%} with {k} (n={int(pooled.loc[k, 'n'])})" for k in rates.index
    )
    return (
        f"Mentions per relevant entrant {trend} from {rates[first]:.0%} with {first} "
        f"entrant{'s' if first > 1 else ''} to {rates[last]:.0%} with {last}: {listed}."
    )


def headline_sentences(data: RunData, headline: pd.DataFrame | None = None) -> list[str]:
    """The run's result in words, computed from its rows: one sentence per variant (2nd-half
    entry of relevant vs irrelevant advertisers; returned replies naming an entrant), then the
    dilution trend when the number of entrants varies."""
    headline = headline if headline is not None else headline_table(data, n_boot=200)
    sentences = []
    for variant in data.variants:
        clauses = [c for c in (_entry_clause(headline, variant, len(data.seeds)),) if c]
        clauses.append(_mention_clause(data, variant))
        text = "; ".join(clauses) + "."
        prefix = f"{variant}: " if len(data.variants) > 1 else ""
        sentences.append(prefix + text[0].upper() + text[1:])
    dilution = _dilution_sentence(data)
    return sentences + ([dilution] if dilution else [])


def print_summary(run_dir: str | Path, console: Console | None = None) -> None:
    """Print the run's result in a sentence, then its headline table (estimate [95% CI]).

    The utility rows distinguish the raw utility E[r] − p from the utility gain from participation
    (utility − E[r without her], eq. 15), on which the ex-ante IR row and Pearson r are computed.
    """
    console = console if console is not None else Console()
    data = load_run(run_dir, auctions=False)  # the headline reads rounds and advertisers only
    headline = headline_table(data, n_boot=500)
    for sentence in headline_sentences(data, headline):
        console.print(sentence, style="bold", highlight=False, soft_wrap=True)
    table = Table(
        title=f"{data.run_dir.name}: {', '.join(data.mechanisms)}, {len(data.seeds)} seed(s) × "
        f"{data.n_rounds} rounds",
        caption=f"estimate [95% CI]; {headline['method'].iloc[0]}",
    )
    table.add_column("metric")
    for variant in data.variants:
        table.add_column(variant, justify="right")
    for metric in HEADLINE_METRICS:
        rows = headline[headline["metric"] == metric.key].set_index("variant")
        table.add_row(
            escape(metric.label),  # labels hold brackets, e.g. "utility (E[r] − p)"
            *(
                format_interval(*rows.loc[v, ["estimate", "low", "high"]].astype(float))
                for v in data.variants
            ),
        )
    console.print(table)
