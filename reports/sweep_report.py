"""The sweep report: ``DIR/sweep.html`` and ``DIR/figures/*.png``, read from a sweep folder alone
(``sweep.json``, ``cells.parquet``, ``summary.parquet``; layout in `market.sweep.folder`).

- one grid key: per metric, a line over the key's values per variant, with 95% t-intervals across
  seeds (the same interval as the run report's tables, `reports.stats.t_interval`);
- two or more keys: per metric, heatmaps of the seed mean over the first two keys, one panel per
  variant (rows) and value of the third key (columns); further keys are averaged over, and the
  caption says so;
- the table of cells: every grid key, and each metric's mean [95% CI] over seeds per variant.

`admarket report DIR` rebuilds it; the sweep itself writes it when it finishes.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from market.sweep import CELLS_FILE, METRICS, SUMMARY_FILE, SWEEP_FILE
from reports.data import RunDataError
from reports.figure_kit import DPI, PANEL, FigureOutput
from reports.stats import t_interval
from reports.tables import format_interval
from reports.template import figure_html, meta_list, notes_html, page, table_html

REPORT_FILE = "sweep.html"
TERMINAL_METRICS = {
    "entry_irrelevant_late": "irrelevant entry 2nd half",
    "entry_relevant_late": "relevant entry 2nd half",
    "revenue": "revenue",
    "total_gain": "total gain",
}


@dataclass(frozen=True)
class SweepData:
    """A sweep folder's plan and results: ``sweep.json``, cells and the summary rows."""

    path: Path
    manifest: dict[str, Any]
    cells: pd.DataFrame
    summary: pd.DataFrame

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(axis["key"] for axis in self.manifest["grid"])

    @property
    def variants(self) -> list[str]:
        return [str(v) for v in pd.unique(self.summary["variant"])]


def load_sweep(path: str | Path) -> SweepData:
    """Read a sweep folder; `RunDataError` names what is missing."""
    path = Path(path)
    for name in (SWEEP_FILE, CELLS_FILE, SUMMARY_FILE):
        if not (path / name).is_file():
            raise RunDataError(
                f"{path} has no {name}: finish the sweep with `admarket sweep --resume {path}`"
            )
    manifest = json.loads((path / SWEEP_FILE).read_text(encoding="utf-8"))
    cells = pd.read_parquet(path / CELLS_FILE)
    summary = pd.read_parquet(path / SUMMARY_FILE)
    if summary.empty:
        raise RunDataError(
            f"{path / SUMMARY_FILE} holds no finished job yet: continue with "
            f"`admarket sweep --resume {path}`"
        )
    return SweepData(path, manifest, cells, summary)


def _interval(values: pd.Series) -> tuple[float, float]:
    interval = t_interval(values.to_numpy(dtype=float))
    return interval.low, interval.high


def cell_table(data: SweepData) -> pd.DataFrame:
    """Tidy: one row per cell × variant × metric with the mean, its 95% t-interval over seeds
    and the number of seeds."""
    rows = []
    for (cell, variant), part in data.summary.groupby(["cell", "variant"], sort=False):
        for metric in METRICS:
            interval = t_interval(part[metric].to_numpy(dtype=float))
            rows.append(
                {"cell": int(cell), "variant": variant, "metric": metric, "seeds": len(part)}
                | {"mean": interval.estimate, "low": interval.low, "high": interval.high}
            )
    return pd.DataFrame(rows)


def cell_table_wide(data: SweepData) -> pd.DataFrame:
    """Display form: one row per cell × variant, the grid keys, seeds, "mean [low, high]"."""
    tidy = cell_table(data)
    tidy["text"] = [
        format_interval(m, lo, hi)
        for m, lo, hi in zip(tidy["mean"], tidy["low"], tidy["high"], strict=True)
    ]
    wide = tidy.pivot(index=["cell", "variant", "seeds"], columns="metric", values="text")
    wide = wide[list(METRICS)].reset_index()
    keys = data.cells[["cell", *data.keys]]
    order = {v: k for k, v in enumerate(data.variants)}
    wide = keys.merge(wide, on="cell").sort_values(
        ["cell", "variant"], key=lambda s: s.map(order) if s.name == "variant" else s
    )
    return wide.reset_index(drop=True)


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _lines(data: SweepData, out_dir: Path) -> list[FigureOutput]:
    key = data.keys[0]
    frame = data.summary.copy()
    if not _numeric(frame[key]):
        frame[key] = frame[key].astype(str)
    metrics = list(METRICS)
    cols = 3
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax, metric in zip(axes, metrics, strict=False):
        sns.lineplot(
            data=frame,
            x=key,
            y=metric,
            hue="variant",
            hue_order=data.variants,
            errorbar=_interval,
            marker="o",
            palette="colorblind",
            ax=ax,
            legend=metric == metrics[0],
        )
        ax.set_title(METRICS[metric], fontsize="small")
        ax.set_ylabel(metric)
    for ax in axes[len(metrics) :]:
        ax.remove()
    seeds = int(data.manifest["seeds"])
    path = out_dir / "sweep_lines.png"
    fig.savefig(path, dpi=DPI)
    caption = (
        f"Each headline metric against {key}; one line per variant, mean over {seeds} seeds with "
        "its 95% t-interval across seeds (no interval with one seed)."
    )
    return [FigureOutput("sweep_lines", f"Metrics against {key}", caption, path)]


def _heatmaps(data: SweepData, out_dir: Path) -> list[FigureOutput]:
    y_key, x_key = data.keys[:2]
    facet = data.keys[2] if len(data.keys) > 2 else None
    averaged = data.keys[3:]
    groups = [y_key, x_key, *([facet] if facet else []), "variant"]
    means = data.summary.groupby(groups, sort=True)[list(METRICS)].mean().reset_index()
    facets = list(pd.unique(means[facet])) if facet else [None]
    outputs = []
    for metric in METRICS:
        values = means[metric].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        fig = Figure(
            figsize=(PANEL[0] * len(facets), PANEL[1] * len(data.variants)), layout="constrained"
        )
        axes = fig.subplots(len(data.variants), len(facets), squeeze=False)
        for r, variant in enumerate(data.variants):
            for c, level in enumerate(facets):
                part = means[means["variant"] == variant]
                if facet:
                    part = part[part[facet] == level]
                grid = part.pivot(index=y_key, columns=x_key, values=metric)
                sns.heatmap(
                    grid,
                    ax=axes[r, c],
                    annot=True,
                    fmt=".2g",
                    cmap="viridis",
                    vmin=float(finite.min()),
                    vmax=float(finite.max()),
                    cbar=c == len(facets) - 1,
                )
                title = variant + (f" · {facet}={level}" if facet else "")
                axes[r, c].set_title(title, fontsize="small")
        fig.suptitle(METRICS[metric], fontsize="medium")
        path = out_dir / f"sweep_heatmap_{metric}.png"
        fig.savefig(path, dpi=DPI)
        caption = (
            f"{METRICS[metric]}: mean over seeds, {y_key} (rows) × {x_key} (columns); one panel "
            "per variant" + (f" and value of {facet}" if facet else "") + "."
        )
        if averaged:
            caption += f" Averaged over {', '.join(averaged)}."
        outputs.append(FigureOutput(f"sweep_heatmap_{metric}", METRICS[metric], caption, path))
    return outputs


def sweep_figures(data: SweepData, out_dir: Path) -> list[FigureOutput]:
    """Lines for a one-key grid, heatmaps for more keys (see the module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return _lines(data, out_dir) if len(data.keys) == 1 else _heatmaps(data, out_dir)


def _facts(data: SweepData) -> dict[str, object]:
    m = data.manifest
    grid = "; ".join(f"{a['key']} ∈ {{{', '.join(a['values'])}}}" for a in m["grid"])
    return {
        "sweep folder": data.path.resolve(),
        "scenario": f"{m['scenario']} ({m['origin']})",
        "--set": ", ".join(m["overrides"]) or "none",
        "grid": grid,
        "cells × seeds": f"{m['cells']} × {m['seeds']} (seeds {m['root_seed']} … "
        f"{m['root_seed'] + m['seeds'] - 1})",
        "status": f"{m['status']}; {m.get('finished_jobs', 0)} of {m['jobs']} jobs finished",
        "ran on": m.get("backend", "n/a"),
        "admarket version": m.get("admarket_version", "n/a"),
    }


def _notes(data: SweepData) -> list[str]:
    m = data.manifest
    notes = []
    if m["status"] != "finished":
        notes.append(
            f"The sweep is {m['status']}: only the {m.get('finished_jobs', 0)} finished jobs of "
            f"{m['jobs']} are shown. Continue it with `admarket sweep --resume {data.path}`."
        )
    if m.get("failed"):
        f = m["failed"]
        notes.append(f"Job {f['job']} ({f['label']}, seed {f['seed']}) failed: {f['error']}")
    if int(m["seeds"]) < 2:
        notes.append("One seed per cell: no confidence intervals across seeds.")
    return notes


def build_sweep_report(path: str | Path) -> Path:
    """Write DIR/sweep.html and DIR/figures/sweep_*.png from the sweep folder's files."""
    data = load_sweep(path)
    figures = sweep_figures(data, data.path / "figures")
    parts = [meta_list(_facts(data)), notes_html(_notes(data))]
    parts.append("<h2>Metrics</h2><dl class='meta'>")
    parts.extend(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in METRICS.items())
    parts.append(
        "</dl><p>Per job and variant, from its run folder (runs/&lt;job&gt;/); "
        "summary.parquet holds every value.</p>"
    )
    parts.append("<h2>Figures</h2>")
    for fig in figures:
        parts.append(f"<h3>{html.escape(fig.title)}</h3>")
        parts.append(figure_html(f"figures/{fig.path.name}", fig.caption, fig.title))
    parts.append("<h2>Cells</h2>")
    parts.append("<p>Mean [95% t-interval across seeds] per cell and variant.</p>")
    parts.append(table_html(cell_table_wide(data)))
    scenario = data.path / "scenario.yaml"
    if scenario.is_file():
        parts.append("<h2>Base scenario (before the grid)</h2>")
        parts.append(f"<pre>{html.escape(scenario.read_text(encoding='utf-8'))}</pre>")
    out = data.path / REPORT_FILE
    out.write_text(page(f"admarket sweep — {data.path.name}", "\n".join(parts)))
    return out


def print_sweep_summary(path: str | Path, console: Console | None = None) -> None:
    """A terminal table: per cell and variant, a few metrics' mean ± the half-width of their 95%
    t-interval across seeds."""
    console = console if console is not None else Console()
    data = load_sweep(path)
    tidy = cell_table(data).set_index(["cell", "variant", "metric"])
    m = data.manifest
    table = Table(
        title=f"{data.path.name}: {m['scenario']}, {m['cells']} cells × {m['seeds']} seeds",
        caption="mean ± 95% t-interval half-width across seeds; all metrics: sweep.html",
    )
    table.add_column("cell", justify="right")
    for key in data.keys:
        table.add_column(key.split(".")[-1], justify="right")
    table.add_column("variant")
    for header in TERMINAL_METRICS.values():
        table.add_column(header, justify="right")
    cells = data.cells.set_index("cell")
    for cell, variant in dict.fromkeys(
        zip(data.summary["cell"], data.summary["variant"], strict=True)
    ):
        values = [str(cells.loc[cell, key]) for key in data.keys]
        shown = [_plus_minus(tidy.loc[(cell, variant, metric)]) for metric in TERMINAL_METRICS]
        table.add_row(str(cell), *values, str(variant), *shown)
    console.print(table)


def _plus_minus(row: pd.Series) -> str:
    mean, low, high = float(row["mean"]), float(row["low"]), float(row["high"])
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(low):
        return f"{mean:.3g}"
    return f"{mean:.3g} ± {(high - low) / 2:.2g}"
