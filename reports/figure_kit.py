"""Shared pieces of the run report's figures: settings per report, panels, legends, saving.

Every figure is drawn on its own `matplotlib.figure.Figure` (no pyplot state, no GUI backend), with
axis labels in units, a legend and a title, sized to stay readable in print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.colours import advertiser_colours
from reports.curves import rolling_window
from reports.data import RunData

DPI = 130
PANEL = (5.2, 3.6)


@dataclass(frozen=True)
class FigureOutput:
    """One figure of the report: where it was written, or why it was not drawn."""

    name: str
    title: str
    caption: str
    path: Path | None
    skipped: str = ""


class Context:
    """Shared per-report settings: window, colours, CI wording."""

    def __init__(self, data: RunData):
        self.data = data
        self.window = rolling_window(data.n_rounds)
        colours = sns.color_palette("colorblind", max(len(data.variants), 1))
        self.colour = dict(zip(data.variants, colours, strict=False))
        n_seeds = len(data.seeds)
        self.show_bands = n_seeds >= 3
        if n_seeds >= 3:
            self.band = f"Bands: 95% t-interval over {n_seeds} seeds."
        elif n_seeds == 2:
            self.band = "Two seeds: no bands (a t-interval with 1 d.o.f. is too wide to read)."
        else:
            self.band = "One seed: no bands (the tables give bootstrap CIs over rounds)."
        self.rolling = f"rolling mean over {self.window} rounds"
        # Advertisers: one colour each; solid when the queries are mostly relevant to them.
        relevance = data.advertisers.groupby("advertiser", sort=False)["relevant"].mean()
        names = list(relevance.index)
        self.advertiser_colour = advertiser_colours(names)
        self.advertiser_style = {n: "-" if relevance[n] >= 0.5 else "--" for n in names}
        self.advertiser_label = {n: f"{n} ({relevance[n]:.0%} relevant)" for n in names}


def figure(
    rows: int = 1, cols: int = 1, *, sharey: bool = False, sharex: bool = False
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey, sharex=sharex)
    return fig, axes


def panel_grid(n: int, *, sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """n panels, at most three per row (many variants wrap instead of getting narrow)."""
    cols = max(1, min(3, n))
    rows = -(-n // cols)
    fig, axes = figure(rows, cols, sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def legend_outside(fig: Figure, axes, title: str) -> None:
    """One figure legend right of the panels, with every label drawn on any of them."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()),
        list(handles),
        title=title,
        fontsize="small",
        loc="outside right center",
    )


def save(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    return path


def band(
    ax: Axes, series: pd.DataFrame, colour, label: str, linestyle: str, show_band: bool
) -> None:
    ax.plot(series["round"], series["mean"], color=colour, label=label, linestyle=linestyle)
    if show_band and series["low"].notna().any():
        ax.fill_between(series["round"], series["low"], series["high"], color=colour, alpha=0.2)


def per_variant_lines(
    ax: Axes, ctx: Context, series: pd.DataFrame, *, linestyle: str = "-", suffix: str = ""
) -> None:
    for variant in ctx.data.variants:
        part = series[series["variant"] == variant]
        if part["mean"].notna().any():
            band(ax, part, ctx.colour[variant], f"{variant}{suffix}", linestyle, ctx.show_bands)


def scatter_with_fit(
    ax: Axes, x: Sequence[float], y: Sequence[float], fit: pd.Series, colour: str, paper: str = ""
) -> None:
    """Points, the least-squares line of ``fit`` (slope, r2, pearson_r) and its numbers in a box.

    ``paper`` is an extra line for the paper's value, beside ours (Sec. 6.2.2).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ax.scatter(x, y, s=8, alpha=0.35, color=colour)
    if np.isfinite(fit["slope"]):
        xs = np.linspace(np.nanmin(x), np.nanmax(x), 50)
        ax.plot(
            xs, np.nanmean(y) + fit["slope"] * (xs - np.nanmean(x)), color="black", linewidth=1.2
        )
    ax.text(
        0.03,
        0.97,
        f"slope = {fit['slope']:.2f}\nR² = {fit['r2']:.2f}\nr = {fit['pearson_r']:.2f}"
        + (f"\n{paper}" if paper else ""),
        transform=ax.transAxes,
        va="top",
        fontsize="small",
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
    )
