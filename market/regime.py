"""Where free-riding pays: the theory's entry boundary for an advertiser whose rewards are constant.

Take an advertiser i whose reward is the same constant c on every candidate (the Lemma B.1 case: an
advertiser irrelevant to the query whose LLM only wants its own name mentioned, so it barely moves
any reply). Staying out she gets c too: whatever reply is shown is worth c to her. Entering at
entry cost k:

- **with the offset** (Sec. 5.3, eq. 5) her utility is τ·log Σ_j softmax(β_{-i})_j·e^{c/τ} = c, so
  her gain from participation is 0 (eq. 15: her reward without her is c as well). She enters iff
  c − k > c, i.e. iff k < 0: any positive entry cost keeps her out, and at k = 0 she is indifferent;
- **without the offset** (C_i = 0, eq. 13) every entrant's utility is τ·logsumexp(logits) (eq. 16),
  logits_j = Σ_k r_kj/τ + log π_ref(y_j) − log π_gen(y_j) (eq. 11, her own c/τ included). She enters
  iff τ·logsumexp(logits) − c > k, i.e. iff τ·logsumexp(β_{-i}) > k: the *margin* below, computed
  from the others' rewards and the importance weights of the recorded candidates. It is positive and
  grows like log M when the weights π_ref/π_gen are near 1 (short replies); on long replies the
  weights alone make it very negative (nobody enters), unless the others' rewards make up for it —
  on the embedded model they do: every advertiser's LLM likes ad-laden replies more than π_ref
  does (docs/regime_map.md, "On the embedded model").

An ε-greedy entrant (`agents.policies.bandits`) compares the sample mean of what entering gave her
(her utility minus the cost) with the mean of what staying out gave her (the outside option, c):
she settles on entering — a share 1 − ε/2 of the rounds — when the margin she experienced exceeds
the cost, and on staying out (ε/2) otherwise (`predicted_entry`). The margin has to be taken on the
auctions she was in: with the context-aware generator her entry puts her name in the prompt, which
changes the candidates (dilution), and the other entrants change too. `round_margins` reads a run's
``auctions`` table (docs/data.md: log_ref, log_gen and every entrant's rewards per candidate) and
gives each round's margin; `entry_margin` pools them over every (round, rider who entered), as the
learner's sample mean does: the reports' theory boundary (`reports.regime_map`).

Both premises can fail on a real LLM, and `rider_payoffs` measures by how much: what the riders'
two arms actually averaged (utility when in, the outside option's reward when out) and their gain
from participation on the same candidates (eq. 15). For the theory's rider in − out is 0 with the
offset and the margin without it, and the gain is 0 with the offset.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from market.mechanisms.mosaic import logsumexp, others_logits

__all__ = [
    "OFFSET_MARGIN",
    "entry_margin",
    "free_rider_margin",
    "predicted_entry",
    "rider_payoffs",
    "round_margins",
]

# With the offset a constant-reward entrant's gain is exactly 0 (eq. 5, eq. 15).
OFFSET_MARGIN = 0.0


def free_rider_margin(
    rewards: np.ndarray,
    log_ref: np.ndarray,
    log_gen: np.ndarray,
    tau: float,
    rider: int | None = None,
) -> float:
    """τ·logsumexp(β_{-i}): what a constant-reward entrant gains by entering without the offset.

    ``rewards`` (n, M) are the entrants' rewards on the M candidates (eq. 11's r_kj), ``log_ref``
    and ``log_gen`` (M,) the candidates' log-probabilities under π_ref and the sampler. ``rider``
    is her row among the entrants (dropped: her constant c/τ shifts every logit alike, so
    τ·logsumexp(logits) − c = τ·logsumexp(β_{-i}) exactly), or None when she is not among them
    (the margin of an advertiser who would join this auction). Candidates with log π_ref = −inf
    have weight 0, as in the mechanism.
    """
    rewards = np.asarray(rewards, dtype=float).reshape(-1, np.size(log_ref))
    if rider is not None:
        rewards = np.delete(rewards, rider, axis=0)
    log_weight = _log_weight(np.asarray(log_ref, dtype=float), np.asarray(log_gen, dtype=float))
    return float(tau * logsumexp(rewards.sum(axis=0) / tau + log_weight))


def _log_weight(log_ref: np.ndarray, log_gen: np.ndarray) -> np.ndarray:
    """log π_ref/π_gen, −inf where π_ref = 0 (Algorithm 1, line 3)."""
    possible = np.isfinite(log_ref)
    return np.where(possible, log_ref - np.where(possible, log_gen, 0.0), -np.inf)


def predicted_entry(margin: float, cost: float, epsilon: float) -> float:
    """The ε-greedy share of rounds a constant-reward advertiser enters: 1 − ε/2 when
    ``margin`` > ``cost`` (entering pays), ε/2 when it is below, 1/2 when she is indifferent."""
    if margin > cost:
        return 1.0 - epsilon / 2
    if margin < cost:
        return epsilon / 2
    return 0.5


def round_margins(auctions: pd.DataFrame, riders: Collection[str], tau: float) -> pd.DataFrame:
    """The free-rider margin of every auction of a run (no-offset rounds, or any: the margin does
    not depend on the payment rule), one row per (variant, seed, round).

    ``auctions``: rows of the run's auctions table (variant, seed, round, candidate, log_ref,
    log_gen, rewards, entrants). ``riders``: the names of the constant-reward advertisers
    (free_riding's irrelevant brands). A round's margin is the mean of `free_rider_margin` over
    the riders who entered it, each dropped in turn, or the margin of a rider who would join it
    when none did. ``riders_in`` says how many entered. ``alone`` is τ·logsumexp(log π_ref −
    log π_gen) over the candidates: the margin with no other entrant's reward in the logits, the
    importance weights alone — the paper's Fig. 4 case, very negative on long replies.
    """
    riders = set(riders)
    keys = ["variant", "seed", "round"]
    ordered = auctions.sort_values([*keys, "candidate"], kind="stable")
    key_frame = ordered[keys].reset_index(drop=True)
    starts = np.flatnonzero(
        np.r_[True, (key_frame.iloc[1:].to_numpy() != key_frame.iloc[:-1].to_numpy()).any(axis=1)]
    )
    ends = np.r_[starts[1:], len(ordered)]
    log_ref, log_gen = ordered["log_ref"].to_numpy(float), ordered["log_gen"].to_numpy(float)
    rewards_col, entrants_col = ordered["rewards"].to_numpy(), ordered["entrants"].to_numpy()
    rows = []
    for start, end in zip(starts, ends, strict=True):
        entrants = list(entrants_col[start])
        rewards = np.array([np.asarray(r, dtype=float) for r in rewards_col[start:end]])
        rewards = rewards.reshape(end - start, len(entrants)).T  # (n, M)
        inside = [k for k, name in enumerate(entrants) if name in riders]
        log_weight = _log_weight(log_ref[start:end], log_gen[start:end])
        if inside:  # β_{-i} of every rider at once (eq. 11, the mechanism's own prefix/suffix sums)
            beta = others_logits(rewards, log_weight, tau)[inside]
            margin = float(np.mean(tau * logsumexp(beta, axis=1)))
        else:
            margin = float(tau * logsumexp(rewards.sum(axis=0) / tau + log_weight))
        alone = float(tau * logsumexp(log_weight))
        rows.append(
            {**key_frame.iloc[start].to_dict(), "margin": margin, "alone": alone}
            | {"riders_in": len(inside)}
        )
    return pd.DataFrame(rows, columns=[*keys, "margin", "alone", "riders_in"])


def entry_margin(margins: pd.DataFrame, column: str = "margin") -> float:
    """The margin a constant-reward rider experienced: the mean of τ·logsumexp(β_{-i}) over every
    (round, rider who entered) of `round_margins`' rows — the quantity an ε-greedy rider's sample
    mean of entering compares with the cost. NaN when no rider ever entered. ``column="alone"``
    pools the importance weights' part the same way."""
    inside = margins[margins["riders_in"] > 0]
    weights = inside["riders_in"].to_numpy(float)
    if weights.sum() == 0:
        return float("nan")
    return float(np.average(inside[column].to_numpy(float), weights=weights))


def rider_payoffs(advertisers: pd.DataFrame, riders: Collection[str]) -> dict[str, float]:
    """What the riders' ε-greedy arms saw in one run (``learn_from: expected``, over every round).

    ``advertisers``: rows of one variant's advertisers table (round, advertiser, entered, utility,
    outside_reward, expected_reward_without). Returns ``in``: the mean utility E[r] − p (eq. 4)
    of the rounds a rider entered, before the entry cost; ``out``: the mean reward of the reply
    shown while she stayed out (the outside option); ``advantage``: in − out, what her arms'
    sample means compare with the cost; ``gain``: the mean gain from participation on the same
    candidates, utility − expected_reward_without (eq. 15); ``out_market`` and
    ``advantage_market``: the same over the out-rounds in which somebody else entered (the reply
    then comes from the market, not from π_ref alone). A constant-reward rider whose entry does
    not change the candidates has advantage = gain = 0 with the offset and advantage =
    `free_rider_margin` without it. NaN where no rider entered (or none stayed out).
    """
    entered = advertisers["entered"].astype(bool)
    market = entered.groupby(advertisers["round"]).transform("any")
    mine = advertisers["advertiser"].isin(set(riders))
    inside, outside = advertisers[mine & entered], advertisers[mine & ~entered]
    rewards_market = advertisers.loc[mine & ~entered & market, "outside_reward"].to_numpy(float)
    rewards_market = rewards_market[np.isfinite(rewards_market)]
    utility = inside["utility"].to_numpy(float)
    without = inside["expected_reward_without"].to_numpy(float)
    reward_out = outside["outside_reward"].to_numpy(float)
    reward_out = reward_out[np.isfinite(reward_out)]
    mean_in = float(utility.mean()) if utility.size else float("nan")
    mean_out = float(reward_out.mean()) if reward_out.size else float("nan")
    out_market = float(rewards_market.mean()) if rewards_market.size else float("nan")
    return {
        "in": mean_in,
        "out": mean_out,
        "advantage": mean_in - mean_out,
        "out_market": out_market,
        "advantage_market": mean_in - out_market,
        "gain": float(np.mean(utility - without)) if utility.size else float("nan"),
    }
