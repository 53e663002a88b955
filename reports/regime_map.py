"""The regime map of free-riding: where the payment offset keeps irrelevant advertisers out, where
it does not, and where the market without it collapses — measured on a sweep of the free_riding
scenario and set beside the theory's boundary (`market.regime`).

Reads a sweep folder (``admarket sweep free_riding --grid-file scenarios/studies/free_riding_map.yaml``
or ``admarket study free_riding_map``; layout in `market.sweep.folder`): ``summary.parquet`` for
the measured metrics, each job's ``auctions`` table for the recorded logits, each cell's scenario
for τ, ε and which variant has the offset. Writes ``regime_map.csv`` (one row per cell × variant),
``regime_cells.csv`` (one row per cell: the offset's effect and the theory), ``figures/regime_*.png``
and ``regime_map.html``. See docs/regime_map.md.

Per cell and variant, over seeds (95% t-intervals): irrelevant and relevant entry in the second
half of the run, revenue, welfare, total gain (`market.sweep.metrics`). Per cell: the offset's
effect on irrelevant entry (offset − no offset, paired by seed), the free-rider margin
τ·logsumexp(β_{-i}) from the no-offset variant's recorded logits (second half), and the entry the
theory predicts for a constant-reward entrant with and without the offset.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from market.regime import OFFSET_MARGIN, entry_margin, predicted_entry, round_margins
from market.sweep import CELLS_FILE, SUMMARY_FILE, SWEEP_FILE
from market.sweep.adapter import read_job_table
from reports.data import RunDataError
from reports.regime_figures import draw_regime_figures
from reports.stats import t_interval
from reports.template import figure_html, meta_list, notes_html, page, table_html
from scenarios.loader import expand_variants, load_scenario

COST = "advertisers.catalog.policy.kwargs.cost"
CANDIDATES = "mechanism.kwargs.candidates"
TAU = "mechanism.kwargs.tau"
SHOEHORN = "engine.kwargs.shoehorn"
SHORT = {COST: "cost", CANDIDATES: "M", TAU: "tau", SHOEHORN: "shoehorn"}
METRICS = ("entry_irrelevant_late", "entry_relevant_late", "revenue", "welfare", "total_gain")
REPORT_FILE = "regime_map.html"
# A cell "collapses" without the offset when relevant and irrelevant advertisers alike enter no
# more than this share of second-half rounds: ε-greedy exploration alone gives ε/2.
COLLAPSE = 0.15

__all__ = ["REPORT_FILE", "RegimeMap", "build_regime_map", "is_regime_map", "regime_map"]


@dataclass(frozen=True)
class RegimeMap:
    """The measured map: ``cells`` (one row per cell × variant), ``effects`` (one row per cell),
    the grid keys in display order, ε, and the sweep's plan (``manifest``)."""

    path: Path
    manifest: dict
    keys: tuple[str, ...]
    cells: pd.DataFrame
    effects: pd.DataFrame
    epsilon: float


def is_regime_map(path: str | Path) -> bool:
    """Whether a sweep folder is a free-riding regime map: a sweep of the free_riding scenario
    whose grid varies the entry cost (`admarket report` then also writes ``regime_map.html``)."""
    try:
        manifest = json.loads((Path(path) / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    keys = [axis.get("key") for axis in manifest.get("grid", [])]
    return manifest.get("scenario") == "free_riding" and COST in keys


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    interval = t_interval(np.asarray(values, dtype=float))
    return interval.estimate, interval.low, interval.high


def _variants(scenario) -> dict[bool, str]:
    """{True: the variant with the offset, False: the one without}, from the cell's scenario."""
    modes: dict[bool, str] = {}
    for name, variant in expand_variants(scenario).items():
        modes.setdefault(bool(variant.mechanism.kwargs.get("offset", True)), name)
    if set(modes) != {True, False}:
        raise RunDataError(
            "a regime map compares the payment offset on and off: the scenario needs one variant "
            "with mechanism.kwargs.offset true and one with false (free_riding has both)"
        )
    return modes


def job_margin(run_dir: Path, variant: str, tau: float) -> float:
    """The free-rider margin one job's ``variant`` gave its riders (`market.regime.entry_margin`
    over every round: an ε-greedy learner's sample mean covers the whole run); the riders are the
    advertisers irrelevant to every query of the run."""
    auctions = read_job_table(
        run_dir,
        "auctions",
        ("variant", "seed", "round", "candidate", "log_ref", "log_gen", "rewards", "entrants"),
    )
    advertisers = read_job_table(run_dir, "advertisers", ("advertiser", "relevant"))
    relevant = advertisers.groupby("advertiser")["relevant"].any()
    riders = set(relevant.index[~relevant])
    auctions = auctions[auctions["variant"] == variant]
    return entry_margin(round_margins(auctions, riders, tau))


def regime_map(path: str | Path) -> RegimeMap:
    """Read a sweep folder and compute the map (see the module docstring)."""
    path = Path(path)
    for name in (SWEEP_FILE, CELLS_FILE, SUMMARY_FILE):
        if not (path / name).is_file():
            raise RunDataError(f"{path} has no {name}: finish the sweep first")
    manifest = json.loads((path / SWEEP_FILE).read_text(encoding="utf-8"))
    grid_keys = [axis["key"] for axis in manifest["grid"]]
    if COST not in grid_keys:
        raise RunDataError(f"{path}: the grid does not vary {COST}; a regime map needs it")
    keys = tuple(k for k in (SHOEHORN, CANDIDATES, TAU) if k in grid_keys) + tuple(
        k for k in grid_keys if k not in (SHOEHORN, CANDIDATES, TAU, COST)
    )
    keys = (*keys, COST)
    summary = pd.read_parquet(path / SUMMARY_FILE)
    cells_frame = pd.read_parquet(path / CELLS_FILE).set_index("cell")
    rows, effects, epsilon = [], [], np.nan
    for cell, part in summary.groupby("cell", sort=True):
        scenario = load_scenario(path / "cells" / f"c{int(cell):04d}.yaml")
        modes = _variants(scenario)
        tau = float(scenario.mechanism.kwargs.get("tau", 1.0))
        epsilon = float(scenario.advertisers[0].policy.kwargs.get("epsilon", np.nan))
        cost = float(cells_frame.loc[cell, COST])
        grid = {k: cells_frame.loc[cell, k] for k in keys}
        margins = [
            job_margin(path / "runs" / job, modes[False], tau)
            for job in sorted(pd.unique(part["job"]))
        ]
        margin = _interval(margins)
        for offset, variant in modes.items():
            mine = part[part["variant"] == variant]
            row = {"cell": int(cell), **grid, "variant": variant, "offset": offset}
            row["seeds"] = len(mine)
            for metric in METRICS:
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = _interval(mine[metric])
            theory = OFFSET_MARGIN if offset else margin[0]
            row["theory_margin"] = theory
            row["predicted_irrelevant_entry"] = predicted_entry(theory, cost, epsilon)
            rows.append(row)
        on = part[part["variant"] == modes[True]].set_index("seed_index")
        off = part[part["variant"] == modes[False]].set_index("seed_index")
        paired = on.index.intersection(off.index)
        effect = {"cell": int(cell), **grid}
        for metric in ("entry_irrelevant_late", "entry_relevant_late"):
            diff = on.loc[paired, metric] - off.loc[paired, metric]
            short = metric.replace("entry_", "").replace("_late", "")
            (
                effect[f"delta_{short}"],
                effect[f"delta_{short}_low"],
                effect[f"delta_{short}_high"],
            ) = _interval(diff)
        effect["margin"], effect["margin_low"], effect["margin_high"] = margin
        effect["irrelevant_offset"] = float(on["entry_irrelevant_late"].mean())
        effect["irrelevant_no_offset"] = float(off["entry_irrelevant_late"].mean())
        effect["relevant_offset"] = float(on["entry_relevant_late"].mean())
        effect["relevant_no_offset"] = float(off["entry_relevant_late"].mean())
        effect["regime"] = classify(effect)
        effects.append(effect)
    cells = pd.DataFrame(rows)
    effect_frame = pd.DataFrame(effects)
    effect_frame["theory_agrees"] = [_agrees(e, epsilon) for e in effect_frame.to_dict("records")]
    return RegimeMap(path, manifest, keys, cells, effect_frame, epsilon)


def classify(effect: dict) -> str:
    """One word for a cell: ``collapse`` (without the offset nobody enters: relevant and
    irrelevant entry ≤ COLLAPSE), ``deters`` (the offset lowers irrelevant entry, its 95% CI below
    0), ``raises`` (CI above 0), else ``no effect``."""
    if effect["relevant_no_offset"] <= COLLAPSE and effect["irrelevant_no_offset"] <= COLLAPSE:
        return "collapse"
    if effect["delta_irrelevant_high"] < 0:
        return "deters"
    if effect["delta_irrelevant_low"] > 0:
        return "raises"
    return "no effect"


def _agrees(effect: dict, epsilon: float) -> bool:
    """Whether the measured irrelevant entry sits on the side of ½ the theory predicts, with and
    without the offset (an indifferent prediction, cost = margin, agrees with anything)."""
    cost = float(effect[COST])
    ok = True
    for measured, margin in (
        (effect["irrelevant_offset"], OFFSET_MARGIN),
        (effect["irrelevant_no_offset"], effect["margin"]),
    ):
        predicted = predicted_entry(margin, cost, epsilon)
        if predicted != 0.5:
            ok &= (measured > 0.5) == (predicted > 0.5)
    return bool(ok)


def _where(effects: pd.DataFrame, keys: tuple[str, ...], regime: str) -> str:
    """The cells of one regime in words: their count, then per grid key how many of them have
    each value."""
    part = effects[effects["regime"] == regime]
    if part.empty:
        return f"{regime}: no cell."
    pieces = []
    for key in keys:
        counts = part[key].value_counts().sort_index()
        totals = effects[key].value_counts().sort_index()
        pieces.append(
            f"{SHORT.get(key, key)} "
            + ", ".join(
                f"{value:g}: {counts.get(value, 0)}/{totals[value]}" for value in totals.index
            )
        )
    return f"{regime}: {len(part)} of {len(effects)} cells — " + "; ".join(pieces) + "."


def headline(rmap: RegimeMap) -> list[str]:
    """The map's headline numbers, in sentences."""
    effects, keys = rmap.effects, rmap.keys
    lines = [
        _where(effects, keys, regime) for regime in ("deters", "no effect", "raises", "collapse")
    ]
    agree = effects["theory_agrees"].mean()
    lines.append(
        f"The theory's side of ½ (a constant-reward entrant enters iff her margin > cost: 0 with "
        f"the offset, τ·lse(β_-i) without) matches the measured irrelevant entry in "
        f"{int(effects['theory_agrees'].sum())} of {len(effects)} cells ({agree:.0%})."
    )
    tuned = effects
    for key, value in ((COST, 0.3), (CANDIDATES, 16), (TAU, 1.0), (SHOEHORN, 0.0)):
        if key in tuned.columns:
            tuned = tuned[np.isclose(tuned[key].astype(float), value)]
    if len(tuned) == 1:
        t = tuned.iloc[0]
        lines.append(
            "At the scenario's own setting (cost 0.3, M 16, τ 1, shoehorn 0): irrelevant entry "
            f"{t['irrelevant_offset']:.0%} with the offset vs {t['irrelevant_no_offset']:.0%} "
            f"without (difference {t['delta_irrelevant']:+.2f} [{t['delta_irrelevant_low']:+.2f}, "
            f"{t['delta_irrelevant_high']:+.2f}]); theory margin without the offset "
            f"{t['margin']:.2f}."
        )
    return lines


def build_regime_map(path: str | Path) -> Path:
    """regime_map.csv, regime_cells.csv, figures/regime_*.png and regime_map.html of a sweep."""
    rmap = regime_map(path)
    out = rmap.path
    rmap.cells.to_csv(out / "regime_map.csv", index=False)
    rmap.effects.to_csv(out / "regime_cells.csv", index=False)
    figures = draw_regime_figures(rmap, out / "figures")
    facts = {
        "sweep folder": out.resolve(),
        "grid": "; ".join(
            f"{SHORT.get(a['key'], a['key'])} ∈ {{{', '.join(a['values'])}}}"
            for a in rmap.manifest["grid"]
        ),
        "seeds per cell, rounds": f"{rmap.manifest['seeds']}, {rmap.manifest['rounds']}",
        "exploration ε": f"{rmap.epsilon:g} (ε-greedy: a settled advertiser enters 1 − ε/2 or ε/2"
        " of the rounds)",
    }
    notes = [
        "Entry is the share of advertiser-rounds entered in the second half of each run; means "
        "over seeds with 95% t-intervals; the offset's effect is paired by seed.",
        "Theory (market/regime.py): an advertiser whose reward is a constant c on every candidate "
        "gains exactly 0 with the offset (eq. 5 and 15), so she enters iff the entry cost is "
        "below 0 (indifferent at 0); without it her utility is τ·logsumexp(logits) (eq. 16) and "
        "she enters iff τ·logsumexp(logits) − c = τ·logsumexp(β_-i) > cost, the margin computed "
        "here from the no-offset variant's recorded candidates, averaged over every auction an "
        "irrelevant brand was in (her entry changes the candidates: π_con lists her), as her "
        "ε-greedy sample mean does. Irrelevant brands are nearly constant-reward only with "
        "shoehorn 0.",
        f"Regimes: collapse = without the offset relevant and irrelevant entry both ≤ {COLLAPSE};"
        " deters / raises = the 95% CI of the offset's effect on irrelevant entry is below / "
        "above 0.",
    ]
    parts = [meta_list(facts), notes_html(notes), "<h2>Headline</h2><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in headline(rmap)]
    parts.append("</ul><h2>Figures</h2>")
    for fig in figures:
        parts.append(f"<h3>{html.escape(fig.title)}</h3>")
        parts.append(figure_html(f"figures/{fig.path.name}", fig.caption, fig.title))
    parts.append("<h2>Per cell: the offset's effect, the theory, the regime</h2>")
    parts.append(table_html(_display_effects(rmap)))
    parts.append("<h2>Per cell and variant: mean [95% CI] over seeds</h2>")
    parts.append(table_html(_display_cells(rmap)))
    (out / REPORT_FILE).write_text(
        page("Free-riding regime map (issue 8; docs/regime_map.md)", "\n".join(parts)),
        encoding="utf-8",
    )
    return out / REPORT_FILE


def _ci(mean: float, low: float, high: float) -> str:
    if not np.isfinite(low):
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def _display_effects(rmap: RegimeMap) -> pd.DataFrame:
    e = rmap.effects
    return pd.DataFrame(
        {
            **{SHORT.get(k, k): e[k] for k in rmap.keys},
            "irrelevant entry, offset / none": [
                f"{a:.2f} / {b:.2f}"
                for a, b in zip(e["irrelevant_offset"], e["irrelevant_no_offset"], strict=True)
            ],
            "offset − none, irrelevant": [
                _ci(*v)
                for v in zip(
                    e["delta_irrelevant"],
                    e["delta_irrelevant_low"],
                    e["delta_irrelevant_high"],
                    strict=True,
                )
            ],
            "relevant entry, offset / none": [
                f"{a:.2f} / {b:.2f}"
                for a, b in zip(e["relevant_offset"], e["relevant_no_offset"], strict=True)
            ],
            "margin τ·lse(β_-i)": [
                _ci(*v) for v in zip(e["margin"], e["margin_low"], e["margin_high"], strict=True)
            ],
            "regime": e["regime"],
            "theory agrees": e["theory_agrees"],
        }
    )


def _display_cells(rmap: RegimeMap) -> pd.DataFrame:
    c = rmap.cells
    frame = pd.DataFrame({SHORT.get(k, k): c[k] for k in rmap.keys})
    frame["variant"] = c["variant"]
    for metric in METRICS:
        frame[metric] = [
            _ci(*v) for v in zip(c[metric], c[f"{metric}_low"], c[f"{metric}_high"], strict=True)
        ]
    frame["predicted irrelevant entry"] = c["predicted_irrelevant_entry"]
    return frame


def print_regime_summary(path: str | Path, console: Console) -> None:
    """The headline sentences and the per-regime counts, on the terminal."""
    effects = pd.read_csv(Path(path) / "regime_cells.csv")
    table = Table(title="Free-riding regime map: cells per regime")
    table.add_column("regime")
    table.add_column("cells", justify="right")
    for regime, count in effects["regime"].value_counts().items():
        table.add_row(str(regime), str(count))
    console.print(table)
    console.print(f"regime map: {Path(path) / REPORT_FILE}", highlight=False, soft_wrap=True)
