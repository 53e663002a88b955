"""Figures of the paper-replication study: 1a, 1b, 2, 3 (App. C.3), 4, 5/6, 7 and the TV curve.

Figs. 4–7 plot the utility gain from participation (App. C.4), not the raw utility E[r] − p,
which has a figure of its own, labelled as such.

Each is drawn on its own `matplotlib.figure.Figure` against M on a log2 axis, one line per
generator, mean ± 95% t-interval over instances × seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.figures import scatter_with_fit

DPI = 130
PANEL = (5.4, 3.8)
STYLE = {"context": "tab:blue", "baseline": "tab:orange"}


def _generators(frame: pd.DataFrame) -> list[str]:
    return list(pd.unique(frame["generator"]))


def _figure(cols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1]), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    return fig, list(axes)


def _curve(ax: Axes, part: pd.DataFrame, label: str, colour: str, linestyle: str = "-") -> None:
    part = part.sort_values("M")
    ax.plot(part["M"], part["mean"], marker="o", color=colour, linestyle=linestyle, label=label)
    if part["low"].notna().any():
        ax.fill_between(part["M"], part["low"], part["high"], color=colour, alpha=0.18)


def _m_axis(ax: Axes, grid: list[int], sparse: bool = False) -> None:
    ax.set_xscale("log", base=2)
    grid = [int(m) for m in grid]
    if sparse and len(grid) > 8:  # every other power of two
        grid = [m for m in grid if (m & (m - 1)) == 0 and m.bit_length() % 2 == 1] or grid
    ax.set_xticks(grid, [str(m) for m in grid])
    ax.minorticks_off()
    ax.set_xlabel("candidate replies M")


def _metric_plot(
    ax: Axes, summary: pd.DataFrame, metric: str, *, linestyle: str = "-", suffix: str = ""
) -> None:
    part = summary[summary["metric"] == metric]
    for generator in _generators(part):
        colour = STYLE.get(generator, "tab:green")
        _curve(ax, part[part["generator"] == generator], f"{generator}{suffix}", colour, linestyle)


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    return path


@dataclass(frozen=True)
class StudyFigure:
    name: str
    title: str
    caption: str
    path: Path


def build_study_figures(
    out_dir: Path,
    summary: pd.DataFrame,
    gains: Mapping[str, pd.DataFrame],
    advertisers: pd.DataFrame,
    benchmarks: Mapping[str, float],
    convergence: pd.DataFrame | None,
    exact: bool,
) -> list[StudyFigure]:
    """Figures 1a, 1b, 2, 3 (App. C.3), 4 (gain), raw utility, 5/6, 7 and, on the synthetic engine,
    the TV curve. ``gains``: `reports.replication_tables.gain_table` per counterfactual."""
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = sorted(summary["M"].unique())
    m_max = grid[-1]
    band = "Mean ± 95% t-interval over instances × seeds."
    figures = []
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig = Figure(figsize=(PANEL[0] * 1.6, PANEL[1] * 1.15), layout="constrained")
        ax = fig.subplots()
        _metric_plot(ax, summary, "logp_optimal", suffix=", sampled")
        proxy = benchmarks.get("reference_logp", np.nan)
        if convergence is not None:
            study = convergence[convergence["sampler"] == "study"]
            for generator in _generators(study):
                part = study[study["generator"] == generator].sort_values("M")
                colour = STYLE.get(generator, "tab:green")
                ax.plot(
                    part["M"], part["logp_induced"], color=colour, linewidth=0.9,
                    label=f"{generator}, exact E_π_M[log π_r]",
                )  # fmt: skip
                ax.axhline(
                    part["logp_limit"].iloc[-1], color=colour, linestyle=":", linewidth=1.0,
                    label=f"{generator}: limit under top-p, E_π_r|S[log π_r]",
                )  # fmt: skip
                full = convergence[
                    (convergence["sampler"] == "top_p=1") & (convergence["generator"] == generator)
                ].sort_values("M")
                ax.plot(
                    full["M"], full["logp_induced"], color=colour, linewidth=0.9,
                    linestyle="-.", label=f"{generator}, exact, top_p = 1",
                )  # fmt: skip
            ax.axhline(
                float(study["logp_optimal"].iloc[0]), color="black", linestyle="--",
                label="a draw from π_r: −H(π_r)",
            )  # fmt: skip
            _m_axis(ax, sorted(set(grid) | set(study["M"])), sparse=True)
        else:
            if np.isfinite(proxy):
                ax.axhline(
                    proxy, color="grey", linestyle=":", label="footnote-4 proxy (π_ref on π_ref)"
                )
            _m_axis(ax, grid)
        ax.set(
            ylabel="log π_r of the returned reply (nats)" + ("" if exact else ", up to log Z(x)"),
            title="Fig. 1a: the returned reply under the optimal LLM",
        )
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figures.append(
            StudyFigure(
                "fig1a_logprob",
                "Fig. 1a — returned reply's log-probability under π_r, beside a draw from π_r",
                f"{band} Markers: the allocation-weighted log π_r over the sampled candidates "
                "(the expectation over the final draw). "
                + (
                    "Thin lines: the exact E[log π_r] of the returned reply, from the exact "
                    "distribution π_M of the reply MOSAIC returns (market/studies/convergence.py),"
                    " to M = " + f"{int(convergence['M'].max())} (solid: the study's sampler; "
                    "dash-dot: the same temperature with top_p = 1). Dashed: −H(π_r), what one reply"
                    " drawn from π_r scores: the level to compare with — a reply scoring above it "
                    "is not more like π_r (π_r's mode scores higher still). Dotted: the limit "
                    "E_{π_r|S}[log π_r] under the study's top-p, S its support; it equals −H(π_r) "
                    "only for top_p = 1."
                    if convergence is not None
                    else "log π_r up to the per-query constant log Z(x) (footnote 9); dotted: "
                    "footnote 4's proxy, π_ref's candidates scored by π_ref — a level, not a "
                    "target to exceed."
                ),
                _save(fig, out_dir, "fig1a_logprob"),
            )
        )

        fig, [ax] = _figure()
        _metric_plot(ax, summary, "normalized_reward")
        ax.axhline(0, color="grey", linewidth=0.8)
        _m_axis(ax, grid)
        ax.set(
            ylabel="total normalized reward (reward units)",
            title="Fig. 1b: advertisers' normalized reward",
        )
        ax.legend(fontsize="small")
        figures.append(
            StudyFigure(
                "fig1b_normalized_reward",
                "Fig. 1b — total advertiser normalized reward",
                f"{band} Σ_i (allocation·r_i − softmax(β_-i)·r_i): expected reward minus the "
                "expected reward the allocation would give her without her report, on the same "
                "candidates (MOSAIC's expected_reward_without, not the paper's footnote-5 "
                "estimate).",
                _save(fig, out_dir, "fig1b_normalized_reward"),
            )
        )

        fig, [ax] = _figure()
        _metric_plot(ax, summary, "revenue_offset", suffix=", offset")
        _metric_plot(ax, summary, "revenue_no_offset", linestyle="--", suffix=", no offset")
        ax.axhline(0, color="grey", linewidth=0.8)
        _m_axis(ax, grid)
        ax.set(ylabel="revenue (reward units / auction)", title="Fig. 2: revenue")
        ax.legend(fontsize="small")
        figures.append(
            StudyFigure(
                "fig2_revenue",
                "Fig. 2 — revenue",
                f"{band} Σ payments of eq. 13 with the offset of Sec. 5.3 (solid) and with plain "
                "Rochet payments, C_i = 0 (dashed).",
                _save(fig, out_dir, "fig2_revenue"),
            )
        )

        fig, [ax] = _figure()
        _metric_plot(ax, summary, "logp_reference")
        if np.isfinite(proxy):
            ax.axhline(proxy, color="grey", linestyle=":", label="one reply from π_ref")
        _m_axis(ax, grid)
        ax.set(
            ylabel="log π_ref of the returned reply (nats)",
            title="Fig. 3: usefulness to the user",
        )
        ax.legend(fontsize="small")
        figures.append(
            StudyFigure(
                "fig3_usefulness",
                "Fig. 3 (App. C.3) — log-probability under the reference LLM",
                f"{band} Allocation-weighted log π_ref of the candidates; dotted: a reply drawn "
                "from π_ref itself.",
                _save(fig, out_dir, "fig3_usefulness"),
            )
        )

        generators = _generators(summary)
        absent = "absent_from_prompt" in gains
        fig, axes = _figure(len(generators))
        for ax, generator in zip(axes, generators, strict=True):
            part = summary[summary["generator"] == generator]
            colour = STYLE.get(generator, "tab:green")
            for metric, label, line_colour, style in (
                ("utility_gain_offset", "with offset", colour, "-"),
                ("utility_gain_no_offset", "without offset", "tab:red", "--"),
                (
                    "utility_gain_offset_absent_prompt",
                    "with offset, absent from prompt",
                    colour,
                    ":",
                ),
                (
                    "utility_gain_no_offset_absent_prompt",
                    "without offset, absent from prompt",
                    "tab:red",
                    ":",
                ),
            ):
                if (part["metric"] == metric).any():
                    _curve(ax, part[part["metric"] == metric], label, line_colour, style)
            ax.axhline(0, color="grey", linewidth=0.8)
            _m_axis(ax, grid)
            ax.set(ylabel="total utility gain (reward units)", title=f"Fig. 4: {generator}")
            ax.legend(fontsize="small")
        figures.append(
            StudyFigure(
                "fig4_utility_gain",
                "Fig. 4 — advertisers' utility gain from participation, with and without the offset",
                f"{band} Σ_i of the utility gain from participation (App. C.4): ex-interim utility "
                "(eq. 12/13) minus her reward when she stays out — solid/dashed: on the same "
                "candidates without her report (eq. 15), where the offset C_i = −τ·logsumexp(β_-i)"
                " makes every gain ≥ 0 (Jensen)"
                + (
                    "; dotted: with the candidates regenerated without her in the prompt (Fig. 1b"
                    "'s normalisation)."
                    if absent
                    else "."
                )
                + " Positive means ex-ante IR.",
                _save(fig, out_dir, "fig4_utility_gain"),
            )
        )

        fig, axes = _figure(len(generators))
        for ax, generator in zip(axes, generators, strict=True):
            part = summary[summary["generator"] == generator]
            colour = STYLE.get(generator, "tab:green")
            _curve(ax, part[part["metric"] == "utility_offset"], "with offset", colour)
            _curve(
                ax, part[part["metric"] == "utility_no_offset"], "without offset", "tab:red", "--"
            )
            ax.axhline(0, color="grey", linewidth=0.8)
            _m_axis(ax, grid)
            ax.set(
                ylabel="total utility (E[r] − p), reward units", title=f"raw utility: {generator}"
            )
            ax.legend(fontsize="small")
        figures.append(
            StudyFigure(
                "raw_utility",
                "Raw utility (E[r] − p), for reference — not the paper's Fig. 4",
                f"{band} Σ_i E[r_i] − p_i with the offset (solid) and with C_i = 0 (dashed). "
                "Staying out is not worth 0 here (her reward when absent is usually negative), so "
                "the sign of this curve is not the IR check; Fig. 4 above is.",
                _save(fig, out_dir, "raw_utility"),
            )
        )

        scatter = gains["same_candidates"]
        at_m = advertisers[advertisers["M"] == m_max]
        fig = Figure(figsize=(PANEL[0] * 2, PANEL[1] * len(generators)), layout="constrained")
        axes = fig.subplots(len(generators), 2, squeeze=False)
        for row, generator in enumerate(generators):
            part = at_m[at_m["generator"] == generator]
            for col, offset in enumerate((True, False)):
                ax = axes[row][col]
                line = scatter[
                    (scatter["generator"] == generator)
                    & (scatter["M"] == m_max)
                    & (scatter["offset"] == offset)
                ].iloc[0]
                fit = pd.Series(
                    {
                        "slope": line["slope_gain_contribution"],
                        "r2": line["r2_gain_contribution"],
                        "pearson_r": line["pearson_gain_contribution"],
                    }
                )
                paper = f"paper: r = {line['paper_pearson']:.1f}"
                if np.isfinite(line["paper_slope"]):
                    paper += f", slope {line['paper_slope']:.2f}, R² {line['paper_r2']:.2f}"
                gain = "utility_gain_offset" if offset else "utility_gain_no_offset"
                colour = STYLE.get(generator, "tab:green")
                scatter_with_fit(ax, part["contribution"], part[gain], fit, colour, paper)
                ax.set(
                    xlabel="contribution: normalized reward (reward units)",
                    ylabel="utility gain (reward units)",
                    title=f"{generator}, {'with' if offset else 'without'} offset",
                )
        fig.suptitle(f"Figs. 5/6: utility gain against contribution (M = {m_max})")
        figures.append(
            StudyFigure(
                "fig5_6_gain_vs_contribution",
                "Figs. 5/6 — utility gain from participation against contribution to welfare",
                f"One point per advertiser and auction at M = {m_max}; least-squares line, slope, "
                "R² and Pearson r of the gain (utility − softmax(β_-i)·r_i, eq. 15) on the "
                "contribution (expected reward − the same). The paper: r = 0.8 with the offset "
                "and 0.4 without (Sec. 6.2.2); baseline generator: slope 1.00, R² 0.96 with the "
                "offset, slope 0.5, R² 0.19 without (Fig. 6).",
                _save(fig, out_dir, "fig5_6_gain_vs_contribution"),
            )
        )

        fig, axes = _figure(len(gains))
        for ax, (counterfactual, table) in zip(axes, gains.items(), strict=True):
            for generator in _generators(table):
                colour = STYLE.get(generator, "tab:green")
                for offset, style in ((True, "-"), (False, "--")):
                    part = table[(table["generator"] == generator) & (table["offset"] == offset)]
                    part = part.sort_values("M")
                    ax.plot(
                        part["M"],
                        part["pearson_gain_contribution"],
                        marker="o",
                        color=colour,
                        linestyle=style,
                        label=f"{generator}, {'with' if offset else 'without'} offset",
                    )
            for level, style in ((0.8, "-"), (0.4, "--")):
                ax.axhline(level, color="grey", linewidth=0.8, linestyle=style)
            _m_axis(ax, grid)
            ax.set(
                ylabel="Pearson r(gain, contribution)",
                ylim=(-1.02, 1.02),
                title=f"Fig. 7: {counterfactual.replace('_', ' ')}",
            )
            ax.legend(fontsize="small")
        figures.append(
            StudyFigure(
                "fig7_pearson",
                "Fig. 7 — Pearson correlation of utility gain and contribution",
                "Pearson r over advertisers × auctions at each M, with the offset (solid) and "
                "without (dashed); grey lines: the paper's 0.8 (with) and 0.4 (without). Left: "
                "same-candidates counterfactual (eq. 15)"
                + ("; right: candidates regenerated without her in the prompt." if absent else "."),
                _save(fig, out_dir, "fig7_pearson"),
            )
        )

        if convergence is not None:
            samplers = list(pd.unique(convergence["sampler"]))
            order = sorted(samplers, key=lambda name: name != "top_p=1")
            fig, axes = _figure(len(order))
            for ax, sampler in zip(axes, order, strict=True):
                part = convergence[convergence["sampler"] == sampler]
                top_p = float(part["top_p"].iloc[0])
                for generator in _generators(part):
                    mine = part[part["generator"] == generator].sort_values("M")
                    colour = STYLE.get(generator, "tab:green")
                    _curve(
                        ax,
                        mine.rename(columns={"tv": "mean", "tv_low": "low", "tv_high": "high"}),
                        generator,
                        colour,
                    )
                    if top_p < 1:
                        ax.axhline(
                            mine["tv_floor"].iloc[-1], color=colour, linestyle="--",
                            label=f"{generator}: floor 1 − π_r(S) = {mine['tv_floor'].iloc[-1]:.3f}",
                        )  # fmt: skip
                _m_axis(ax, sorted(set(part["M"])), sparse=True)
                ax.set(
                    ylabel="TV(π_r, π_M)",
                    ylim=(0, 1.02),
                    title=(
                        "top_p = 1: converges to π_r (Thm. A.1)"
                        if top_p >= 1
                        else f"top_p = {top_p:g}: floored at 1 − π_r(S)"
                    ),
                )
                ax.legend(fontsize="small")
            figures.append(
                StudyFigure(
                    "tv_convergence",
                    "Distance from the returned reply's distribution to π_r (exact, synthetic "
                    "engine)",
                    "Mean ± 95% t-interval over instances of TV(π_r, π_M), π_M the exact "
                    "distribution of the reply MOSAIC returns from M candidates (no sampling noise)."
                    " Left: the study's temperature with top_p = 1, where π_ref ≪ π_gen and TV → 0 "
                    "as M grows (Theorem A.1, Corollary 4.1). Right: the study's top-p, under which "
                    "the sampler never proposes the replies outside its support S: TV cannot fall "
                    "below 1 − π_r(S) (dashed) and reaches it; it does not converge to 0.",
                    _save(fig, out_dir, "tv_convergence"),
                )
            )
    return figures
