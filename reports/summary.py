"""A short terminal summary of a run: headline numbers per variant as a rich table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.data import load_run
from reports.tables import HEADLINE_METRICS, format_interval, headline_table


def print_summary(run_dir: str | Path, console: Console | None = None) -> None:
    """Print the headline table (estimate [95% CI]) of the run in ``run_dir``.

    The utility rows distinguish the raw utility E[r] − p from the utility gain from participation
    (utility − E[r without her], eq. 15), on which the ex-ante IR row and Pearson r are computed.
    """
    console = console if console is not None else Console()
    data = load_run(run_dir, auctions=False)  # the headline reads rounds and advertisers only
    headline = headline_table(data, n_boot=500)
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
