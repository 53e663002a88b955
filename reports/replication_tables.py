"""The replication's gain table (``tables.csv``): utility gain from participation against
contribution, per generator × M × payment rule, for one counterfactual.

What the paper's Figs. 4–7 and its Pearson 0.8 / 0.4 (Sec. 6.2.2) measure is the *utility gain
from participation* (App. C.4): an advertiser's utility minus the reward she gets when she stays
out, against her contribution, her expected reward minus that same reward (Fig. 1b's normalized
reward). Two counterfactuals for "stays out" (`market.studies.counterfactual`):

- ``same_candidates``: the allocation without her report over the same candidates (eq. 15); with
  the offset the gain is ≥ 0 by Jensen's inequality, so ex-ante IR holds on every instance;
- ``absent_from_prompt``: the candidates regenerated with her removed from the context prompt
  (the paper's Fig. 1b normalisation, which its footnote 5 estimates); synthetic engine only.

The raw ex-interim utility E[r] − p stays in the table as ``utility_mean``, labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.gain import gain_is_non_negative
from reports.stats import linear_fit, t_interval
from reports.tables import PAPER_PEARSON

__all__ = ["COUNTERFACTUALS", "GAIN_TABLE_COLUMNS", "Counterfactual", "gain_table"]


@dataclass(frozen=True)
class Counterfactual:
    """Where an advertiser's reward when she stays out comes from, and its columns."""

    name: str
    label: str
    contribution: str  # advertisers-table column: expected reward − reward when out
    gain_offset: str  # utility with the offset − reward when out
    gain_no_offset: str  # utility with C_i = 0 − reward when out

    def gain(self, offset: bool) -> str:
        return self.gain_offset if offset else self.gain_no_offset


COUNTERFACTUALS: dict[str, Counterfactual] = {
    c.name: c
    for c in (
        Counterfactual(
            "same_candidates",
            "same candidates, her report removed (eq. 15)",
            "contribution",
            "utility_gain_offset",
            "utility_gain_no_offset",
        ),
        Counterfactual(
            "absent_from_prompt",
            "candidates regenerated without her in the prompt (Fig. 1b normalisation)",
            "contribution_absent_prompt",
            "utility_gain_offset_absent_prompt",
            "utility_gain_no_offset_absent_prompt",
        ),
    )
}

RAW_UTILITY = {True: "utility_offset", False: "utility_no_offset"}

# App. C.4 (Fig. 6, baseline generator): slope and R² of the gain on contribution.
PAPER_BASELINE_FIT = {True: (1.00, 0.96), False: (0.5, 0.19)}

GAIN_TABLE_COLUMNS = (
    "generator",
    "M",
    "offset",
    "counterfactual",
    "n",
    "utility_gain_mean",
    "utility_gain_low",
    "utility_gain_high",
    "utility_gain_min",
    "share_gain_non_negative",
    "pearson_gain_contribution",
    "slope_gain_contribution",
    "intercept_gain_contribution",
    "r2_gain_contribution",
    "contribution_mean",
    "utility_mean",
    "paper_pearson",
    "paper_slope",
    "paper_r2",
)


def gain_table(advertisers: pd.DataFrame, counterfactual: str = "same_candidates") -> pd.DataFrame:
    """One row per generator × M × offset (True: the offset of Sec. 5.3; False: C_i = 0).

    Over the advertiser rows (instances × seeds × 2 advertisers): the gain's mean with a 95%
    t-interval, its minimum and the share ≥ 0 (the IR check, `reports.gain`), and the least-squares
    fit of the gain on the contribution (slope, R², Pearson r; the paper's Figs. 5–7), beside the
    paper's numbers. ``utility_mean`` is the raw utility (E[r] − p), not the gain. Empty when the
    counterfactual was not recorded (``absent_from_prompt`` off the synthetic engine).
    """
    cf = COUNTERFACTUALS[counterfactual]
    rows = []
    if advertisers[cf.gain_offset].notna().any():
        for (generator, m), part in advertisers.groupby(["generator", "M"], sort=False):
            for offset in (True, False):
                gain = part[cf.gain(offset)].to_numpy(float)
                contribution = part[cf.contribution].to_numpy(float)
                fit = linear_fit(contribution, gain)
                interval = t_interval(gain)
                finite = gain[np.isfinite(gain)]
                slope, r2 = (
                    PAPER_BASELINE_FIT[offset] if generator == "baseline" else (np.nan, np.nan)
                )
                rows.append(
                    {
                        "generator": generator,
                        "M": int(m),
                        "offset": offset,
                        "counterfactual": cf.name,
                        "n": int(finite.size),
                        "utility_gain_mean": interval.estimate,
                        "utility_gain_low": interval.low,
                        "utility_gain_high": interval.high,
                        "utility_gain_min": float(finite.min()) if finite.size else np.nan,
                        "share_gain_non_negative": (
                            float(gain_is_non_negative(finite).mean()) if finite.size else np.nan
                        ),
                        "pearson_gain_contribution": fit.pearson_r,
                        "slope_gain_contribution": fit.slope,
                        "intercept_gain_contribution": fit.intercept,
                        "r2_gain_contribution": fit.r2,
                        "contribution_mean": float(np.nanmean(contribution)),
                        "utility_mean": float(np.nanmean(part[RAW_UTILITY[offset]])),
                        "paper_pearson": PAPER_PEARSON[
                            "with offset" if offset else "without offset"
                        ],
                        "paper_slope": slope,
                        "paper_r2": r2,
                    }
                )
    return pd.DataFrame(rows, columns=list(GAIN_TABLE_COLUMNS))
