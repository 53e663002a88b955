"""The run report's utility figures: raw utility E[r] − p, and the utility gain from participation
the paper plots (App. C.4, Figs. 4–7): per advertiser over rounds, the ex-ante IR check, and the gain
against the contribution to welfare. The gain is `reports.gain.utility_gain` (eq. 15).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from reports.curves import round_series
from reports.data import RunData
from reports.figure_kit import (
    PANEL,
    Context,
    FigureOutput,
    figure,
    legend_outside,
    panel_grid,
    save,
    scatter_with_fit,
)
from reports.gain import gain_is_non_negative, utility_gain
from reports.tables import contribution_fits


def _per_advertiser_rows(
    ctx: Context, variants: Sequence[str], series: Sequence[pd.DataFrame], titles, ylabels
) -> tuple[Figure, np.ndarray]:
    """One row per variant, one column per series: a line per advertiser, zero line drawn."""
    fig, axes = figure(len(variants), len(series))
    for row, variant in enumerate(variants):
        for col, frame in enumerate(series):
            ax = axes[row][col]
            for name, part in frame[frame["variant"] == variant].groupby("advertiser", sort=False):
                if part["mean"].notna().any():
                    ax.plot(part["round"], part["mean"], color=ctx.advertiser_colour[name],
                            linestyle=ctx.advertiser_style[name],
                            label=ctx.advertiser_label[name])  # fmt: skip
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set(xlabel="round", title=titles[col].format(variant=variant, ctx=ctx),
                   ylabel=ylabels[col])  # fmt: skip
    legend_outside(fig, list(axes.flat), "advertiser")
    return fig, axes


def utility_advertisers(ctx: Context, out_dir: Path) -> FigureOutput:
    data = ctx.data
    adv = data.advertisers[["variant", "seed", "round", "advertiser", "utility"]]
    fig, _ = _per_advertiser_rows(
        ctx,
        data.variants,
        (
            round_series(adv, "utility", by=("advertiser",), cumulative=True),
            round_series(adv, "utility", by=("advertiser",), window=ctx.window),
        ),
        (
            "{variant}: cumulative utility (E[r] − p)",
            "{variant}: utility per round ({ctx.rolling})",
        ),
        ("cumulative utility E[r] − p (reward units)", "utility E[r] − p (reward units / round)"),
    )
    fig.suptitle("Raw advertiser utility E[r] − p (0 in rounds she stays out)")
    return FigureOutput(
        "utility_advertisers",
        "Advertiser utility (E[r] − p)",
        "Cumulative and per-round ex-interim utility E[r] − p (eq. 13; eq. 5 with the offset) "
        "per advertiser, averaged over seeds. This is not the gain from participation: staying "
        "out is worth E[r without her] (eq. 15), usually negative, not 0, so a negative utility "
        "here does not mean she loses by entering (see the utility-gain figures).",
        save(fig, out_dir, "utility_advertisers"),
    )


def _gain_frame(data: RunData) -> pd.DataFrame:
    adv = data.advertisers[["variant", "seed", "round", "advertiser", "entered"]]
    gain = utility_gain(data.advertisers)
    return adv.assign(
        gain=gain.fillna(0.0),
        gain_n=gain.notna().astype(float),
        gain_ok=gain_is_non_negative(gain).astype(float),
    )


def _gain_variants(data: RunData) -> tuple[list[str], str]:
    gain = utility_gain(data.advertisers)
    has = gain.notna().groupby(data.advertisers["variant"]).any()
    drawable = [v for v in data.variants if has.get(v, False)]
    skipped = [v for v in data.variants if v not in drawable]
    reason = (
        f"variant(s) {', '.join(skipped)}: no counterfactual expected_reward_without (token "
        "auction, or nobody entered), so no utility gain"
        if skipped
        else ""
    )
    return drawable, reason


def gain_advertisers(ctx: Context, out_dir: Path) -> FigureOutput:
    variants, reason = _gain_variants(ctx.data)
    if not variants:
        return FigureOutput("gain_advertisers", "Utility gain per advertiser", "", None, reason)
    frame = _gain_frame(ctx.data)
    fig, _ = _per_advertiser_rows(
        ctx,
        variants,
        (
            round_series(frame, "gain", by=("advertiser",), cumulative=True),
            round_series(frame, "gain", "gain_n", by=("advertiser",), window=ctx.window),
        ),
        ("{variant}: cumulative utility gain", "{variant}: gain per entry ({ctx.rolling})"),
        ("cumulative gain (reward units)", "gain per entered round (reward units)"),
    )
    fig.suptitle("Utility gain from participation, U − E[r without her] (App. C.4, eq. 15)")
    return FigureOutput(
        "gain_advertisers",
        "Utility gain from participation per advertiser",
        "Left: cumulative gain (utility − E[r without her] on the same candidates, eq. 15; 0 in "
        f"rounds she stays out). Right: mean gain over her entries, {ctx.rolling}. Averaged over "
        "seeds. With the offset the gain is ≥ 0 in every round (Jensen), so the curves never "
        "fall; without it they can.",
        save(fig, out_dir, "gain_advertisers"),
        reason,
    )


def gain_ir(ctx: Context, out_dir: Path) -> FigureOutput:
    variants, reason = _gain_variants(ctx.data)
    frame = _gain_frame(ctx.data)
    frame = frame[frame["variant"].isin(variants) & (frame["gain_n"] > 0)]
    if frame.empty:
        return FigureOutput("gain_ir", "Ex-ante IR", "", None, reason or "nobody ever entered")
    fig, axes = figure(2, 1, sharex=True)
    fig.set_size_inches(max(PANEL[0], 0.7 * frame["advertiser"].nunique() + 3), 2 * PANEL[1])
    palette = {v: ctx.colour[v] for v in variants}
    for ax, column, ylabel, title in (
        (axes[0][0], "gain", "gain per entry (reward units)",
         "Mean utility gain from participation (Fig. 4 analogue)"),
        (axes[1][0], "gain_ok", "share of entries, gain ≥ 0",
         "Ex-ante IR check: share of entries with gain ≥ 0 (Remark 2)"),
    ):  # fmt: skip
        sns.barplot(data=frame, x="advertiser", y=column, hue="variant", palette=palette,
                    errorbar=("ci", 95), seed=0, ax=ax, legend=ax is axes[0][0])  # fmt: skip
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="advertiser", ylabel=ylabel, title=title)
        ax.tick_params(axis="x", labelrotation=30)
    axes[1][0].set_ylim(0, 1.05)
    sns.move_legend(axes[0][0], "upper left", bbox_to_anchor=(1.01, 1), title="variant")
    return FigureOutput(
        "gain_ir",
        "Utility gain and the ex-ante IR check",
        "Per advertiser, over the rounds she entered, pooled over seeds: the mean utility gain "
        "from participation, utility − E[r without her] (eq. 15; bars: 95% bootstrap CI over "
        "entries; upper panel), and the share of entries with gain ≥ 0 (up to 1e-9 round-off). With the offset "
        "the gain is τ·log E_β[e^{r/τ}] − E_β[r] ≥ 0 by Jensen, so every bar of the lower panel is 1 "
        "for truthful entrants; without it the share can fall below 1.",
        save(fig, out_dir, "gain_ir"),
        reason,
    )


def gain_vs_contribution(ctx: Context, out_dir: Path) -> FigureOutput:
    data = ctx.data
    fits = contribution_fits(data).set_index("variant")
    adv = data.advertisers[data.advertisers["entered"]]
    gain = utility_gain(adv)
    drawable = [v for v in data.variants if fits.loc[v, "n"] >= 3]
    skipped = [v for v in data.variants if v not in drawable]
    reason = (
        f"variant(s) {', '.join(skipped)}: no counterfactual expected_reward_without "
        "(token auction, or fewer than 3 entries)"
        if skipped
        else ""
    )
    if not drawable:
        return FigureOutput("gain_vs_contribution", "Gain vs contribution", "", None, reason)
    fig, axes = panel_grid(len(drawable))
    for ax, variant in zip(axes, drawable, strict=True):
        keep = (adv["variant"] == variant) & adv["contribution"].notna() & gain.notna()
        fit = fits.loc[variant]
        paper = fit["paper_pearson_r"]
        paper_text = f"paper ({fit['offset']}): r = {paper:.1f}" if np.isfinite(paper) else ""
        scatter_with_fit(ax, adv.loc[keep, "contribution"], gain[keep], fit, ctx.colour[variant],
                         paper_text)  # fmt: skip
        ax.set(
            xlabel="contribution: expected reward − reward without her (reward units)",
            ylabel="utility gain from participation (reward units)",
            title=f"{variant} ({fit['offset']})",
        )
    fig.suptitle("Utility gain against contribution to welfare (App. C.4, Figs. 5–7)")
    return FigureOutput(
        "gain_vs_contribution",
        "Utility gain vs contribution to welfare",
        "Each point is one entrant in one round. Contribution = expected_reward − "
        "expected_reward_without (the allocation softmax(β_{-i}) on the same candidates: the "
        "paper's normalized reward); gain = utility − expected_reward_without. Line: least "
        "squares. Paper, Sec. 6.2.2 / Fig. 7: Pearson r = 0.8 with the offset, 0.4 without.",
        save(fig, out_dir, "gain_vs_contribution"),
        reason,
    )
