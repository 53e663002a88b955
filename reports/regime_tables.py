"""The regime map's tables as shown on ``regime_map.html`` (`reports.regime_map`): one row per cell
(the offset's effect, the theory's margin, the regime, what the riders' arms saw) and one per cell
× variant (each metric as mean [95% t-interval] over seeds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from reports.regime_map import RegimeMap


def _ci(mean: float, low: float, high: float) -> str:
    if not np.isfinite(low):
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def display_effects(rmap: RegimeMap) -> pd.DataFrame:
    """One row per cell: the offset's effect on entry, the margin, the regime, the riders' arms."""
    from reports.regime_map import SHORT

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
            "of which weights alone, τ·lse(log π_ref/π_gen)": [
                _ci(*v)
                for v in zip(
                    e["margin_alone"], e["margin_alone_low"], e["margin_alone_high"], strict=True
                )
            ],
            "regime": e["regime"],
            "nobody enters: offset / none": [
                f"{'yes' if a else 'no'} / {'yes' if b else 'no'}"
                for a, b in zip(e["collapse_offset"], e["collapse_no_offset"], strict=True)
            ],
            "theory: enters without offset": e["theory_enters_no_offset"],
            "riders' in − out, offset / none": [
                f"{a:.3g} / {b:.3g}"
                for a, b in zip(
                    e["rider_advantage_offset"], e["rider_advantage_no_offset"], strict=True
                )
            ],
            "riders' in − out, market, offset / none": [
                f"{a:.3g} / {b:.3g}"
                for a, b in zip(
                    e["rider_advantage_market_offset"],
                    e["rider_advantage_market_no_offset"],
                    strict=True,
                )
            ],
            "riders' gain (eq. 15), offset / none": [
                f"{a:.3g} / {b:.3g}"
                for a, b in zip(e["rider_gain_offset"], e["rider_gain_no_offset"], strict=True)
            ],
        }
    )


def display_cells(rmap: RegimeMap) -> pd.DataFrame:
    """One row per cell × variant: every metric as mean [95% CI] over seeds."""
    from reports.regime_map import METRICS, RIDER, SHORT

    c = rmap.cells
    frame = pd.DataFrame({SHORT.get(k, k): c[k] for k in rmap.keys})
    frame["variant"] = c["variant"]
    for metric in METRICS:
        frame[metric] = [
            _ci(*v) for v in zip(c[metric], c[f"{metric}_low"], c[f"{metric}_high"], strict=True)
        ]
    frame["predicted irrelevant entry"] = c["predicted_irrelevant_entry"]
    for name in RIDER:
        frame[name] = [
            _ci(*v) for v in zip(c[name], c[f"{name}_low"], c[f"{name}_high"], strict=True)
        ]
    return frame
