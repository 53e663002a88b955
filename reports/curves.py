"""Per-round series for the report's line plots: rolling or cumulative, then mean ± CI over seeds.

A series is a ratio of two per-round sums (numerator / denominator), so a rolling participation
rate is (entries in the window) / (advertiser-rounds in the window), not a mean of per-round rates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from reports.stats import CONFIDENCE


def rolling_window(n_rounds: int) -> int:
    """Rolling-mean window in rounds: 5% of the run, at least 5 rounds, at most the run."""
    return int(max(1, min(n_rounds, max(5, n_rounds // 20))))


def round_series(
    frame: pd.DataFrame,
    numerator: str,
    denominator: str | None = None,
    *,
    by: tuple[str, ...] = (),
    window: int = 1,
    cumulative: bool = False,
) -> pd.DataFrame:
    """Mean over seeds, per (variant, *by, round), of a rolling (or cumulative) per-round series.

    ``frame`` has columns variant, seed, round, ``by`` and the numerator/denominator sums.
    Returns variant, *by, round, mean, low, high, n_seeds; low/high are a 95% t-interval over
    seeds (NaN with a single seed).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 round, got {window}")
    groups = ["variant", *by, "seed"]
    frame = frame.sort_values([*groups, "round"])
    num = frame[numerator].astype(float)
    den = frame[denominator].astype(float) if denominator else pd.Series(1.0, index=frame.index)
    keys = [frame[g] for g in groups]
    if cumulative:
        value = num.groupby(keys).cumsum()
    else:
        rolled_num = num.groupby(keys).transform(lambda s: s.rolling(window, min_periods=1).sum())
        rolled_den = den.groupby(keys).transform(lambda s: s.rolling(window, min_periods=1).sum())
        value = rolled_num / rolled_den.where(rolled_den > 0)
    per_seed = frame[[*groups, "round"]].assign(value=value.to_numpy())
    summary = (
        per_seed.groupby(["variant", *by, "round"], sort=False)["value"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    n = summary["count"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        quantile = stats.t.ppf(0.5 + CONFIDENCE / 2, np.where(n >= 2, n - 1, np.nan))
        half = quantile * summary["std"].to_numpy(float) / np.sqrt(n)
    summary["low"] = summary["mean"] - half
    summary["high"] = summary["mean"] + half
    return summary.rename(columns={"count": "n_seeds"}).drop(columns="std")
