"""The dilution curve of a real LLM (`admarket probe`): mention rate against listed entrants k.

One panel per prompt style. Four π_con rates per k, each with its Wilson 95% interval: replies
naming the relevant (first-listed) entrant, replies naming at least one listed entrant, mentions
per listed entrant, and mentions per other (irrelevant) listed entrant (App. B.4: the more
entrants share the context-aware prompt, the less each is named). The dashed line is π_i's rate of naming brand i (App. C.1).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

DPI = 130
PANEL = (5.0, 3.8)
CURVES = (
    ("relevant", "relevant entrant named"),
    ("any", "≥ 1 listed entrant named"),
    ("per_entrant", "mentions per listed entrant"),
    ("others", "mentions per other (irrelevant) entrant"),
)


def dilution_figure(
    summary: pd.DataFrame, path: str | Path, *, model: str = "", note: str = ""
) -> Path:
    """Draw `market.probe.summarize`'s table as the dilution curve(s) into ``path`` (PNG);
    ``note`` (e.g. where the relevant entrant is listed) goes under the title."""
    path = Path(path)
    styles = list(dict.fromkeys(summary["style"]))
    fig = Figure(figsize=(PANEL[0] * len(styles), PANEL[1]), layout="constrained")
    axes = fig.subplots(1, len(styles), squeeze=False, sharey=True)[0]
    colours = dict(
        zip([c for c, _ in CURVES], sns.color_palette("colorblind", len(CURVES)), strict=True)
    )
    for ax, style in zip(axes, styles, strict=True):
        rows = summary[summary["style"] == style]
        context = rows[rows["prompt"] == "context"].sort_values("k")
        ks = context["k"].to_numpy(int)
        for column, label in CURVES:
            shown = context[context[f"{column}_trials"] > 0]
            y = shown[column].to_numpy(float)
            err = np.vstack([y - shown[f"{column}_low"], shown[f"{column}_high"] - y])
            x = shown["k"].to_numpy(int)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label, color=colours[column])
        advertiser = rows[rows["prompt"] == "advertiser"]
        if len(advertiser):
            ax.axhline(
                float(advertiser["relevant"].iloc[0]),
                color="grey",
                linestyle="--",
                label="π_i names brand i",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_ylim(0, 1)
        ax.set_xlabel("entrants listed in π_con's prompt (k)")
        ax.set_title(f"style: {style}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of replies (95% Wilson CI)")
    axes[-1].legend(loc="upper right", fontsize="small")
    n = int(summary["replies"].iloc[0])
    lines = ["Dilution of the context-aware prompt", model, f"{n} replies per point; {note}"]
    fig.suptitle(
        "\n".join(textwrap.fill(x, 70 * len(styles)) for x in lines if x.strip("; ")),
        fontsize="medium",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
