"""Seaborn figures of one run, written as PNG files beside the HTML report.

Every figure is drawn on its own `matplotlib.figure.Figure` (no pyplot state, no GUI backend), with
axis labels in units, a legend and a title, sized to stay readable in print. Shared pieces live in
`reports.figure_kit`; the utility and utility-gain figures in `reports.figures_utility`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from reports.curves import round_series
from reports.data import RunData
from reports.figure_kit import (
    Context,
    FigureOutput,
    figure,
    legend_outside,
    panel_grid,
    per_variant_lines,
    save,
    scatter_with_fit,
)
from reports.figures_utility import (
    gain_advertisers,
    gain_ir,
    gain_vs_contribution,
    utility_advertisers,
)
from reports.tables import HEADLINE_METRICS, dilution_table, headline_table, round_sums

__all__ = ["COMPARISON_METRICS", "FigureOutput", "build_figures", "scatter_with_fit", "written"]


def _participation_advertisers(ctx: Context, out_dir: Path) -> FigureOutput:
    data = ctx.data
    adv = data.advertisers[["variant", "seed", "round", "advertiser", "entered"]]
    series = round_series(adv, "entered", by=("advertiser",), window=ctx.window)
    fig, axes = panel_grid(len(data.variants), sharey=True)
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
    legend_outside(fig, axes, "advertiser")
    fig.suptitle(f"Participation per advertiser ({ctx.rolling})")
    return FigureOutput(
        "participation_advertisers",
        "Participation per advertiser",
        f"Share of rounds each advertiser entered, {ctx.rolling}, averaged over seeds. Solid: "
        "advertisers the queries are relevant to at least half of the time; dashed: the others.",
        save(fig, out_dir, "participation_advertisers"),
    )


def _participation_relevance(ctx: Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    fig, axes = figure()
    ax = axes[0][0]
    relevant = round_series(sums, "rel_in", "rel_rows", window=ctx.window)
    irrelevant = round_series(sums, "irr_in", "irr_rows", window=ctx.window)
    per_variant_lines(ax, ctx, relevant, suffix=", relevant")
    per_variant_lines(ax, ctx, irrelevant, linestyle="--", suffix=", irrelevant")
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
        save(fig, out_dir, "participation_relevance"),
    )


def _revenue(ctx: Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    fig, axes = figure(1, 2)
    per_variant_lines(axes[0][0], ctx, round_series(sums, "revenue", "rounds", window=ctx.window))
    per_variant_lines(axes[0][1], ctx, round_series(sums, "revenue", cumulative=True))
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
        save(fig, out_dir, "revenue"),
    )


def _welfare(ctx: Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    fig, axes = figure(1, 2, sharey=True)
    per_variant_lines(axes[0][0], ctx, round_series(sums, "welfare", "rounds", window=ctx.window))
    per_variant_lines(
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
        save(fig, out_dir, "welfare"),
    )


def _usefulness(ctx: Context, sums: pd.DataFrame, out_dir: Path) -> FigureOutput:
    series = round_series(sums, "use_sum", "use_n", window=ctx.window)
    if series["mean"].notna().sum() == 0:
        return FigureOutput(
            "usefulness", "User usefulness", "", None, "no finite usefulness values"
        )
    fig, axes = figure()
    per_variant_lines(axes[0][0], ctx, series)
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
        save(fig, out_dir, "usefulness"),
    )


def _ess(ctx: Context, out_dir: Path) -> FigureOutput:
    rounds = ctx.data.rounds.assign(
        ess_value=ctx.data.rounds["ess"].astype(float).fillna(0.0),
        ess_n=ctx.data.rounds["ess"].notna().astype(float),
    )
    series = round_series(rounds, "ess_value", "ess_n", window=ctx.window)
    if series["mean"].notna().sum() == 0:
        return FigureOutput("ess", "Effective sample size", "", None, "ess is NaN in every round")
    fig, axes = figure()
    per_variant_lines(axes[0][0], ctx, series)
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
        save(fig, out_dir, "ess"),
    )


def _dilution(ctx: Context, out_dir: Path) -> FigureOutput:
    table = dilution_table(ctx.data)
    if table.empty:
        return FigureOutput("dilution", "Dilution", "", None, "no relevant advertiser ever entered")
    fig, axes = figure(1, 2)
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
        save(fig, out_dir, "dilution"),
    )


COMPARISON_METRICS = (
    "participation_relevant",
    "participation_irrelevant",
    "revenue",
    "welfare",
    "utility_gain",
    "share_gain_non_negative",
)


def _comparison(ctx: Context, headline: pd.DataFrame, out_dir: Path) -> FigureOutput:
    metrics = {m.key: m for m in HEADLINE_METRICS}
    fig, axes = figure(2, 3)
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
        save(fig, out_dir, "comparison"),
    )


def build_figures(
    data: RunData, out_dir: Path, *, headline: pd.DataFrame | None = None
) -> list[FigureOutput]:
    """Draw every figure that applies to this run into ``out_dir``; skipped ones say why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(data)
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
        outputs.append(utility_advertisers(ctx, out_dir))
        outputs.append(gain_advertisers(ctx, out_dir))
        outputs.append(gain_ir(ctx, out_dir))
        outputs.append(gain_vs_contribution(ctx, out_dir))
        outputs.append(_dilution(ctx, out_dir))
        if len(data.variants) > 1 or len(data.seeds) > 1:
            outputs.append(_comparison(ctx, headline, out_dir))
    return outputs


def written(outputs: Sequence[FigureOutput]) -> list[Path]:
    return [o.path for o in outputs if o.path is not None]
