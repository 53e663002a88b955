"""Seaborn figures of one run, written as PNG files beside the HTML report.

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
from reports.curves import rolling_window, round_series
from reports.data import RunData
from reports.tables import (
    HEADLINE_METRICS,
    advertiser_table,
    contribution_fits,
    dilution_table,
    headline_table,
    round_sums,
)

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


class _Context:
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


def _figure(rows: int = 1, cols: int = 1, *, sharey: bool = False) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    return fig, axes


def _panel_grid(n: int, *, sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """n panels, at most three per row (many variants wrap instead of getting narrow)."""
    cols = max(1, min(3, n))
    rows = -(-n // cols)
    fig, axes = _figure(rows, cols, sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def _legend_outside(fig: Figure, axes, title: str) -> None:
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


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    return path


def _band(
    ax: Axes, series: pd.DataFrame, colour, label: str, linestyle: str, show_band: bool
) -> None:
    ax.plot(series["round"], series["mean"], color=colour, label=label, linestyle=linestyle)
    if show_band and series["low"].notna().any():
        ax.fill_between(series["round"], series["low"], series["high"], color=colour, alpha=0.2)


def _per_variant_lines(
    ax: Axes, ctx: _Context, series: pd.DataFrame, *, linestyle: str = "-", suffix: str = ""
) -> None:
    for variant in ctx.data.variants:
        part = series[series["variant"] == variant]
        if part["mean"].notna().any():
            _band(ax, part, ctx.colour[variant], f"{variant}{suffix}", linestyle, ctx.show_bands)


def _participation_advertisers(ctx: _Context, out_dir: Path) -> FigureOutput:
    data = ctx.data
    adv = data.advertisers[["variant", "seed", "round", "advertiser", "entered"]]
    series = round_series(adv, "entered", by=("advertiser",), window=ctx.window)
    fig, axes = _panel_grid(len(data.variants), sharey=True)
    for ax, variant in zip(axes, data.variants, strict=True):
        for advertiser, part in series[series["variant"] == variant].groupby(
            "advertiser", sort=False
        ):
            ax.plot(
                part["round"],
                part["mean"],
                color=ctx.advertiser_colour[advertiser],
                linestyle=ctx.advertiser_style[advertiser],
                label=ctx.advertiser_label[advertiser],
            )
        ax.set(
            title=variant,
            xlabel="round",
            ylabel="participation (share of rounds entered)",
            ylim=(-0.03, 1.03),
        )
    _legend_outside(fig, axes, "advertiser")
    fig.suptitle(f"Participation per advertiser ({ctx.rolling})")
    return FigureOutput(
        "participation_advertisers",
        "Participation per advertiser",
        f"Share of rounds each advertiser entered, {ctx.rolling}, averaged over seeds. Solid: "
        "advertisers the queries are relevant to at least half of the time; dashed: the others.",
        _save(fig, out_dir, "participation_advertisers"),
    )


def _participation_relevance(ctx: _Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    fig, axes = _figure()
    ax = axes[0][0]
    relevant = round_series(sums, "rel_in", "rel_rows", window=ctx.window)
    irrelevant = round_series(sums, "irr_in", "irr_rows", window=ctx.window)
    _per_variant_lines(ax, ctx, relevant, suffix=", relevant")
    _per_variant_lines(ax, ctx, irrelevant, linestyle="--", suffix=", irrelevant")
    ax.set(
        xlabel="round",
        ylabel="participation (share entering)",
        ylim=(-0.03, 1.03),
        title=f"Relevant vs irrelevant advertisers ({ctx.rolling})",
    )
    ax.legend(fontsize="small")
    return FigureOutput(
        "participation_relevance",
        "Participation: relevant vs irrelevant",
        "Share of advertisers entering among those the query is relevant to (solid) and "
        f"irrelevant to (dashed), {ctx.rolling}. Free-riding shows as irrelevant entry. {ctx.band}",
        _save(fig, out_dir, "participation_relevance"),
    )


def _revenue(ctx: _Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    fig, axes = _figure(1, 2)
    _per_variant_lines(axes[0][0], ctx, round_series(sums, "revenue", "rounds", window=ctx.window))
    _per_variant_lines(axes[0][1], ctx, round_series(sums, "revenue", cumulative=True))
    axes[0][0].set(
        xlabel="round",
        ylabel="revenue (reward units / round)",
        title=f"Revenue per round ({ctx.rolling})",
    )
    axes[0][1].set(
        xlabel="round", ylabel="cumulative revenue (reward units)", title="Cumulative revenue"
    )
    for ax in axes[0]:
        ax.legend(title="variant", fontsize="small")
    return FigureOutput(
        "revenue",
        "Revenue",
        f"Σ payments per round ({ctx.rolling}) and cumulative. {ctx.band}",
        _save(fig, out_dir, "revenue"),
    )


def _welfare(ctx: _Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    fig, axes = _figure(1, 2, sharey=True)
    _per_variant_lines(axes[0][0], ctx, round_series(sums, "welfare", "rounds", window=ctx.window))
    _per_variant_lines(
        axes[0][1], ctx, round_series(sums, "expected_welfare", "rounds", window=ctx.window)
    )
    axes[0][0].set(
        xlabel="round", ylabel="welfare (reward units / round)", title="Realized welfare"
    )
    axes[0][1].set(xlabel="round", title="Expected welfare (under the allocation)")
    for ax in axes[0]:
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.legend(title="variant", fontsize="small")
    return FigureOutput(
        "welfare",
        "Welfare",
        "Σ entrants' rewards for the returned reply (realized) and under the allocation "
        f"(expected), {ctx.rolling}. {ctx.band}",
        _save(fig, out_dir, "welfare"),
    )


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


def _usefulness(ctx: _Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    series = round_series(sums, "use_sum", "use_n", window=ctx.window)
    if series["mean"].notna().sum() == 0:
        return FigureOutput(
            "usefulness", "User usefulness", "", None, "no finite usefulness values"
        )
    fig, axes = _figure()
    _per_variant_lines(axes[0][0], ctx, series)
    axes[0][0].set(
        xlabel="round",
        ylabel="usefulness (log π_ref per token, nats)",
        title="User usefulness of the returned reply",
    )
    axes[0][0].legend(title="variant", fontsize="small")
    return FigureOutput(
        "usefulness",
        "User usefulness",
        "log π_ref(reply | x) per token of the returned reply (App. C.3): higher is closer to what "
        f"the reference LLM would say, {ctx.rolling}. {ctx.band}",
        _save(fig, out_dir, "usefulness"),
    )


def _ess(ctx: _Context, out_dir: Path) -> FigureOutput:
    rounds = ctx.data.rounds.assign(
        ess_value=ctx.data.rounds["ess"].astype(float).fillna(0.0),
        ess_n=ctx.data.rounds["ess"].notna().astype(float),
    )
    series = round_series(rounds, "ess_value", "ess_n", window=ctx.window)
    if series["mean"].notna().sum() == 0:
        return FigureOutput("ess", "Effective sample size", "", None, "ess is NaN in every round")
    fig, axes = _figure()
    _per_variant_lines(axes[0][0], ctx, series)
    axes[0][0].set(
        xlabel="round",
        ylabel="effective sample size (candidates)",
        title="Effective sample size of the allocation",
    )
    axes[0][0].legend(title="variant", fontsize="small")
    return FigureOutput(
        "ess",
        "Effective sample size",
        f"1 / Σ allocation² (M when uniform, 1 when one candidate takes all), {ctx.rolling}. "
        f"{ctx.band}",
        _save(fig, out_dir, "ess"),
    )


def _utility_advertisers(ctx: _Context, out_dir: Path) -> FigureOutput:
    data = ctx.data
    adv = data.advertisers[["variant", "seed", "round", "advertiser", "utility"]]
    cumulative = round_series(adv, "utility", by=("advertiser",), cumulative=True)
    rolling = round_series(adv, "utility", by=("advertiser",), window=ctx.window)
    fig, axes = _figure(len(data.variants), 2)
    for row, variant in enumerate(data.variants):
        for col, series in enumerate((cumulative, rolling)):
            ax = axes[row][col]
            for name, part in series[series["variant"] == variant].groupby(
                "advertiser", sort=False
            ):
                ax.plot(
                    part["round"],
                    part["mean"],
                    color=ctx.advertiser_colour[name],
                    linestyle=ctx.advertiser_style[name],
                    label=ctx.advertiser_label[name],
                )
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xlabel("round")
        axes[row][0].set(
            title=f"{variant}: cumulative utility", ylabel="cumulative utility (reward units)"
        )
        axes[row][1].set(
            title=f"{variant}: utility per round ({ctx.rolling})",
            ylabel="utility (reward units / round)",
        )
    _legend_outside(fig, list(axes.flat), "advertiser")
    fig.suptitle("Advertiser utility (0 in rounds she stays out)")
    return FigureOutput(
        "utility_advertisers",
        "Advertiser utility",
        "Cumulative and per-round expected utility (expected reward − payment) per advertiser, "
        "averaged over seeds.",
        _save(fig, out_dir, "utility_advertisers"),
    )


def _positive_utility(ctx: _Context, out_dir: Path) -> FigureOutput:
    table = advertiser_table(ctx.data)
    table = table[table["share_positive_utility"].notna()]
    if table.empty:
        return FigureOutput(
            "positive_utility", "Ex-ante IR", "", None, "no advertiser ever entered"
        )
    fig, axes = _figure(1, 1)
    fig.set_size_inches(max(PANEL[0], 0.9 * table["advertiser"].nunique() + 2), PANEL[1])
    sns.barplot(
        data=table,
        x="advertiser",
        y="share_positive_utility",
        hue="variant",
        palette=ctx.colour,
        ax=axes[0][0],
    )
    axes[0][0].axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    axes[0][0].set(
        xlabel="advertiser",
        ylabel="share of entered rounds with utility > 0",
        ylim=(0, 1),
        title="Positive utility when participating (ex-ante IR, Remark 2)",
    )
    axes[0][0].tick_params(axis="x", labelrotation=30)
    return FigureOutput(
        "positive_utility",
        "Share of rounds with positive utility",
        "Per advertiser, the share of the rounds she entered in which her expected utility was "
        "positive, pooled over seeds. Remark 2: with the offset, MOSAIC is ex-ante IR for the "
        "instances the paper tests.",
        _save(fig, out_dir, "positive_utility"),
    )


def _utility_vs_contribution(ctx: _Context, out_dir: Path) -> FigureOutput:
    data = ctx.data
    fits = contribution_fits(data).set_index("variant")
    adv = data.advertisers[data.advertisers["entered"]]
    drawable = [v for v in data.variants if fits.loc[v, "n"] >= 3]
    skipped = [v for v in data.variants if v not in drawable]
    reason = (
        f"variant(s) {', '.join(skipped)}: no counterfactual expected_reward_without "
        "(token auction, or fewer than 3 entries)"
        if skipped
        else ""
    )
    if not drawable:
        return FigureOutput("utility_vs_contribution", "Utility vs contribution", "", None, reason)
    fig, axes = _panel_grid(len(drawable))
    for ax, variant in zip(axes, drawable, strict=True):
        part = adv[(adv["variant"] == variant) & adv["contribution"].notna()]
        fit = fits.loc[variant]
        colour = ctx.colour[variant]
        paper = fit["paper_pearson_r"]
        paper_text = f"paper ({fit['offset']}): r = {paper:.1f}" if np.isfinite(paper) else ""
        scatter_with_fit(ax, part["contribution"], part["utility"], fit, colour, paper_text)
        ax.set(
            xlabel="contribution: expected reward − reward without her (reward units)",
            ylabel="utility (reward units)",
            title=f"{variant} ({fit['offset']})",
        )
    fig.suptitle("Utility against contribution to welfare (Sec. 5.3.2, Fig. 5/6)")
    return FigureOutput(
        "utility_vs_contribution",
        "Utility vs contribution to welfare",
        "Each point is one entrant in one round. Contribution = expected_reward − "
        "expected_reward_without (the allocation softmax(β_{-i}) on the same candidates: the "
        "paper's normalized reward). Line: least squares. Paper, Sec. 6.2.2: Pearson r = 0.8 "
        "with the offset, 0.4 without.",
        _save(fig, out_dir, "utility_vs_contribution"),
        reason,
    )


def _dilution(ctx: _Context, out_dir: Path) -> FigureOutput:
    table = dilution_table(ctx.data)
    if table.empty:
        return FigureOutput("dilution", "Dilution", "", None, "no relevant advertiser ever entered")
    fig, axes = _figure(1, 2)
    offsets = np.linspace(-0.12, 0.12, max(len(ctx.data.variants), 1))
    for shift, variant in zip(offsets, ctx.data.variants, strict=True):
        part = table[table["variant"] == variant]
        if part.empty:
            continue
        x = part["n_entrants"] + (shift if len(ctx.data.variants) > 1 else 0.0)
        colour = ctx.colour[variant]
        for ax, (mid, low, high) in zip(
            axes[0],
            (
                ("mention_rate", "mention_low", "mention_high"),
                ("expected_reward", "expected_reward_low", "expected_reward_high"),
            ),
            strict=True,
        ):
            err = np.vstack([part[mid] - part[low], part[high] - part[mid]])
            ax.errorbar(x, part[mid], yerr=np.nan_to_num(err), fmt="o-", color=colour,
                        capsize=3, label=variant)  # fmt: skip
    axes[0][0].set(
        xlabel="entrants in the context prompt",
        ylabel="mention rate of relevant entrants",
        ylim=(-0.03, 1.03),
        title="Named in the returned reply",
    )
    axes[0][1].set(
        xlabel="entrants in the context prompt",
        ylabel="expected reward (reward units)",
        title="Expected reward of relevant entrants",
    )
    for ax in axes[0]:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(title="variant", fontsize="small")
    return FigureOutput(
        "dilution",
        "Dilution of the context-aware generator",
        "Relevant entrants, by the number of entrants listed in the context prompt: share of "
        "rounds in which the returned reply names them (Wilson 95% CI) and their mean expected "
        "reward (95% t-interval over entrant-rounds).",
        _save(fig, out_dir, "dilution"),
    )


COMPARISON_METRICS = (
    "participation_relevant",
    "participation_irrelevant",
    "revenue",
    "welfare",
    "utility",
    "share_positive_utility",
)


def _comparison(ctx: _Context, headline: pd.DataFrame, out_dir: Path) -> FigureOutput:
    metrics = {m.key: m for m in HEADLINE_METRICS}
    fig, axes = _figure(2, 3)
    for ax, key in zip(axes.flat, COMPARISON_METRICS, strict=True):
        part = headline[headline["metric"] == key]
        for k, row in enumerate(part.itertuples()):
            err = [[row.estimate - row.low], [row.high - row.estimate]]
            ax.errorbar([k], [row.estimate], yerr=np.nan_to_num(err), fmt="o", capsize=4,
                        color=ctx.colour[row.variant], markersize=7)  # fmt: skip
        ax.set_xticks(range(len(part)), part["variant"], rotation=20)
        ax.set_xlim(-0.6, len(part) - 0.4)
        ax.set(title=metrics[key].label, xlabel="variant", ylabel=metrics[key].unit)
    method = headline["method"].iloc[0] if len(headline) else ""
    fig.suptitle(f"Variant comparison ({method})")
    return FigureOutput(
        "comparison",
        "Variant comparison",
        f"Headline metrics per variant with 95% CIs: {method}.",
        _save(fig, out_dir, "comparison"),
    )


def build_figures(
    data: RunData, out_dir: Path, *, headline: pd.DataFrame | None = None
) -> list[FigureOutput]:
    """Draw every figure that applies to this run into ``out_dir``; skipped ones say why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _Context(data)
    sums = round_sums(data)
    headline = headline if headline is not None else headline_table(data)
    outputs: list[FigureOutput] = []
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        outputs.append(_participation_advertisers(ctx, out_dir))
        outputs.append(_participation_relevance(ctx, sums, out_dir))
        outputs.append(_revenue(ctx, sums, out_dir))
        outputs.append(_welfare(ctx, sums, out_dir))
        outputs.append(_usefulness(ctx, sums, out_dir))
        outputs.append(_ess(ctx, out_dir))
        outputs.append(_utility_advertisers(ctx, out_dir))
        outputs.append(_positive_utility(ctx, out_dir))
        outputs.append(_utility_vs_contribution(ctx, out_dir))
        outputs.append(_dilution(ctx, out_dir))
        if len(data.variants) > 1 or len(data.seeds) > 1:
            outputs.append(_comparison(ctx, headline, out_dir))
    return outputs


def written(outputs: Sequence[FigureOutput]) -> list[Path]:
    return [o.path for o in outputs if o.path is not None]
