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
theory predicts for a constant-reward entrant with and without the offset; and what the riders'
two arms actually averaged (`market.regime.rider_payoffs`: in − out, and the gain on the same
candidates), which shows where the theory's constant-reward premise fails (a real LLM's replies).

Any grid over the cost works, down to the cost alone (the map's real-model slice,
``scenarios/studies/free_riding_map_llm.yaml``, is one row of it): what the grid does not vary
(engine, M, τ, shoehorn, reply length) is read from the cells' scenario and named on the page.
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
from scipy.stats import spearmanr

from market.regime import (
    OFFSET_MARGIN,
    entry_margin,
    predicted_entry,
    rider_payoffs,
    round_margins,
)
from market.sweep import CELLS_FILE, SUMMARY_FILE, SWEEP_FILE
from market.sweep.adapter import read_job_table
from reports.data import RunDataError
from reports.regime_figures import draw_regime_figures
from reports.regime_tables import display_cells, display_effects
from reports.stats import t_interval
from reports.template import figure_html, meta_list, notes_html, page, table_html
from scenarios.loader import expand_variants, load_scenario

COST = "advertisers.catalog.policy.kwargs.cost"
CANDIDATES = "mechanism.kwargs.candidates"
TAU = "mechanism.kwargs.tau"
SHOEHORN = "engine.kwargs.shoehorn"
SHORT = {COST: "cost", CANDIDATES: "M", TAU: "tau", SHOEHORN: "shoehorn"}
METRICS = ("entry_irrelevant_late", "entry_relevant_late", "revenue", "welfare", "total_gain")
RIDER = (
    "rider_in",
    "rider_out",
    "rider_advantage",
    "rider_gain",
    "rider_out_market",
    "rider_advantage_market",
)
REPORT_FILE = "regime_map.html"
# A cell "collapses" without the offset when relevant and irrelevant advertisers alike enter no
# more than this share of second-half rounds: ε-greedy exploration alone gives ε/2.
COLLAPSE = 0.15

__all__ = ["REPORT_FILE", "RegimeMap", "build_regime_map", "is_regime_map", "regime_map"]


@dataclass(frozen=True)
class RegimeMap:
    """The measured map: ``cells`` (one row per cell × variant), ``effects`` (one row per cell),
    the grid keys in display order, ε, the sweep's plan (``manifest``) and ``setting``: what the
    grid holds fixed, in words (engine, M, τ, shoehorn, reply length)."""

    path: Path
    manifest: dict
    keys: tuple[str, ...]
    cells: pd.DataFrame
    effects: pd.DataFrame
    epsilon: float
    setting: str = ""

    @property
    def row_keys(self) -> list[str]:
        """The grid keys but the cost: one row of the map per combination of their values."""
        return [k for k in self.keys if k != COST]

    @property
    def row_label(self) -> str:
        """The one row's name when the grid varies the cost alone."""
        return self.setting or "the map"


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


def job_theory(
    run_dir: Path, modes: dict[bool, str], tau: float
) -> tuple[dict[str, float], dict[bool, dict[str, float]]]:
    """One job's free-rider margin — `market.regime.entry_margin` of its no-offset variant over
    every round (an ε-greedy learner's sample mean covers the whole run), and its part from the
    importance weights alone (``alone``) — and, per variant (keyed as ``modes``: offset on / off),
    what its riders' arms saw (`market.regime.rider_payoffs`). The riders are the advertisers
    irrelevant to every query of the run."""
    auctions = read_job_table(
        run_dir,
        "auctions",
        ("variant", "seed", "round", "candidate", "log_ref", "log_gen", "rewards", "entrants"),
    )
    columns = ("variant", "round", "advertiser", "relevant", "entered", "utility", "outside_reward")
    advertisers = read_job_table(run_dir, "advertisers", (*columns, "expected_reward_without"))
    relevant = advertisers.groupby("advertiser")["relevant"].any()
    riders = set(relevant.index[~relevant])
    rounds = round_margins(auctions[auctions["variant"] == modes[False]], riders, tau)
    margin = {column: entry_margin(rounds, column) for column in ("margin", "alone")}
    payoffs = {
        offset: rider_payoffs(advertisers[advertisers["variant"] == variant], riders)
        for offset, variant in modes.items()
    }
    return margin, payoffs


def setting_of(scenario, grid_keys: list[str]) -> str:
    """What a map holds fixed, from one cell's scenario: the engine (and its shoehorn), M, τ and
    the reply length, each unless the grid varies it."""
    engine = scenario.engine.type
    if engine == "hf":
        engine += f" ({scenario.engine.kwargs.get('model') or 'embedded SmolLM2-135M-Instruct'})"
    pieces = [f"engine {engine}"]
    fixed = (
        (SHOEHORN, scenario.engine.kwargs.get("shoehorn") if scenario.engine.type == "synthetic"
         else None),
        (CANDIDATES, scenario.mechanism.kwargs.get("candidates")),
        (TAU, scenario.mechanism.kwargs.get("tau", 1.0)),
    )  # fmt: skip
    for key, value in fixed:
        if key not in grid_keys and value is not None:
            pieces.append(f"{SHORT[key]} {float(value):g}")
    pieces.append(f"replies ≤ {scenario.sampling.max_new_tokens} tokens")
    return ", ".join(pieces)


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
    rows, effects, epsilon, setting = [], [], np.nan, ""
    for cell, part in summary.groupby("cell", sort=True):
        scenario = load_scenario(path / "cells" / f"c{int(cell):04d}.yaml")
        setting = setting or setting_of(scenario, grid_keys)
        modes = _variants(scenario)
        tau = float(scenario.mechanism.kwargs.get("tau", 1.0))
        epsilon = float(scenario.advertisers[0].policy.kwargs.get("epsilon", np.nan))
        cost = float(cells_frame.loc[cell, COST])
        grid = {k: cells_frame.loc[cell, k] for k in keys}
        theory = [job_theory(path / "runs" / job, modes, tau) for job in sorted(set(part["job"]))]
        margin = _interval([m["margin"] for m, _ in theory])
        alone = _interval([m["alone"] for m, _ in theory])
        for offset, variant in modes.items():
            mine = part[part["variant"] == variant]
            row = {"cell": int(cell), **grid, "variant": variant, "offset": offset}
            row["seeds"] = len(mine)
            for metric in METRICS:
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = _interval(mine[metric])
            boundary = OFFSET_MARGIN if offset else margin[0]
            row["theory_margin"] = boundary
            row["predicted_irrelevant_entry"] = predicted_entry(boundary, cost, epsilon)
            for name in RIDER:
                seen = [payoffs[offset][name.removeprefix("rider_")] for _, payoffs in theory]
                row[name], row[f"{name}_low"], row[f"{name}_high"] = _interval(seen)
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
        effect["margin_alone"], effect["margin_alone_low"], effect["margin_alone_high"] = alone
        effect["irrelevant_offset"] = float(on["entry_irrelevant_late"].mean())
        effect["irrelevant_no_offset"] = float(off["entry_irrelevant_late"].mean())
        effect["relevant_offset"] = float(on["entry_relevant_late"].mean())
        effect["relevant_no_offset"] = float(off["entry_relevant_late"].mean())
        for offset, label in ((True, "offset"), (False, "no_offset")):
            for name in ("advantage", "gain", "advantage_market"):
                seen = [payoffs[offset][name] for _, payoffs in theory]
                effect[f"rider_{name}_{label}"] = float(np.nanmean(seen)) if seen else np.nan
        effect["regime"] = classify(effect)
        effect["collapse_no_offset"] = collapsed(
            effect["relevant_no_offset"], effect["irrelevant_no_offset"]
        )
        effect["collapse_offset"] = collapsed(
            effect["relevant_offset"], effect["irrelevant_offset"]
        )
        effects.append(effect)
    cells = pd.DataFrame(rows)
    effect_frame = pd.DataFrame(effects)
    effect_frame["theory_enters_no_offset"] = effect_frame["margin"] > effect_frame[COST]
    return RegimeMap(path, manifest, keys, cells, effect_frame, epsilon, setting)


def classify(effect: dict) -> str:
    """The offset's effect on free-riding in one cell: ``deters`` (it lowers irrelevant entry,
    the 95% CI of offset − none below 0), ``raises`` (CI above 0), else ``no effect``."""
    if effect["delta_irrelevant_high"] < 0:
        return "deters"
    if effect["delta_irrelevant_low"] > 0:
        return "raises"
    return "no effect"


def collapsed(relevant: float, irrelevant: float) -> bool:
    """Nobody enters: relevant advertisers in at most COLLAPSE of the rounds (ε-greedy
    exploration alone gives ε/2) and irrelevant ones in at most COLLAPSE + 0.1."""
    return relevant <= COLLAPSE and irrelevant <= COLLAPSE + 0.1


def _where(effects: pd.DataFrame, keys: tuple[str, ...], mask: pd.Series, what: str) -> str:
    """The cells of ``mask`` in words: how many, then per grid key how many of them have each
    value (of how many cells with that value)."""
    part = effects[mask]
    if part.empty:
        return f"{what}: no cell."
    pieces = []
    for key in keys:
        counts = part[key].value_counts()
        totals = effects[key].value_counts().sort_index()
        shown = ", ".join(f"{v:g}: {counts.get(v, 0)}/{totals[v]}" for v in totals.index)
        pieces.append(f"{SHORT.get(key, key)} {shown}")
    return f"{what}: {len(part)} of {len(effects)} cells — " + "; ".join(pieces) + "."


def headline(rmap: RegimeMap) -> list[str]:
    """The map's headline numbers, in sentences."""
    effects, keys = rmap.effects, rmap.keys
    regime = effects["regime"]
    lines = [
        _where(effects, keys, regime == "deters", "the offset deters free-riding (CI below 0)"),
        _where(
            effects, keys, regime == "raises", "the offset raises irrelevant entry (CI above 0)"
        ),
        _where(effects, keys, regime == "no effect", "no significant effect"),
        _where(effects, keys, effects["collapse_no_offset"], "without the offset nobody enters"),
        _where(effects, keys, effects["collapse_offset"], "with the offset nobody enters"),
    ]
    groups = [(None, effects)]
    if SHOEHORN in effects.columns:
        groups = [(v, effects[effects[SHOEHORN] == v]) for v in sorted(set(effects[SHOEHORN]))]
    for level, part in groups:
        lines.append(_theory_sentence(part, level, rmap.epsilon))
    lines.append(_rider_sentence(effects))
    tuned = effects
    for key, value in ((COST, 0.3), (CANDIDATES, 16), (TAU, 1.0), (SHOEHORN, 0.0)):
        tuned = tuned[np.isclose(tuned[key].astype(float), value)] if key in keys else tuned[:0]
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


def rows_in_words(rmap: RegimeMap) -> list[str]:
    """One line per combination of the grid keys but the cost: at which costs the offset deters,
    raises or does nothing to irrelevant entry, and where nobody enters."""
    keys = rmap.row_keys
    groups = rmap.effects.groupby(keys, sort=True) if keys else [((), rmap.effects)]
    lines = []
    for values, part in groups:
        values = values if isinstance(values, tuple) else (values,)
        where = ", ".join(f"{SHORT.get(k, k)} {v:g}" for k, v in zip(keys, values, strict=True))
        where = where or rmap.row_label
        pieces = []
        for regime in ("deters", "raises", "no effect"):
            costs = part.loc[part["regime"] == regime, COST]
            if len(costs):
                pieces.append(f"{regime} at cost {', '.join(f'{c:g}' for c in costs)}")
        for column, label in (("collapse_no_offset", "without"), ("collapse_offset", "with")):
            costs = part.loc[part[column].astype(bool), COST]
            if len(costs):
                shown = ", ".join(f"{c:g}" for c in costs)
                pieces.append(f"nobody enters {label} the offset at cost {shown}")
        if not part[["collapse_no_offset", "collapse_offset"]].to_numpy(bool).any():
            pieces.append("somebody enters at every cost, with the offset and without")
        lines.append(f"{where}: the offset " + "; ".join(pieces) + ".")
    return lines


def _rider_sentence(effects: pd.DataFrame) -> str:
    """What the irrelevant brands' two arms averaged, against the constant-reward theory."""
    mean = {column: float(np.nanmean(effects[column])) for column in effects.columns
            if column.startswith("rider_")}  # fmt: skip
    return (
        "What the irrelevant brands' arms saw (mean over cells; market/regime.py rider_payoffs): "
        f"with the offset their utility when in exceeded their reward when out by "
        f"{mean['rider_advantage_offset']:.2f} (constant-reward theory: 0) and their gain from "
        f"participation on the same candidates (eq. 15) was {mean['rider_gain_offset']:.2f} "
        f"(theory: 0); counting only the out-rounds in which somebody else entered, in − out "
        f"was {mean['rider_advantage_market_offset']:.2f} with the offset and "
        f"{mean['rider_advantage_market_no_offset']:.2f} without; "
        f"without the offset in − out was {mean['rider_advantage_no_offset']:.2f} "
        f"(theory: the margin, {float(np.nanmean(effects['margin'])):.2f} on average; the "
        f"importance weights alone, with no other entrant's reward, give "
        f"{float(np.nanmean(effects['margin_alone'])):.2f})."
    )


def _theory_sentence(part: pd.DataFrame, shoehorn: float | None, epsilon: float) -> str:
    """How the measured irrelevant entry follows the theory's boundary in some cells."""
    cost = part[COST].astype(float)
    pays = part["theory_enters_no_offset"].astype(bool)
    positive = part[cost > 0]
    x, y = (part["margin"] - cost).to_numpy(float), part["irrelevant_no_offset"].to_numpy(float)
    varies = len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0
    where = "all cells" if shoehorn is None else f"shoehorn {shoehorn:g}"
    if shoehorn is not None:
        where += (
            " (irrelevant brands nearly constant-reward)"
            if shoehorn == 0
            else " (irrelevant brands pull replies off-topic: rewards not constant)"
        )
    with_offset = []
    if len(positive):
        with_offset.append(
            f"stay out at every cost > 0 — measured {positive['irrelevant_offset'].mean():.2f} "
            f"on average in those {len(positive)} cells (max "
            f"{positive['irrelevant_offset'].max():.2f}; ε/2 = {epsilon / 2:g})"
        )
    if (cost == 0).any():
        with_offset.append(
            f"indifference at cost 0 (measured {part.loc[cost == 0, 'irrelevant_offset'].mean():.2f})"
        )
    without = [
        f"in the {int(mask.sum())} cells where the margin {label} the cost it averages "
        f"{part.loc[mask, 'irrelevant_no_offset'].mean():.2f}"
        for mask, label in ((pays, "exceeds"), (~pays, "does not exceed"))
        if mask.any()
    ]
    if varies:
        without.append(
            f"Spearman ρ(margin − cost, entry without the offset) = {spearmanr(x, y).statistic:.2f}"
        )
    return (
        f"Theory vs measured irrelevant entry, {where}: with the offset the theory says "
        + " and ".join(with_offset)
        + "; without the offset, "
        + "; ".join(without)
        + "."
    )


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
        "held fixed": rmap.setting,
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
        "shoehorn 0. 'Weights alone' is τ·lse(log π_ref − log π_gen), the margin with no other "
        "entrant's reward in the logits (the paper's Fig. 4 case).",
        "The riders' arms (market/regime.py rider_payoffs, every round of each run, mean over "
        "seeds): in − out = an irrelevant brand's mean utility when she entered minus her mean "
        "reward on the reply shown while she stayed out — what her ε-greedy arms compare with "
        "the cost. It is 0 with the offset and the margin without it only when her reward is "
        "constant and her entry leaves the candidates alone; the gain on the same candidates "
        "(eq. 15) isolates the first premise. 'In − out, market' counts only the out-rounds in "
        "which somebody else entered: when nobody enters the reply is π_ref's own (every "
        "ε-greedy advertiser tries staying out in round 1, all at once).",
        "Regimes: deters / raises = the 95% CI of the offset's effect on irrelevant entry is "
        f"below / above 0; nobody enters = relevant entry ≤ {COLLAPSE} and irrelevant entry ≤ "
        f"{COLLAPSE + 0.1:g} (ε-greedy exploration alone gives ε/2).",
    ]
    parts = [meta_list(facts), notes_html(notes), "<h2>Headline</h2><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in headline(rmap)]
    parts.append("</ul><h2>Where, row by row</h2><ul>")
    parts += [f"<li>{html.escape(line)}</li>" for line in rows_in_words(rmap)]
    parts.append("</ul><h2>Figures</h2>")
    for fig in figures:
        parts.append(f"<h3>{html.escape(fig.title)}</h3>")
        parts.append(figure_html(f"figures/{fig.path.name}", fig.caption, fig.title))
    parts.append("<h2>Per cell: the offset's effect, the theory, the regime</h2>")
    parts.append(table_html(display_effects(rmap)))
    parts.append("<h2>Per cell and variant: mean [95% CI] over seeds</h2>")
    parts.append(table_html(display_cells(rmap)))
    (out / REPORT_FILE).write_text(
        page("Free-riding regime map (issue 8; docs/regime_map.md)", "\n".join(parts)),
        encoding="utf-8",
    )
    return out / REPORT_FILE


def print_regime_summary(path: str | Path, console: Console) -> None:
    """The headline sentences and the per-regime counts, on the terminal."""
    effects = pd.read_csv(Path(path) / "regime_cells.csv")
    table = Table(title="Free-riding regime map: cells per regime")
    table.add_column("the offset's effect on irrelevant entry")
    table.add_column("cells", justify="right")
    for regime, count in effects["regime"].value_counts().items():
        table.add_row(str(regime), str(count))
    table.add_row("nobody enters without the offset", str(int(effects["collapse_no_offset"].sum())))
    table.add_row("nobody enters with the offset", str(int(effects["collapse_offset"].sum())))
    entering = int(effects["theory_enters_no_offset"].sum())
    table.add_row("theory: margin > cost without the offset", str(entering))
    console.print(table)
    console.print(f"regime map: {Path(path) / REPORT_FILE}", highlight=False, soft_wrap=True)
