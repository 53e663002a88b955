"""What the synthetic engine knows exactly about one replication instance: π_r over its whole
support (eq. 2 / 17) and, per generator and sampler, Fig. 1a's distance between π_r and the
distribution of the reply MOSAIC returns (`market.studies.convergence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from market.auction import rewards_from_scores
from market.engines.base import Engine, SamplingParams, prompt_style
from market.mechanisms.mosaic import logsumexp, optimal_distribution
from market.prompts import advertiser_prompt, context_prompt, reference_prompt
from market.studies.convergence import InducedDistance, induced_distances
from market.studies.replication_rows import expected_log

if TYPE_CHECKING:
    from market.studies.replication import Instance

__all__ = ["ExactOptimum", "exact_optimum", "sampler_distances"]


@dataclass(frozen=True, eq=False)
class ExactOptimum:
    """π_r of one instance over the engine's whole support (synthetic engine only).

    ``log_z`` = log Σ_y π_ref(y)·exp(r(y)/τ); ``optimal_logp`` = E_{y~π_r}[log π_r(y)] = −H(π_r);
    ``reference_logp`` = E_{y~π_ref}[log π_ref(y)] (footnote 4's proxy, here exact);
    ``log_pi_r`` = log π_r over the support, in the order of `enumerate_support`.
    """

    log_z: float
    optimal_logp: float
    reference_logp: float
    support_size: int
    log_pi_r: np.ndarray


def exact_optimum(engine: Engine, instance: Instance, tau: float) -> ExactOptimum | None:
    """π_r over the full support of a synthetic engine (eq. 2 / 17); None for other engines."""
    support_logprobs = getattr(engine, "support_logprobs", None)
    if support_logprobs is None:
        return None
    prompts = [reference_prompt(instance.query)] + [
        advertiser_prompt(instance.query, b) for b in instance.brands
    ]
    scores = np.asarray(support_logprobs(prompts), dtype=float)
    log_ref = scores[0]
    total = rewards_from_scores(np.asarray(instance.values, float), scores[1:], log_ref).sum(axis=0)
    pi_r = optimal_distribution(log_ref, total, tau)
    with np.errstate(divide="ignore"):
        log_pi_r = np.log(pi_r)
    return ExactOptimum(
        log_z=float(logsumexp(log_ref + total / tau)),
        optimal_logp=expected_log(pi_r, log_pi_r),
        reference_logp=expected_log(np.exp(log_ref), log_ref),
        support_size=int(log_ref.size),
        log_pi_r=log_pi_r,
    )


def sampler_distances(
    engine: Engine,
    instance: Instance,
    generator: str,
    sampling: SamplingParams,
    optimum: ExactOptimum,
    m_values: Sequence[int],
) -> list[InducedDistance]:
    """Fig. 1a exactly: TV(π_r, π_M), its floor and the log π_r levels of the reply MOSAIC
    returns from M candidates of ``generator`` under ``sampling`` (`market.studies.convergence`).
    The sampler's law q over the whole support comes from the synthetic engine's oracle."""
    style = prompt_style(engine)
    prompt = (
        context_prompt(instance.query, list(instance.brands), style)
        if generator == "context"
        else reference_prompt(instance.query, style)
    )
    log_q = np.asarray(engine.support_logprobs([prompt], sampling=sampling)[0], dtype=float)
    return induced_distances(optimum.log_pi_r, log_q, m_values)
