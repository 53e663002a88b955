"""Confidence intervals and the least-squares line the reports use (numpy + scipy.stats only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_CHUNK_BYTES = 32 * 2**20  # resample counts (8 bytes each) held at once


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval and how it was computed."""

    estimate: float
    low: float
    high: float
    n: int
    method: str


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean ± Student-t interval over independent replicates; NaN values are dropped.

    With fewer than two finite values the bounds are NaN (no spread to estimate).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    method = f"mean ± {confidence:.0%} t-interval over {n} replicate(s)"
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0, method)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, np.nan, np.nan, n, method)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, method)


def wilson_interval(
    successes: int, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved near 0 and 1)."""
    if trials <= 0:
        return (np.nan, np.nan)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    # The interval contains p in exact arithmetic; clamp so rounding cannot put p outside it.
    return (float(max(0.0, min(centre - half, p))), float(min(1.0, max(centre + half, p))))


def bootstrap_sums(
    per_unit: np.ndarray, rng: np.random.Generator, *, n_boot: int = 2000
) -> np.ndarray:
    """Column sums of ``n_boot`` resamples (with replacement) of the rows of ``per_unit``.

    ``per_unit`` is (units, K) additive statistics, e.g. one row per round of a run. A resample
    is a multinomial count per unit, so a matrix product gives the bootstrap sums: (n_boot, K).
    The counts are drawn a chunk of resamples at a time, so about `BOOTSTRAP_CHUNK_BYTES` of them
    are held at once however many units there are (2,000 resamples of 100,000 rounds would be
    1.6 GB at once); the generator draws the same counts, in the same order, as in one call.
    """
    units = per_unit.shape[0]
    probabilities = np.full(units, 1.0 / units)
    values = np.nan_to_num(per_unit)
    sums = np.empty((n_boot, values.shape[1]))
    chunk = max(1, BOOTSTRAP_CHUNK_BYTES // (8 * units))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        sums[start:stop] = rng.multinomial(units, probabilities, size=stop - start) @ values
    return sums


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; NaN when half of them are undefined."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size < max(2, values.size // 2):
        return (np.nan, np.nan)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high))


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line y ≈ intercept + slope · x, with R² and Pearson's r."""

    n: int
    slope: float
    intercept: float
    r2: float
    pearson_r: float


def linear_fit(x: np.ndarray, y: np.ndarray) -> LinearFit:
    """Fit y on x over the pairs where both are finite (NaN fit when fewer than 3 or no spread)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < 3:
        return LinearFit(n, np.nan, np.nan, np.nan, np.nan)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxx == 0 or syy == 0:
        return LinearFit(n, np.nan, np.nan, np.nan, np.nan)
    slope = sxy / sxx
    r = sxy / np.sqrt(sxx * syy)
    return LinearFit(n, slope, float(y.mean() - slope * x.mean()), r * r, r)
