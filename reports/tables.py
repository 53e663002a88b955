"""The report's tables, computed from `RunData` alone (pandas/numpy; no plotting, no I/O).

Confidence intervals: with several seeds a metric is computed once per seed and summarized by a
Student-t interval over seeds; with a single seed it is a percentile bootstrap over rounds (rounds
resampled with replacement). Every headline metric is a function of per-round additive sums, so
both use the same code path (`round_sums`).

Utility gain, not utility: the paper's Figs. 4–7, its ex-ante IR claim and its Pearson 0.8 / 0.4
are about the gain from participation, utility − E[r without her] (App. C.4, eq. 15; see
`reports.gain`). Every fit, correlation and IR share here uses the gain; the raw ex-interim utility
E[r] − p stays available as ``utility`` ("utility (E[r] − p)").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.data import KEYS, RunData
from reports.gain import gain_is_non_negative, utility_gain
from reports.stats import (
    bootstrap_sums,
    linear_fit,
    percentile_interval,
    t_interval,
    wilson_interval,
)

# Sec. 6.2.2 / App. C.4 Fig. 7: Pearson correlation between an advertiser's utility gain from
# participation and her normalized reward (contribution).
PAPER_PEARSON = {"with offset": 0.8, "without offset": 0.4}

Sums = Mapping[str, np.ndarray]


def _ratio(numerator: str, denominator: str) -> Callable[[Sums], np.ndarray]:
    def compute(s: Sums) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s[denominator] > 0, s[numerator] / s[denominator], np.nan)

    return compute


def _pearson(s: Sums) -> np.ndarray:
    n = s["pr_n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = s["pr_xy"] - s["pr_x"] * s["pr_y"] / n
        var_x = s["pr_xx"] - s["pr_x"] ** 2 / n
        var_y = s["pr_yy"] - s["pr_y"] ** 2 / n
        return np.where((n >= 3) & (var_x > 0) & (var_y > 0), cov / np.sqrt(var_x * var_y), np.nan)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    compute: Callable[[Sums], np.ndarray]


SHARE = "share of advertiser-rounds"
ENTRY_SHARE = "share of entries"
PER_ROUND = "reward units / round"

HEADLINE_METRICS: tuple[Metric, ...] = (
    Metric(
        "participation_relevant",
        "participation, relevant",
        SHARE,
        _ratio("rel_in", "rel_rows"),
    ),
    Metric(
        "participation_relevant_late",
        "participation, relevant, 2nd half",
        SHARE,
        _ratio("rel_in_late", "rel_rows_late"),
    ),
    Metric(
        "participation_irrelevant",
        "participation, irrelevant",
        SHARE,
        _ratio("irr_in", "irr_rows"),
    ),
    Metric(
        "participation_irrelevant_late",
        "participation, irrelevant, 2nd half",
        SHARE,
        _ratio("irr_in_late", "irr_rows_late"),
    ),
    Metric("revenue", "revenue / round", PER_ROUND, _ratio("revenue", "rounds")),
    Metric("welfare", "welfare / round (realized)", PER_ROUND, _ratio("welfare", "rounds")),
    Metric(
        "expected_welfare",
        "expected welfare / round",
        PER_ROUND,
        _ratio("expected_welfare", "rounds"),
    ),
    Metric(
        "usefulness",
        "usefulness (log π_ref / token)",
        "nats / token",
        _ratio("use_sum", "use_n"),
    ),
    Metric(
        "utility",
        "utility (E[r] − p) / entry",
        "reward units / entry",
        _ratio("util_sum", "entries"),
    ),
    Metric(
        "utility_gain",
        "utility gain / entry (U − E[r without], eq. 15)",
        "reward units / entry",
        _ratio("gain_sum", "gain_n"),
    ),
    Metric(
        "share_gain_non_negative",
        "ex-ante IR: share of entries with gain ≥ 0",
        ENTRY_SHARE,
        _ratio("gain_ok", "gain_n"),
    ),
    Metric("pearson_r", "Pearson r(gain, contribution)", "correlation", _pearson),
)


def offset_modes(data: RunData) -> dict[str, str]:
    """Per variant: "with offset", "without offset" or "n/a" (token auction), from the data.

    Without the offset C_i = 0 for every entrant (Sec. 5.3); the token auction records NaN.
    """
    adv = data.advertisers[data.advertisers["entered"]]
    modes = {}
    for variant in data.variants:
        offsets = adv.loc[adv["variant"] == variant, "offset"].to_numpy(dtype=float)
        finite = offsets[np.isfinite(offsets)]
        if finite.size == 0:
            modes[variant] = "n/a"
        else:
            modes[variant] = "with offset" if np.any(finite != 0) else "without offset"
    return modes


def round_sums(data: RunData) -> pd.DataFrame:
    """Additive per-round statistics, one row per (variant, seed, round), from which every
    headline metric is a ratio (or, for Pearson's r, a function) of column sums.

    Each advertiser-row statistic is built and summed into its round on its own (a bincount over
    the rows' round index), so memory stays a few columns of the advertisers table however many
    rounds a run has (a 100,000-round run of 12 advertisers and two variants has 2.4 million
    rows).
    """
    rounds = data.rounds.set_index(list(KEYS))
    adv = data.advertisers
    row_of = rounds.index.get_indexer(pd.MultiIndex.from_frame(adv[list(KEYS)]))  # -1: none
    known = row_of >= 0
    known_rows = row_of[known]
    n_rounds = len(rounds)

    def summed(values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return np.bincount(known_rows, weights=values[known], minlength=n_rounds)

    variant = adv["variant"].to_numpy()
    last = adv.groupby(["variant", "seed"])["round"].transform("max").to_numpy()
    late = adv["round"].to_numpy() >= (last + 1) // 2
    del last
    entered = adv["entered"].to_numpy(dtype=bool)
    relevant = adv["relevant"].to_numpy(dtype=bool)
    utility = adv["utility"].to_numpy(dtype=float)
    gain = utility_gain(adv)
    has_gain = gain.notna().to_numpy()
    x = adv["contribution"].astype(float)
    y = gain.where(x.notna())
    paired = entered & x.notna().to_numpy() & y.notna().to_numpy()
    # Pearson's r is shift-invariant: centring per variant keeps the sums well conditioned.
    x = (x - x[paired].groupby(variant[paired]).transform("mean").reindex(x.index)).to_numpy()
    y = (y - y[paired].groupby(variant[paired]).transform("mean").reindex(y.index)).to_numpy()
    x = np.where(paired, x, 0.0)
    y = np.where(paired, y, 0.0)
    statistics = {
        "rel_rows": lambda: relevant,
        "rel_in": lambda: relevant & entered,
        "irr_rows": lambda: ~relevant,
        "irr_in": lambda: ~relevant & entered,
        "rel_rows_late": lambda: relevant & late,
        "rel_in_late": lambda: relevant & entered & late,
        "irr_rows_late": lambda: ~relevant & late,
        "irr_in_late": lambda: ~relevant & entered & late,
        "entries": lambda: entered,
        "util_sum": lambda: np.where(entered, utility, 0.0),
        "gain_n": lambda: has_gain,
        "gain_sum": lambda: gain.fillna(0.0).to_numpy(),
        "gain_ok": lambda: has_gain & gain_is_non_negative(gain),
        "pr_n": lambda: paired,
        "pr_x": lambda: x,
        "pr_y": lambda: y,
        "pr_xx": lambda: x * x,
        "pr_yy": lambda: y * y,
        "pr_xy": lambda: x * y,
    }
    per_round = pd.DataFrame(
        {name: summed(statistic()) for name, statistic in statistics.items()}, index=rounds.index
    )
    usefulness = rounds["usefulness"].astype(float)
    per_round["rounds"] = 1.0
    per_round["revenue"] = rounds["revenue"].astype(float)
    per_round["welfare"] = rounds["welfare"].astype(float)
    per_round["expected_welfare"] = rounds["expected_welfare"].astype(float)
    per_round["use_n"] = usefulness.notna().astype(float)
    per_round["use_sum"] = usefulness.fillna(0.0)
    return per_round.reset_index()


def headline_table(
    data: RunData, *, rng: np.random.Generator | None = None, n_boot: int = 2000
) -> pd.DataFrame:
    """Per variant and metric: estimate, 95% CI and how the CI was computed (tidy frame).

    Several seeds: the metric per seed, mean ± t-interval over seeds. One seed: the metric over
    all rounds, percentile bootstrap over rounds.
    """
    rng = rng if rng is not None else np.random.default_rng(np.random.SeedSequence(0))
    sums = round_sums(data)
    columns = [c for c in sums.columns if c not in KEYS]
    rows = []
    for variant in data.variants:
        part = sums[sums["variant"] == variant]
        per_seed = part.groupby("seed")[columns].sum()
        seed_sums = {c: per_seed[c].to_numpy() for c in columns}
        if len(per_seed) < 2:
            boot = bootstrap_sums(part[columns].to_numpy(dtype=float), rng, n_boot=n_boot)
            boot_sums = {c: boot[:, k] for k, c in enumerate(columns)}
        for metric in HEADLINE_METRICS:
            values = metric.compute(seed_sums)
            if len(per_seed) >= 2:
                interval = t_interval(values)
                estimate, low, high = interval.estimate, interval.low, interval.high
                n, method = interval.n, f"mean ± 95% t-interval over {interval.n} seeds"
            else:
                estimate = float(values[0])
                with np.errstate(invalid="ignore", divide="ignore"):
                    low, high = percentile_interval(metric.compute(boot_sums))
                n, method = len(part), f"95% bootstrap CI over {len(part)} rounds (1 seed)"
            rows.append(
                {
                    "variant": variant,
                    "metric": metric.key,
                    "label": metric.label,
                    "estimate": estimate,
                    "low": low,
                    "high": high,
                    "n": n,
                    "method": method,
                }
            )
    return pd.DataFrame(rows)


def format_interval(estimate: float, low: float, high: float, digits: int = 3) -> str:
    if not np.isfinite(estimate):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{estimate:.{digits}g}"
    return f"{estimate:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def headline_wide(headline: pd.DataFrame) -> pd.DataFrame:
    """Display form: one row per metric label, one column per variant, "est [low, high]"."""
    cells = headline.assign(
        cell=[
            format_interval(e, lo, hi)
            for e, lo, hi in zip(
                headline["estimate"], headline["low"], headline["high"], strict=True
            )
        ]
    )
    wide = cells.pivot(index="label", columns="variant", values="cell")
    order = [m.label for m in HEADLINE_METRICS]
    return wide.reindex(index=order, columns=list(pd.unique(headline["variant"])))


def advertiser_table(data: RunData) -> pd.DataFrame:
    """One row per (variant, advertiser), pooled over seeds and rounds.

    ``utility_per_entry`` is the raw utility E[r] − p; ``gain_per_entry`` the utility gain from
    participation (utility − E[r without her], eq. 15) and ``share_gain_non_negative`` the ex-ante
    IR check (gain ≥ 0) over her entries (NaN for the token auction: no counterfactual).
    ``cumulative_utility`` and ``cumulative_gain`` are totals over the run (0 in rounds she stays
    out), averaged over seeds.
    """
    adv = data.advertisers
    entered = adv["entered"]
    gain = utility_gain(adv)
    helper = adv.assign(
        in_relevant=adv["entered"].where(adv["relevant"]),
        in_irrelevant=adv["entered"].where(~adv["relevant"]),
        mentioned_in=adv["mentioned"].where(entered),
        payment_in=adv["payment"].where(entered),
        utility_in=adv["utility"].where(entered),
        gain_in=gain,
        contribution_in=adv["contribution"],
        gain_ok_in=pd.Series(gain_is_non_negative(gain), index=adv.index).where(gain.notna()),
        gain_or_zero=gain.fillna(0.0),
    )
    for column in ("in_relevant", "in_irrelevant", "mentioned_in", "gain_ok_in"):
        helper[column] = helper[column].astype(float)
    table = helper.groupby(["variant", "advertiser"], sort=False).agg(
        value=("value", "mean"),
        policy=("policy", "first"),
        rounds=("round", "size"),
        relevant_share=("relevant", "mean"),
        entry_rate=("entered", "mean"),
        entry_rate_relevant=("in_relevant", "mean"),
        entry_rate_irrelevant=("in_irrelevant", "mean"),
        mention_rate=("mentioned_in", "mean"),
        payment_per_entry=("payment_in", "mean"),
        utility_per_entry=("utility_in", "mean"),
        gain_per_entry=("gain_in", "mean"),
        contribution_per_entry=("contribution_in", "mean"),
        share_gain_non_negative=("gain_ok_in", "mean"),
    )
    per_seed = helper.groupby(["variant", "advertiser", "seed"], sort=False)[
        ["utility", "gain_or_zero"]
    ].sum()
    cumulative = per_seed.groupby(["variant", "advertiser"], sort=False).mean()
    table["cumulative_utility"] = cumulative["utility"]
    table["cumulative_gain"] = cumulative["gain_or_zero"].where(table["gain_per_entry"].notna())
    return table.reset_index()


def contribution_fits(data: RunData) -> pd.DataFrame:
    """Utility gain against contribution to welfare (normalized reward), one line per variant.

    The paper's Figs. 5/6 and Fig. 7 (App. C.4): x = contribution = expected_reward −
    expected_reward_without (Sec. 6.2.1, Fig. 1b), y = utility gain from participation = utility
    − expected_reward_without (eq. 15). Entrants only, pooled over seeds and rounds.
    ``utility_gain_mean`` / ``utility_gain_min`` summarize the gain and ``share_gain_non_negative``
    is the ex-ante IR check (gain ≥ 0); ``paper_pearson_r`` is the paper's Sec. 6.2.2 number for the
    same payment rule (0.8 with the offset, 0.4 without).
    """
    modes = offset_modes(data)
    adv = data.advertisers[data.advertisers["entered"]]
    gain = utility_gain(adv)
    rows = []
    for variant in data.variants:
        mask = adv["variant"] == variant
        part, part_gain = adv[mask], gain[mask].to_numpy(float)
        fit = linear_fit(part["contribution"].to_numpy(float), part_gain)
        finite = part_gain[np.isfinite(part_gain)]
        rows.append(
            {
                "variant": variant,
                "offset": modes[variant],
                "n": fit.n,
                "slope": fit.slope,
                "intercept": fit.intercept,
                "r2": fit.r2,
                "pearson_r": fit.pearson_r,
                "paper_pearson_r": PAPER_PEARSON.get(modes[variant], np.nan),
                "utility_gain_mean": finite.mean() if finite.size else np.nan,
                "utility_gain_min": finite.min() if finite.size else np.nan,
                "share_gain_non_negative": (
                    gain_is_non_negative(finite).mean() if finite.size else np.nan
                ),
            }
        )
    return pd.DataFrame(rows)


def dilution_table(data: RunData) -> pd.DataFrame:
    """Relevant entrants by the number of entrants in the context prompt (dilution, App. B.4).

    Per (variant, n_entrants): how many relevant entrant-rounds, the share in which the returned
    reply names them (Wilson 95% CI) and their mean expected reward (t 95% CI over entrant-rounds).
    """
    adv = data.advertisers[data.advertisers["entered"] & data.advertisers["relevant"]]
    adv = adv.merge(data.rounds[[*KEYS, "n_entrants"]], on=list(KEYS), how="left")
    rows = []
    for (variant, n_entrants), part in adv.groupby(["variant", "n_entrants"], sort=True):
        mentions = int(part["mentioned"].sum())
        low, high = wilson_interval(mentions, len(part))
        reward = t_interval(part["expected_reward"].to_numpy(float))
        rows.append(
            {
                "variant": variant,
                "n_entrants": int(n_entrants),
                "n": len(part),
                "mention_rate": mentions / len(part),
                "mention_low": low,
                "mention_high": high,
                "expected_reward": reward.estimate,
                "expected_reward_low": reward.low,
                "expected_reward_high": reward.high,
            }
        )
    columns = [
        "variant", "n_entrants", "n", "mention_rate", "mention_low", "mention_high",
        "expected_reward", "expected_reward_low", "expected_reward_high",
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    rank = table["variant"].map({v: k for k, v in enumerate(data.variants)})
    return table.assign(_rank=rank).sort_values(["_rank", "n_entrants"]).drop(columns="_rank")
