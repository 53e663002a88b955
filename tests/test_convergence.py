"""Fig. 1a measured exactly (issue 8 item 2): the distribution π_M of MOSAIC's returned reply,
TV(π_r, π_M) and its floor 1 − π_r(support of the sampler) (Thm. A.1 / Cor. 4.1)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from market.auction import rewards_from_scores
from market.engines.base import Catalog, SamplingParams
from market.engines.synthetic import SyntheticEngine, sampler_logprobs
from market.mechanisms.mosaic import mosaic_outcome, optimal_distribution
from market.prompts import Brand, advertiser_prompt, context_prompt, reference_prompt
from market.studies.convergence import induced_distances, induced_distribution, tv_floor

M_VALUES = [1, 2, 4, 16, 64, 256, 1024, 4096]


def brute_force_induced(pi_r: np.ndarray, q: np.ndarray, m: int) -> np.ndarray:
    """π_M by enumerating every M-tuple of candidates: Σ Π q(y_j) · w_j / Σ_k w_k, w = π_r / q."""
    support = np.flatnonzero(q > 0)
    w = np.zeros_like(q)
    w[support] = pi_r[support] / q[support]
    induced = np.zeros_like(q)
    for draw in itertools.product(support, repeat=m):
        weights = w[list(draw)]
        probability = np.prod(q[list(draw)])
        for y, weight in zip(draw, weights, strict=True):
            induced[y] += probability * weight / weights.sum()
    return induced


@pytest.mark.parametrize("m", [1, 2, 3])
def test_the_induced_distribution_matches_enumerating_every_candidate_set(m):
    rng = np.random.default_rng(m)
    pi_r = rng.dirichlet(np.full(9, 0.7))
    q = rng.dirichlet(np.full(9, 0.7))
    q[[2, 6]] = 0.0  # replies the sampler never proposes (top-p cut them)
    q /= q.sum()
    with np.errstate(divide="ignore"):
        exact, errors = induced_distribution(np.log(pi_r), np.log(q), [m])
    np.testing.assert_allclose(exact[0], brute_force_induced(pi_r, q, m), atol=1e-9)
    assert errors[0] < 1e-9
    assert exact[0][[2, 6]].sum() == 0.0


def small_instance(top_p: float):
    """A one-query world with two relevant brands and replies of at most 2 segments (462)."""
    catalog = Catalog(
        brand_topics={"Alto": ("music",), "Brio": ("music",)},
        query_topics={"how do I learn the guitar?": "music"},
    )
    engine = SyntheticEngine(catalog, max_len=2, rival_penalty=0.0)
    query = "how do I learn the guitar?"
    brands = [Brand("Alto", "guitar lessons"), Brand("Brio", "sheet music")]
    sampling = SamplingParams(temperature=0.8, top_p=top_p, max_new_tokens=8)
    return engine, query, brands, sampling


def direct_sampler_logprobs(engine, prompt, replies, sampling) -> np.ndarray:
    """log q(y) token by token from the public next-token API and the sampler's rule."""
    out = np.zeros(len(replies))
    for r, reply in enumerate(replies):
        prefixes = [reply[:t] for t in range(len(reply))]
        rows = engine.next_token_logprobs([prompt] * len(prefixes), prefixes)
        steps = sampler_logprobs(rows, sampling.temperature, sampling.top_p)
        out[r] = sum(steps[t, token] for t, token in enumerate(reply))
    return out


def exact_pi_r(engine, query, brands, replies) -> np.ndarray:
    prompts = [reference_prompt(query)] + [advertiser_prompt(query, b) for b in brands]
    scores = engine.score(prompts, replies)
    total = rewards_from_scores(np.ones(len(brands)), scores[1:], scores[0]).sum(axis=0)
    return optimal_distribution(scores[0], total, 1.0)


def test_the_floor_is_one_minus_pi_r_of_the_sampler_support_by_enumeration():
    """Under top-p < 1: the oracle's sampler log-probabilities equal a token-by-token computation,
    the floor equals 1 − π_r(S) summed over the enumerated replies the sampler can propose, and
    TV(π_r, π_M) never goes below it and reaches it as M grows."""
    engine, query, brands, sampling = small_instance(top_p=0.7)
    prompt = context_prompt(query, brands)
    replies = engine.enumerate_support(reference_prompt(query)).token_ids
    log_q = engine.support_logprobs([prompt], sampling=sampling)[0]
    direct = direct_sampler_logprobs(engine, prompt, replies, sampling)
    np.testing.assert_array_equal(np.isfinite(log_q), np.isfinite(direct))
    finite = np.isfinite(direct)
    np.testing.assert_allclose(log_q[finite], direct[finite], rtol=1e-12)
    assert 0 < finite.sum() < len(replies)  # top-p cut part of the support

    pi_r = exact_pi_r(engine, query, brands, replies)
    floor = 1.0 - pi_r[finite].sum()
    assert floor > 0.05
    with np.errstate(divide="ignore"):
        log_pi_r = np.log(pi_r)
    assert tv_floor(log_pi_r, log_q) == pytest.approx(floor, abs=1e-12)
    distances = induced_distances(log_pi_r, log_q, M_VALUES)
    for d in distances:
        assert d.tv_floor == pytest.approx(floor, abs=1e-12)
        assert d.tv >= floor - d.mass_error - 1e-12  # up to the quadrature
        assert d.mass_error < 1e-8
    assert distances[-1].tv == pytest.approx(floor, abs=1e-3)
    assert distances[-1].logp_induced == pytest.approx(distances[-1].logp_limit, abs=1e-3)
    assert abs(distances[-1].logp_limit - distances[-1].logp_optimal) > 0.05


@pytest.mark.parametrize("generator", ["context", "reference"])
def test_with_full_support_tv_decreases_towards_zero(generator):
    """Thm. A.1 / Cor. 4.1: with top_p = 1 the sampler's support is everything, the floor is 0,
    TV(π_r, π_M) falls with every M and E_{π_M}[log π_r] tends to −H(π_r)."""
    engine, query, brands, sampling = small_instance(top_p=1.0)
    prompt = context_prompt(query, brands) if generator == "context" else reference_prompt(query)
    replies = engine.enumerate_support(reference_prompt(query)).token_ids
    log_q = engine.support_logprobs([prompt], sampling=sampling)[0]
    assert np.isfinite(log_q).all()
    distances = induced_distances(
        np.log(exact_pi_r(engine, query, brands, replies)), log_q, M_VALUES
    )
    tv = np.array([d.tv for d in distances])
    assert distances[0].tv_floor == 0.0
    assert np.all(np.diff(tv) < 0)
    assert tv[-1] < 0.1 * tv[0]
    gaps = [abs(d.logp_induced - d.logp_optimal) for d in distances]
    assert gaps[-1] < 0.1 * gaps[0]


def test_the_exact_distribution_agrees_with_the_mechanism_run_on_sampled_candidates():
    """π_M from the formula against the real mechanism: 3,000 candidate sets of M = 4 (one
    generate call of 12,000 i.i.d. replies, cut into sets), each allocated by `mosaic_outcome`.
    The allocation mass on the replies with the largest weights π_r/q and the allocation-weighted
    log π_r (what Fig. 1a plots) average to π_4's, within 4 standard errors; π_2 is 5 away."""
    engine, query, brands, sampling = small_instance(top_p=1.0)
    prompt = context_prompt(query, brands)
    support = engine.enumerate_support(reference_prompt(query))
    index = {ids: k for k, ids in enumerate(support.token_ids)}
    pi_r = exact_pi_r(engine, query, brands, support.token_ids)
    log_pi_r = np.log(pi_r)
    log_q = engine.support_logprobs([prompt], sampling=sampling)[0]
    heavy = (log_pi_r - log_q) > np.quantile(log_pi_r - log_q, 0.9)
    m, sets = 4, 3000
    [exact_induced], _ = induced_distribution(log_pi_r, log_q, [m])
    [exact] = induced_distances(log_pi_r, log_q, [m])

    [candidates] = engine.generate([prompt], m * sets, sampling, seed=1)
    score_prompts = [reference_prompt(query)] + [advertiser_prompt(query, b) for b in brands]
    scores = engine.score(score_prompts, candidates)
    rewards = rewards_from_scores(np.ones(2), scores[1:], scores[0])
    log_gen = np.array([c.proposal_logprob for c in candidates])
    ids = np.array([index[c.token_ids] for c in candidates])
    on_heavy, logp = np.empty(sets), np.empty(sets)
    for k in range(sets):
        part = slice(k * m, (k + 1) * m)
        allocation = mosaic_outcome(rewards[:, part], scores[0][part], log_gen[part]).allocation
        on_heavy[k] = allocation @ heavy[ids[part]]
        logp[k] = allocation @ log_pi_r[ids[part]]
    for samples, expected in ((on_heavy, exact_induced[heavy].sum()), (logp, exact.logp_induced)):
        error = samples.std(ddof=1) / np.sqrt(sets)
        assert abs(samples.mean() - expected) < 4 * error
