"""Heatmaps of the free-riding regime map (`reports.regime_map`), with the theory's boundary.

Rows: the combinations of M and τ (and any further grid key), or one row named by what the map
holds fixed when its grid varies the cost alone (the real-model slice); columns: the entry cost;
one panel per shoehorn value. A map of one row (the real-model slice) also gets `row_figure`: the
irrelevant and relevant entry against the cost with their 95% CIs across seeds, the offset's
effect with its paired CI, and the theory's predicted entry. The boundary of `market.regime` is drawn on each row: a constant-reward
advertiser enters in the columns left of it. With the offset it is at cost 0 (dashed line: she is
indifferent there); without it where the margin τ·logsumexp(β_-i), measured in each cell, falls
below the cost (black bar; a triangle on the edge when entering pays in every cell of the row, or
in none).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from market.regime import OFFSET_MARGIN
from reports.figure_kit import DPI, FigureOutput

if TYPE_CHECKING:
    from reports.regime_map import RegimeMap

PANEL = (4.4, 4.6)


def _layout(rmap: RegimeMap) -> tuple[str | None, list[str], str]:
    """(panel key or None, row keys, cost key) from the map's keys (cost last)."""
    from reports.regime_map import SHOEHORN

    cost = rmap.keys[-1]
    panel = SHOEHORN if SHOEHORN in rmap.keys else None
    rows = [k for k in rmap.keys[:-1] if k != panel]
    return panel, rows, cost


def _row_label(values: tuple, keys: list[str]) -> str:
    from reports.regime_map import SHORT

    return ", ".join(f"{SHORT.get(k, k)} {v:g}" for k, v in zip(keys, values, strict=True))


def _pivot(
    frame: pd.DataFrame, rows: list[str], cost: str, value: str, label: str = ""
) -> pd.DataFrame:
    """Cells × cost of ``value``; one row named ``label`` when there are no row keys."""
    if not rows:
        return frame.groupby(cost)[value].mean().to_frame(label).T
    table = frame.pivot_table(index=rows, columns=cost, values=value, aggfunc="mean")
    table.index = [_row_label(v if isinstance(v, tuple) else (v,), rows) for v in table.index]
    return table


def crossing(costs: list[float], margins: list[float]) -> float:
    """Where a row's margin (measured per cell) meets the cost, in column coordinates (column k
    spans [k, k + 1]): linear between the last cell where margin > cost and the next; −inf when
    entering pays in no cell, +inf when it pays in every one, NaN without margins."""
    gap = np.asarray(margins, dtype=float) - np.asarray(costs, dtype=float)
    if not np.isfinite(gap).any():
        return float("nan")
    if np.all(gap[np.isfinite(gap)] <= 0):
        return float("-inf")
    if np.all(gap[np.isfinite(gap)] > 0):
        return float("inf")
    k = int(np.flatnonzero(gap > 0)[-1])
    if k == len(gap) - 1:
        return float("inf")
    return k + 0.5 + gap[k] / (gap[k] - gap[k + 1])


def _boundary(ax: Axes, costs: list[float], margins: pd.DataFrame | None, offset: bool) -> None:
    """The theory's boundary on each row of a heatmap whose columns are ``costs``."""
    if offset:
        x = float(np.interp(OFFSET_MARGIN, costs, np.arange(len(costs)) + 0.5))
        ax.axvline(x, color="black", linestyle="--", linewidth=1.6)
        return
    for row, values in enumerate([] if margins is None else margins.to_numpy(float)):
        x = crossing(costs, list(values))
        if np.isnan(x):
            continue
        if x == float("-inf"):
            ax.plot(0.08, row + 0.5, marker="<", color="black", markersize=7)
        elif x == float("inf"):
            ax.plot(len(costs) - 0.08, row + 0.5, marker=">", color="black", markersize=7)
        else:
            ax.plot([x, x], [row + 0.05, row + 0.95], color="black", linewidth=3)


def _panel(
    ax: Axes,
    table: pd.DataFrame,
    margins: pd.DataFrame | None,
    offset: bool | None,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    colorbar: bool,
    title: str,
) -> None:
    sns.heatmap(
        table,
        ax=ax,
        annot=True,
        fmt=".2f",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        center=0.0 if vmin < 0 else None,
        cbar=colorbar,
        annot_kws={"fontsize": 7},
    )
    ax.tick_params(axis="y", labelrotation=0)
    costs = [float(c) for c in table.columns]
    if offset is not None:
        _boundary(ax, costs, margins, offset)
    ax.set_xlabel("entry cost")
    ax.set_ylabel("")
    ax.set_title(title, fontsize="small")


def draw_regime_figures(rmap: RegimeMap, out_dir: Path) -> list[FigureOutput]:
    """The offset's effect on irrelevant entry, and participation with and without the offset."""
    out_dir.mkdir(parents=True, exist_ok=True)
    panel, rows, cost = _layout(rmap)
    levels = list(pd.unique(rmap.effects[panel])) if panel else [None]
    effects = rmap.effects
    label = textwrap.fill(rmap.row_label, 24)
    n_rows = len(_pivot(effects if panel is None else effects[effects[panel] == levels[0]],
                        rows, cost, "margin", label))  # fmt: skip
    height = min(PANEL[1], 2.0 + 0.35 * n_rows)
    outputs = []
    with sns.axes_style("white"), sns.plotting_context("notebook", font_scale=0.75):
        fig = Figure(figsize=(PANEL[0] * len(levels), height), layout="constrained")
        axes = fig.subplots(1, len(levels), squeeze=False)[0]
        for c, level in enumerate(levels):
            part = effects if panel is None else effects[effects[panel] == level]
            table = _pivot(part, rows, cost, "delta_irrelevant", label)
            margins = _pivot(part, rows, cost, "margin", label)
            title = "offset − none" + (f", shoehorn {level:g}" if panel else "")
            _panel(
                axes[c], table, margins, False, cmap="RdBu_r", vmin=-1, vmax=1,
                colorbar=c == len(levels) - 1, title=title,
            )  # fmt: skip
            _boundary(axes[c], [float(x) for x in table.columns], None, True)
        fig.suptitle(
            "Irrelevant advertisers' entry, 2nd half:"
            + ("\n" if len(levels) == 1 else " ")
            + "with the offset minus without"
        )
        path = out_dir / "regime_offset_effect.png"
        fig.savefig(path, dpi=DPI)
        outputs.append(
            FigureOutput(
                "regime_offset_effect",
                "Where the offset deters free-riding",
                "Irrelevant entry with the offset minus without (second half, mean over seeds, "
                "paired): blue = the offset keeps free riders out, red = it lets more in. "
                "Theory for a constant-reward entrant: with the offset she enters left of the "
                "dashed line (cost 0, where she is indifferent); without it left of the black "
                "bar, where her margin τ·logsumexp(β_-i), measured in each cell, falls below the "
                "cost (a triangle: entering pays in every cell of the row, ▶, or in none, ◀).",
                path,
            )
        )

        panels = (
            ("irrelevant_offset", True, "irrelevant, offset"),
            ("irrelevant_no_offset", False, "irrelevant, no offset"),
            ("relevant_offset", None, "relevant, offset"),
            ("relevant_no_offset", None, "relevant, no offset"),
        )
        fig = Figure(figsize=(PANEL[0] * len(levels), height * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), len(levels), squeeze=False)
        for r, (column, offset, label) in enumerate(panels):
            for c, level in enumerate(levels):
                part = effects if panel is None else effects[effects[panel] == level]
                table = _pivot(part, rows, cost, column, label)
                margins = _pivot(part, rows, cost, "margin", label)
                _panel(
                    axes[r, c], table, margins, offset, cmap="viridis", vmin=0, vmax=1,
                    colorbar=c == len(levels) - 1,
                    title=label + (f", shoehorn {level:g}" if panel else ""),
                )  # fmt: skip
        fig.suptitle(
            "Participation: share of advertiser-rounds"
            + ("\n" if len(levels) == 1 else " ")
            + "entered, 2nd half"
        )
        path = out_dir / "regime_participation.png"
        fig.savefig(path, dpi=DPI)
        outputs.append(
            FigureOutput(
                "regime_participation",
                "Participation of irrelevant and relevant advertisers, with and without the offset",
                "Share of second-half advertiser-rounds entered, mean over seeds. The theory's "
                "boundary for a constant-reward (irrelevant) entrant is drawn on the irrelevant "
                "panels: dashed at cost 0 with the offset, black bars at the margin without it. "
                "Both near ε/2 in the no-offset panels means the market collapses (nobody enters).",
                path,
            )
        )
        if n_rows == 1 and len(levels) == 1:
            outputs.append(row_figure(rmap, out_dir))
    return outputs


def row_figure(rmap: RegimeMap, out_dir: Path) -> FigureOutput:
    """One row of the map against the cost, with 95% CIs across seeds: irrelevant and relevant
    entry with and without the offset (and the theory's predicted irrelevant entry), and the
    offset's effect on irrelevant entry, paired by seed."""
    from reports.regime_map import COST, SHORT

    cells, effects = rmap.cells, rmap.effects.sort_values(COST)
    fig = Figure(figsize=(10.4, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = {True: ("tab:blue", "offset", -1), False: ("tab:red", "no offset", 1)}
    span = float(np.ptp(cells[COST].astype(float))) or 1.0
    for offset, (colour, name, side) in styles.items():
        mine = cells[cells["offset"] == offset].sort_values(COST)
        x = mine[COST].astype(float).to_numpy() + side * 0.008 * span  # both visible if equal
        for metric, marker, line, who in (
            ("entry_irrelevant_late", "o", "-", "irrelevant"),
            ("entry_relevant_late", "s", ":", "relevant"),
        ):
            y = mine[metric].to_numpy(float)
            error = _error_bars(y, mine[f"{metric}_low"], mine[f"{metric}_high"])
            left.errorbar(
                x, y, yerr=error, color=colour, marker=marker, linestyle=line, capsize=3,
                label=f"{who}, {name}",
            )  # fmt: skip
        left.plot(
            x, mine["predicted_irrelevant_entry"], color=colour, marker="_", markersize=16,
            linestyle="none", label=f"theory (constant reward), irrelevant, {name}",
        )  # fmt: skip
    left.set_ylim(-0.03, 1.03)
    left.set_xlabel("entry cost")
    left.set_ylabel("share of advertiser-rounds entered, 2nd half")
    left.set_title("Entry, mean and 95% CI across seeds", fontsize="small")
    left.legend(fontsize="x-small", loc="best")
    x = effects[COST].astype(float).to_numpy()
    y = effects["delta_irrelevant"].to_numpy(float)
    error = _error_bars(y, effects["delta_irrelevant_low"], effects["delta_irrelevant_high"])
    right.errorbar(x, y, yerr=error, color="black", marker="o", capsize=3)
    right.axhline(0.0, color="grey", linewidth=0.8)
    right.set_ylim(-1.03, 1.03)
    right.set_xlabel("entry cost")
    right.set_ylabel("irrelevant entry: offset − none")
    margin = float(np.nanmean(effects["margin"]))
    right.set_title(
        f"The offset's effect (paired by seed); no-offset margin τ·lse(β_-i) = {margin:.3g}",
        fontsize="small",
    )
    row = [f"{SHORT.get(k, k)} {float(effects[k].iloc[0]):g}" for k in rmap.row_keys]
    fig.suptitle("The map's one row: " + ", ".join([*row, rmap.row_label]))
    path = out_dir / "regime_row.png"
    fig.savefig(path, dpi=DPI)
    return FigureOutput(
        "regime_row",
        "The offset's effect per cost, with 95% CIs",
        "Left: share of second-half rounds the irrelevant (circles) and relevant (squares) "
        "advertisers entered, with the offset (blue) and without (red), mean and 95% t-interval "
        "across seeds; bars: the entry the theory predicts for a constant-reward irrelevant "
        "entrant (ε-greedy: 1 − ε/2 when entering pays, ε/2 when not, 1/2 when indifferent). "
        "Right: irrelevant entry with the offset minus without, paired by seed, with its 95% CI; "
        "below 0 the offset deters free-riding. The no-offset margin is the mean over cells: "
        "the theory says a constant-reward entrant enters without the offset at every cost "
        "below it.",
        path,
    )


def _error_bars(y: np.ndarray, low: pd.Series, high: pd.Series) -> np.ndarray:
    """Asymmetric error bars from interval bounds; 0 where a bound is NaN (one seed)."""
    low, high = low.to_numpy(float), high.to_numpy(float)
    return np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0)
