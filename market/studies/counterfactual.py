"""The counterfactual in which an advertiser is absent from the auction *and* from the prompt.

An advertiser's utility gain from participation (App. C.4, Figs. 4–7) is her utility minus the
reward she gets when she stays out. Two counterfactuals are recorded by the replication:

- **same candidates** (eq. 15): the candidates stay, the allocation is recomputed without her
  report, softmax(β_{-i})·r_i (`RoundOutcome.expected_rewards_without`). It needs no engine call,
  and with the offset her gain is τ·log E_β[e^{r_i/τ}] − E_β[r_i] ≥ 0 (Jensen): IR exactly.
- **absent from the prompt** (the paper's Fig. 1b normalisation): the candidates y_{-i} are the ones
  π_gen would have generated had she not entered — the context prompt lists only the others — and
  her reward is the others' allocation over y_{-i} applied to her rewards,
  Σ_j r_i(x, y_{-i,j})·π_int(y_{-i,j}|x). The paper's footnote 5 *estimates* it from the candidates
  that do not name her; here the candidates are regenerated, which is cheap on the synthetic
  engine.

The regenerated pool uses the round's engine seed, so it shares the factual pool's random numbers
(common random numbers): under the reference generator π_gen does not read the entrants, the pool is
the factual one and both counterfactuals coincide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from market.auction import Bidder, rewards_from_scores
from market.engines.base import Engine, SamplingParams, prompt_style
from market.mechanisms import MosaicMechanism
from market.mechanisms.mosaic import expectation, others_logits, softmax
from market.prompts import Query, advertiser_prompt, context_prompt, reference_prompt

__all__ = ["absent_from_prompt_rewards"]


def absent_from_prompt_rewards(
    engine: Engine,
    mechanism: MosaicMechanism,
    query: Query | str,
    bidders: Sequence[Bidder],
    sampling: SamplingParams,
    seed: int,
    m_grid: Sequence[int],
) -> np.ndarray:
    """(len(m_grid), n): bidder i's expected true reward had she stayed out of the auction and the
    prompt, using the first M regenerated candidates for each M of ``m_grid`` (nested sets).

    The generator's prompt lists the other bidders only (the reference generator ignores them);
    max(m_grid) replies are drawn with ``seed`` and scored under the reference prompt and every
    bidder's advertiser prompt in one call. Her reward is softmax(β_{-i})·r_i over them (eq. 15's
    formula on y_{-i}; β_{-i} from the others' reports, eq. 11), so one generate and one score
    call per bidder give the whole curve over M.
    """
    style = prompt_style(engine)
    brands = [b.brand for b in bidders]
    values = np.array([b.value for b in bidders], dtype=float)
    score_prompts = [reference_prompt(query, style)] + [
        advertiser_prompt(query, brand, style) for brand in brands
    ]
    m_max = max(m_grid)
    absent = np.empty((len(m_grid), len(bidders)))
    for i in range(len(bidders)):
        others = brands[:i] + brands[i + 1 :]
        prompt = (
            context_prompt(query, others, style)
            if mechanism.generator == "context"
            else reference_prompt(query, style)
        )
        [candidates] = engine.generate([prompt], m_max, sampling, seed)
        scores = np.asarray(engine.score(score_prompts, candidates), dtype=float)
        log_ref = scores[0]
        log_gen = np.array([c.proposal_logprob for c in candidates], dtype=float)
        rewards = rewards_from_scores(values, scores[1:], log_ref)
        reports = np.array([b.report(rewards[k]) for k, b in enumerate(bidders)], dtype=float)
        finite = np.isfinite(log_ref)
        log_weight = np.where(finite, log_ref - np.where(finite, log_gen, 0.0), -np.inf)
        for row, m in enumerate(m_grid):
            beta = others_logits(reports[:, :m], log_weight[:m], mechanism.tau)[i]
            absent[row, i] = expectation(softmax(beta), rewards[i, :m])
    return absent
