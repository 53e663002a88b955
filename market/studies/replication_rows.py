"""The rows the replication study writes (its tables: `market.columns.REPLICATION_TABLES`).

`round_rows` turns one MOSAIC outcome into its instance, advertiser and candidate rows;
`optimum_row` and `convergence_rows` write the exact quantities of the synthetic engine (π_r, and
Fig. 1a's distance between π_r and the distribution of the returned reply).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from market.auction import RoundOutcome
from market.engines.base import SamplingParams
from market.studies.convergence import InducedDistance


def expected_log(p: np.ndarray, logp: np.ndarray) -> float:
    """Σ_y p(y) log p(y), with 0·log 0 = 0."""
    return float(np.sum(np.where(p > 0, p * np.where(p > 0, logp, 0.0), 0.0)))


def round_rows(
    outcome: RoundOutcome, keys: dict, tau: float, log_z: float, absent_prompt: np.ndarray
) -> tuple[dict, list[dict], list[dict]]:
    """One instance row, its advertiser rows and its candidate rows from a MOSAIC outcome.

    The mechanism runs with the offset; plain Rochet payments (C_i = 0) differ by C_i alone
    (eq. 13), so utility without offset = utility − C_i and payment = payment + C_i. The gain
    from participation (App. C.4) is utility − her reward when she stays out: on the same
    candidates (eq. 15, ``expected_rewards_without``) and, where ``absent_prompt`` is finite, with
    the candidates regenerated without her (`market.studies.counterfactual`).
    """
    log_pi_r = outcome.log_ref + outcome.rewards.sum(axis=0) / tau - log_z
    allocation = outcome.allocation
    utilities = outcome.utilities
    offsets = outcome.offsets
    without = outcome.expected_rewards_without
    mentioned = set(outcome.mentioned)
    row = {
        **keys,
        "logp_optimal": float(np.sum(np.where(allocation > 0, allocation * log_pi_r, 0.0))),
        "logp_optimal_returned": float(log_pi_r[outcome.returned]),
        "logp_reference": float(np.sum(allocation * outcome.log_ref)),
        "usefulness": outcome.usefulness,
        "expected_reward": float(outcome.expected_rewards.sum()),
        "normalized_reward": float((outcome.expected_rewards - without).sum()),
        "normalized_reward_absent_prompt": float((outcome.expected_rewards - absent_prompt).sum()),
        "utility_offset": float(utilities.sum()),
        "utility_no_offset": float((utilities - offsets).sum()),
        "utility_gain_offset": float((utilities - without).sum()),
        "utility_gain_no_offset": float((utilities - offsets - without).sum()),
        "utility_gain_offset_absent_prompt": float((utilities - absent_prompt).sum()),
        "utility_gain_no_offset_absent_prompt": float((utilities - offsets - absent_prompt).sum()),
        "revenue_offset": outcome.revenue,
        "revenue_no_offset": float((outcome.payments + offsets).sum()),
        "ess": outcome.ess,
        "mentions": len(mentioned),
        "reply_tokens": outcome.reply_tokens,
        "reply_text": outcome.reply.text,
    }
    advertisers = [
        {
            **keys,
            "advertiser": name,
            "expected_reward": float(outcome.expected_rewards[i]),
            "expected_reward_without": float(without[i]),
            "contribution": float(outcome.expected_rewards[i] - without[i]),
            "expected_reward_absent_prompt": float(absent_prompt[i]),
            "contribution_absent_prompt": float(outcome.expected_rewards[i] - absent_prompt[i]),
            "utility_offset": float(utilities[i]),
            "utility_no_offset": float(utilities[i] - offsets[i]),
            "utility_gain_offset": float(utilities[i] - without[i]),
            "utility_gain_no_offset": float(utilities[i] - offsets[i] - without[i]),
            "utility_gain_offset_absent_prompt": float(utilities[i] - absent_prompt[i]),
            "utility_gain_no_offset_absent_prompt": float(
                utilities[i] - offsets[i] - absent_prompt[i]
            ),
            "payment_offset": float(outcome.payments[i]),
            "payment_no_offset": float(outcome.payments[i] + offsets[i]),
            "offset": float(offsets[i]),
            "mentioned": name in mentioned,
        }
        for i, name in enumerate(outcome.entrants)
    ]
    candidates = [
        {
            **keys,
            "candidate": j,
            "reply": " ".join(map(str, c.token_ids)),
            "allocation": float(allocation[j]),
            "log_ref": float(outcome.log_ref[j]),
            "log_pi_r": float(log_pi_r[j]),
        }
        for j, c in enumerate(outcome.candidates)
    ]
    return row, advertisers, candidates


def optimum_row(keys: dict, optimum: Any) -> dict:
    """The optima row of one instance (``keys``: instance, query, advertisers); ``optimum`` is the
    study's `ExactOptimum`, None off the synthetic engine."""
    return {
        **keys,
        "exact": optimum is not None,
        "log_z": optimum.log_z if optimum else np.nan,
        "optimal_logp": optimum.optimal_logp if optimum else np.nan,
        "reference_logp": optimum.reference_logp if optimum else np.nan,
        "support_size": optimum.support_size if optimum else 0,
    }


def convergence_rows(
    keys: dict, sampling: SamplingParams, distances: Sequence[InducedDistance]
) -> list[dict]:
    """One row per M of Fig. 1a's exact quantities for one instance, generator and sampler."""
    return [
        {
            **keys,
            "temperature": float(sampling.temperature),
            "top_p": float(sampling.top_p),
            "M": d.m,
            "tv": d.tv,
            "tv_floor": d.tv_floor,
            "logp_induced": d.logp_induced,
            "logp_optimal": d.logp_optimal,
            "logp_limit": d.logp_limit,
            "mass_error": d.mass_error,
        }
        for d in distances
    ]
