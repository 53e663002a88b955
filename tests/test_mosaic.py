"""MOSAIC: allocation (Alg. 1 / eq. 11), Rochet payments (eq. 12/13), the offset (Sec. 5.3,
eq. 5, Lemmas B.1/B.2), strategyproofness (Theorem 5.1) and convergence (Theorem A.1)."""

import itertools
import math
from dataclasses import FrozenInstanceError, dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from market.mechanisms.mosaic import (
    MosaicOutcome,
    mosaic_outcome,
    optimal_distribution,
    others_logits,
    sample_reply,
)

PROPERTY = settings(max_examples=60, deadline=None)
TAUS = st.sampled_from([0.1, 0.5, 1.0, 2.0, 10.0])


@dataclass(frozen=True)
class Instance:
    rewards: np.ndarray
    log_ref: np.ndarray
    log_gen: np.ndarray
    tau: float

    def outcome(self, rewards=None, offset=True) -> MosaicOutcome:
        rewards = self.rewards if rewards is None else rewards
        return mosaic_outcome(rewards, self.log_ref, self.log_gen, tau=self.tau, offset=offset)


@st.composite
def instances(draw, min_n=1, max_n=4, max_m=6, low=-5.0, high=5.0):
    n = draw(st.integers(min_n, max_n))
    m = draw(st.integers(1, max_m))
    values = st.floats(low, high, allow_nan=False)
    log_probs = st.floats(-30.0, 0.0, allow_nan=False)
    return Instance(
        rewards=draw(arrays(np.float64, (n, m), elements=values)),
        log_ref=draw(arrays(np.float64, (m,), elements=log_probs)),
        log_gen=draw(arrays(np.float64, (m,), elements=log_probs)),
        tau=draw(TAUS),
    )


def naive_lse(values):
    values = np.asarray(values, dtype=float)
    top = values.max()
    return top + math.log(sum(math.exp(v - top) for v in values))


def naive_outcome(inst: Instance, offset: bool):
    """The paper's formulas written out loop by loop, as an independent reference."""
    n, m = inst.rewards.shape
    weight = inst.log_ref - inst.log_gen
    logits = inst.rewards.sum(axis=0) / inst.tau + weight
    allocation = np.exp(logits - naive_lse(logits))
    payments, utilities = [], []
    for i in range(n):
        beta = np.array(
            [sum(inst.rewards[k, j] for k in range(n) if k != i) / inst.tau for j in range(m)]
        )
        beta = beta + weight
        rochet = inst.tau * naive_lse(inst.rewards[i] / inst.tau + beta)
        constant = -inst.tau * naive_lse(beta) if offset else 0.0
        payments.append(allocation @ inst.rewards[i] - rochet - constant)
        utilities.append(rochet + constant)
    return allocation, np.array(payments), np.array(utilities)


def tolerance(*values) -> float:
    return 1e-9 * (1.0 + max(float(np.max(np.abs(v))) for v in values))


# --- formulas -------------------------------------------------------------------------------


@PROPERTY
@given(inst=instances(), offset=st.booleans())
def test_matches_the_papers_formulas_written_out(inst, offset):
    out = inst.outcome(offset=offset)
    allocation, payments, utilities = naive_outcome(inst, offset)
    np.testing.assert_allclose(out.allocation, allocation, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.payments, payments, atol=tolerance(payments))
    np.testing.assert_allclose(out.utilities, utilities, atol=tolerance(utilities))
    np.testing.assert_allclose(out.expected_rewards, inst.rewards @ out.allocation, atol=1e-9)
    np.testing.assert_allclose(
        out.utilities, out.expected_rewards - out.payments, atol=tolerance(out.utilities)
    )
    assert out.allocation.sum() == pytest.approx(1.0, abs=1e-12)


def test_small_example_by_hand():
    # One advertiser, two candidates, π_ref = π_gen, τ = 1: allocation = softmax(r).
    out = mosaic_outcome(np.array([[math.log(3.0), 0.0]]), np.log([0.5, 0.5]), np.log([0.5, 0.5]))
    np.testing.assert_allclose(out.allocation, [0.75, 0.25])
    # β_{-1} = log-weights = 0, so C = -log 2 and U = log((3 + 1)/2) = log 2 (eq. 5).
    assert out.offsets[0] == pytest.approx(-math.log(2.0))
    assert out.utilities[0] == pytest.approx(math.log(2.0))
    assert out.payments[0] == pytest.approx(0.75 * math.log(3.0) - math.log(2.0))
    np.testing.assert_allclose(out.expected_rewards_without, [0.5 * math.log(3.0)])


@PROPERTY
@given(inst=instances())
def test_expected_rewards_without_use_only_the_others_reports(inst):
    out = inst.outcome()
    for i in range(inst.rewards.shape[0]):
        alone = np.delete(inst.rewards, i, axis=0)
        without = inst.outcome(rewards=alone)
        assert out.expected_rewards_without[i] == pytest.approx(
            without.allocation @ inst.rewards[i], abs=1e-9
        )


def test_effective_sample_size_and_read_only_results():
    uniform = mosaic_outcome(np.zeros((1, 4)), np.zeros(4), np.zeros(4))
    assert uniform.effective_sample_size == pytest.approx(4.0)
    peaked = mosaic_outcome(np.array([[0.0, 50.0]]), np.zeros(2), np.zeros(2))
    assert peaked.effective_sample_size == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        uniform.allocation[0] = 1.0
    with pytest.raises(FrozenInstanceError):
        uniform.tau = 2.0  # type: ignore[misc]


# --- Theorem 5.1: strategyproofness -----------------------------------------------------------

MISREPORTS = st.one_of(
    st.tuples(st.just("scale"), st.floats(0.0, 4.0)),
    st.tuples(st.just("shift"), st.floats(-10.0, 10.0)),
    st.tuples(st.just("noise"), st.floats(0.01, 5.0)),
    st.tuples(st.just("permute"), st.just(0.0)),
    st.tuples(st.just("arbitrary"), st.floats(0.1, 10.0)),
)


def misreport(true: np.ndarray, kind: str, amount: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "scale":
        return true * amount
    if kind == "shift":
        return true + amount
    if kind == "noise":
        return true + rng.normal(0.0, amount, true.shape)
    if kind == "permute":
        return rng.permutation(true)
    return rng.uniform(-amount, amount, true.shape)


def realized_utility(inst: Instance, i: int, report: np.ndarray, offset: bool) -> float:
    rewards = inst.rewards.copy()
    rewards[i] = report
    out = inst.outcome(rewards=rewards, offset=offset)
    return float(out.allocation @ inst.rewards[i] - out.payments[i])


@PROPERTY
@given(
    inst=instances(),
    offset=st.booleans(),
    lie=MISREPORTS,
    seed=st.integers(0, 2**32 - 1),
    who=st.integers(0, 3),
)
def test_truthful_reporting_maximises_expected_utility(inst, offset, lie, seed, who):
    i = who % inst.rewards.shape[0]
    truthful = inst.outcome(offset=offset).utilities[i]
    report = misreport(inst.rewards[i], *lie, np.random.default_rng(seed))
    lying = realized_utility(inst, i, report, offset)
    assert lying <= truthful + tolerance(truthful, lying)


@PROPERTY
@given(inst=instances(min_n=1, max_n=3, max_m=5), offset=st.booleans())
def test_truthful_reporting_beats_a_local_search_for_a_better_lie(inst, offset):
    i = 0
    truthful = inst.outcome(offset=offset).utilities[i]
    rng = np.random.default_rng(7)
    report = inst.rewards[i].copy()
    best = realized_utility(inst, i, report, offset)
    for step in (2.0, 0.5, 0.1):
        for _ in range(15):
            candidate = report + rng.normal(0.0, step, report.shape)
            value = realized_utility(inst, i, candidate, offset)
            if value > best:
                report, best = candidate, value
    assert best <= truthful + tolerance(truthful, best)


def test_the_truthfulness_check_detects_a_manipulable_payment_rule():
    # Charging nothing (payment 0) is manipulable: exaggerating one's rewards raises the
    # realized expected reward. The same comparison with MOSAIC's payments finds no gain.
    inst = Instance(np.array([[1.0, -1.0, 0.0], [0.5, 0.2, -0.3]]), np.zeros(3), np.zeros(3), 1.0)
    exaggerated = inst.rewards[0] * 3.0
    free = inst.outcome(rewards=np.vstack([exaggerated, inst.rewards[1]])).allocation
    assert free @ inst.rewards[0] > inst.outcome().allocation @ inst.rewards[0] + 0.1
    assert realized_utility(inst, 0, exaggerated, True) < inst.outcome().utilities[0] - 0.01


@PROPERTY
@given(inst=instances(max_n=3, max_m=5), offset=st.booleans(), who=st.integers(0, 2))
def test_allocation_is_the_gradient_of_the_utility_in_own_reports(inst, offset, who):
    i = who % inst.rewards.shape[0]
    h = 1e-5
    gradient = []
    for j in range(inst.rewards.shape[1]):
        up, down = inst.rewards.copy(), inst.rewards.copy()
        up[i, j] += h
        down[i, j] -= h
        difference = (
            inst.outcome(rewards=up, offset=offset).utilities[i]
            - inst.outcome(rewards=down, offset=offset).utilities[i]
        )
        gradient.append(difference / (2 * h))
    np.testing.assert_allclose(gradient, inst.outcome(offset=offset).allocation, atol=1e-5)


# --- the offset: Lemma 5.2 (eq. 5), Lemma B.1, Lemma B.2, Sec. 5.3.2 --------------------------


@PROPERTY
@given(inst=instances(), who=st.integers(0, 3))
def test_lemma_b1_zero_rewards_pay_nothing_and_get_nothing(inst, who):
    i = who % inst.rewards.shape[0]
    rewards = inst.rewards.copy()
    rewards[i] = 0.0
    out = inst.outcome(rewards=rewards)
    assert out.payments[i] == 0.0
    assert out.utilities[i] == 0.0
    assert out.expected_rewards[i] == 0.0


@PROPERTY
@given(inst=instances(), who=st.integers(0, 3))
def test_lemma_b2_non_negative_rewards_give_non_negative_utility(inst, who):
    i = who % inst.rewards.shape[0]
    rewards = inst.rewards.copy()
    rewards[i] = np.abs(rewards[i])
    assert inst.outcome(rewards=rewards).utilities[i] >= -1e-12


def test_without_the_offset_lemma_b2_fails():
    # All rewards >= 0, but every candidate is far likelier under π_gen than under π_ref: the
    # plain Rochet utility τ·logsumexp(logits) is negative; the offset makes it >= 0.
    rewards, log_ref, log_gen = np.array([[0.0, 0.5]]), np.array([-9.0, -9.0]), np.log([0.5, 0.5])
    assert mosaic_outcome(rewards, log_ref, log_gen, offset=False).utilities[0] < -5.0
    assert mosaic_outcome(rewards, log_ref, log_gen, offset=True).utilities[0] >= 0.0


@PROPERTY
@given(inst=instances(min_n=2))
def test_without_the_offset_every_advertiser_gets_the_same_utility(inst):
    out = inst.outcome(offset=False)
    expected = inst.tau * naive_lse(out.logits)
    np.testing.assert_allclose(out.utilities, expected, atol=tolerance(expected))
    np.testing.assert_array_equal(out.offsets, 0.0)


@PROPERTY
@given(inst=instances())
def test_eq5_closed_form_utility_with_the_offset(inst):
    out = inst.outcome()
    for i in range(inst.rewards.shape[0]):
        others = np.delete(inst.rewards, i, axis=0).sum(axis=0) / inst.tau
        beta = others + inst.log_ref - inst.log_gen
        interim = np.exp(beta - naive_lse(beta))
        closed_form = inst.tau * naive_lse(inst.rewards[i] / inst.tau + np.log(interim))
        assert out.utilities[i] == pytest.approx(closed_form, abs=tolerance(closed_form))
        assert out.offsets[i] == pytest.approx(-inst.tau * naive_lse(beta), abs=1e-9)


@PROPERTY
@given(inst=instances(min_n=2), shift=st.floats(-20.0, 20.0), who=st.integers(0, 3))
def test_adding_a_constant_to_one_advertisers_rewards(inst, shift, who):
    """r_i -> r_i + c: allocation unchanged (softmax is shift-invariant); i's payment unchanged
    with or without the offset (E[r_i] and τ·lse(r_i/τ + β_{-i}) both grow by c; C_i does not
    involve r_i), so U_i grows by c. For k ≠ i, β_{-k} grows by c/τ: with the offset C_k falls by c
    and nothing of k changes; without it U_k grows by c and p_k falls by c (free riding)."""
    i = who % inst.rewards.shape[0]
    shifted = inst.rewards.copy()
    shifted[i] += shift
    others = np.arange(inst.rewards.shape[0]) != i
    for offset in (True, False):
        before, after = inst.outcome(offset=offset), inst.outcome(rewards=shifted, offset=offset)
        tol = tolerance(before.payments, after.payments, shift)
        np.testing.assert_allclose(after.allocation, before.allocation, rtol=1e-6, atol=1e-12)
        assert after.payments[i] == pytest.approx(before.payments[i], abs=tol)
        assert after.utilities[i] == pytest.approx(before.utilities[i] + shift, abs=tol)
        moved = 0.0 if offset else -shift
        np.testing.assert_allclose(
            after.payments[others], before.payments[others] + moved, atol=tol
        )


# --- Theorem A.1: convergence to π_r ----------------------------------------------------------

K_OUTCOMES = 6
CONVERGENCE_TAU = 1.0
LOG_REF = np.log([0.40, 0.25, 0.15, 0.10, 0.06, 0.04])
REWARDS = np.array(
    [
        [0.0, -0.5, 1.5, 0.2, 2.5, -1.0],
        [-0.3, 0.4, 0.0, 1.8, 0.5, 2.0],
    ]
)


def induced_distribution(log_gen: np.ndarray, m: int) -> np.ndarray:
    """Exact law of the reply returned by Algorithm 1 with M = m candidates drawn i.i.d. from
    π_gen: sum over every multiset of m outcomes, weighted by its multinomial probability."""
    induced = np.zeros(K_OUTCOMES)
    for multiset in itertools.combinations_with_replacement(range(K_OUTCOMES), m):
        counts = np.bincount(multiset, minlength=K_OUTCOMES)
        log_count = math.lgamma(m + 1) - sum(math.lgamma(c + 1) for c in counts)
        probability = math.exp(log_count + float(counts @ log_gen))
        candidates = np.array(multiset)
        out = mosaic_outcome(
            REWARDS[:, candidates],
            LOG_REF[candidates],
            log_gen[candidates],
            tau=CONVERGENCE_TAU,
        )
        np.add.at(induced, candidates, probability * out.allocation)
    return induced


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def target() -> np.ndarray:
    return optimal_distribution(LOG_REF, REWARDS.sum(axis=0), CONVERGENCE_TAU)


def context_generator() -> np.ndarray:
    """A proposal halfway (in log space) between π_ref and π_r: closer to π_r, as π_con is meant
    to be (Sec. 4.1), while still covering every outcome."""
    mixed = 0.5 * LOG_REF + 0.5 * np.log(target())
    return mixed - np.log(np.exp(mixed).sum())


def test_induced_distribution_enumeration_is_a_distribution_and_m1_is_the_generator():
    for log_gen in (LOG_REF, context_generator()):
        np.testing.assert_allclose(induced_distribution(log_gen, 1), np.exp(log_gen), atol=1e-12)
        assert induced_distribution(log_gen, 3).sum() == pytest.approx(1.0, abs=1e-12)


def test_induced_distribution_matches_monte_carlo_at_m4():
    rng = np.random.default_rng(2024)
    log_gen = context_generator()
    draws = rng.choice(K_OUTCOMES, size=(40_000, 4), p=np.exp(log_gen))
    logits = REWARDS.sum(axis=0)[draws] / CONVERGENCE_TAU + LOG_REF[draws] - log_gen[draws]
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    estimate = np.zeros(K_OUTCOMES)
    np.add.at(estimate, draws.ravel(), weights.ravel() / draws.shape[0])
    # Each term is in [0, 1]; 40k repetitions give a standard error below 0.003 per outcome.
    np.testing.assert_allclose(estimate, induced_distribution(log_gen, 4), atol=0.012)


def test_theorem_a1_total_variation_to_optimal_falls_with_m_and_faster_with_context():
    sizes = (1, 2, 4, 8, 12)
    optimal = target()
    baseline = [total_variation(induced_distribution(LOG_REF, m), optimal) for m in sizes]
    context = [
        total_variation(induced_distribution(context_generator(), m), optimal) for m in sizes
    ]
    assert all(a > b for a, b in itertools.pairwise(baseline)), baseline
    assert all(a > b for a, b in itertools.pairwise(context)), context
    assert all(c < b for c, b in zip(context, baseline, strict=True)), (context, baseline)
    assert baseline[-1] < 0.25 * baseline[0]
    assert context[-1] < 0.25 * context[0]
    # With 4 candidates from the context-aware generator the mechanism is already closer to π_r
    # than with 12 from the reference (the paper's Figure 1a, in miniature).
    assert context[2] < baseline[-1]


def test_optimal_distribution_is_eq2_in_log_space():
    log_ref = np.array([-1.0, -2.0, -1000.0, -np.inf])
    rewards = np.array([0.0, 1.0, 1000.5, 5.0])
    expected = np.exp(log_ref + rewards / 2.0 - naive_lse((log_ref + rewards / 2.0)[:3]))
    np.testing.assert_allclose(optimal_distribution(log_ref, rewards, 2.0), expected)
    with pytest.raises(ValueError, match="total_rewards"):
        optimal_distribution(log_ref, rewards[:3], 1.0)
    with pytest.raises(ValueError, match="tau"):
        optimal_distribution(log_ref, rewards, 0.0)


# --- sampling -------------------------------------------------------------------------------


def test_sample_reply_follows_the_allocation_and_the_seed():
    out = mosaic_outcome(np.array([[1.0, 0.0, -np.inf, 0.5]]), np.zeros(4), np.zeros(4))
    draws = [sample_reply(out, np.random.default_rng(seed)) for seed in range(4000)]
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(frequencies, out.allocation, atol=0.03)
    assert frequencies[2] == 0.0
    first = [sample_reply(out, np.random.default_rng(11)) for _ in range(3)]
    assert len(set(first)) == 1
    with pytest.raises(TypeError, match="rng"):
        sample_reply(out, 11)  # type: ignore[arg-type]


# --- numerical robustness and bad input -------------------------------------------------------


@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("offset", [True, False])
def test_extreme_log_probs_and_temperatures_stay_finite(tau, offset):
    rewards = np.array([[3.0, -200.0, 0.0, 1.0, -np.inf], [-1.0, 2.0, 50.0, 0.0, 0.0]])
    log_ref = np.array([-200.0, -np.inf, -0.5, -np.inf, -3.0])
    log_gen = np.array([-1.0, -2.0, -200.0, -np.inf, -1e4])
    with np.errstate(over="raise", invalid="raise"):
        out = mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=offset)
    for name in ("allocation", "payments", "expected_rewards", "utilities", "offsets"):
        assert np.all(np.isfinite(getattr(out, name))), name
    assert not np.any(np.isnan(out.expected_rewards_without))
    assert out.allocation[1] == 0.0  # log_ref = -inf
    assert out.allocation[3] == 0.0  # log_ref = log_gen = -inf: never generated, never returned
    assert out.allocation[4] == 0.0  # vetoed by a reward of -inf
    assert out.allocation.sum() == pytest.approx(1.0)


def test_no_advertisers_and_a_single_candidate():
    log_ref, log_gen = np.array([-1.0, -2.0, -np.inf]), np.array([-2.0, -0.5, -1.0])
    out = mosaic_outcome(np.zeros((0, 3)), log_ref, log_gen)
    np.testing.assert_allclose(
        out.allocation,
        [
            math.exp(1) / (math.exp(1) + math.exp(-1.5)),
            math.exp(-1.5) / (math.exp(1) + math.exp(-1.5)),
            0.0,
        ],
    )
    assert out.payments.shape == out.utilities.shape == out.expected_rewards_without.shape == (0,)
    np.testing.assert_array_equal(mosaic_outcome([], log_ref, log_gen).allocation, out.allocation)
    single = mosaic_outcome(np.array([[4.0], [-2.0]]), np.array([-7.0]), np.array([-3.0]), tau=0.5)
    np.testing.assert_array_equal(single.allocation, [1.0])
    # One candidate: the reply is fixed, so utility = reward - payment = reward - (reward - 0).
    np.testing.assert_allclose(single.utilities, [4.0, -2.0])
    np.testing.assert_allclose(single.payments, [0.0, 0.0], atol=1e-12)


def test_huge_rewards_at_small_tau_do_not_overflow():
    rewards = np.array([[1e4, -1e4, 0.0], [5e3, 5e3, -5e3]])
    with np.errstate(over="raise", invalid="raise"):
        out = mosaic_outcome(rewards, np.zeros(3), np.zeros(3), tau=0.01)
    np.testing.assert_allclose(out.allocation, [1.0, 0.0, 0.0])
    assert np.all(np.isfinite(out.payments))


GOOD = {"rewards": np.zeros((2, 3)), "log_ref": np.zeros(3), "log_gen": np.zeros(3)}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rewards": np.zeros(3)}, "rewards"),
        ({"rewards": np.zeros((2, 4))}, "rewards"),
        ({"rewards": np.array([[0.0, np.nan, 0.0]])}, "rewards"),
        ({"rewards": np.array([[0.0, np.inf, 0.0]])}, "rewards"),
        ({"log_ref": np.zeros(4)}, "log_gen"),
        ({"log_ref": np.zeros((3, 1))}, "log_ref"),
        ({"log_ref": np.array([0.0, np.nan, 0.0])}, "log_ref"),
        ({"log_gen": np.array([0.0, np.inf, 0.0])}, "log_gen"),
        ({"log_gen": np.array([0.0, -np.inf, 0.0])}, "log_gen"),
        ({"log_ref": np.zeros(0), "log_gen": np.zeros(0), "rewards": np.zeros((2, 0))}, "log_ref"),
        ({"log_ref": np.full(3, -np.inf)}, "-inf"),
        ({"rewards": np.array([[0.0, 0.0, -np.inf], [-np.inf, -np.inf, 0.0]])}, "-inf"),
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"tau": float("inf")}, "tau"),
        ({"tau": "1"}, "tau"),
        ({"rewards": [["a", "b", "c"]]}, "rewards"),
    ],
)
def test_bad_input_names_the_argument(changes, named):
    arguments = {**GOOD, **changes}
    tau = arguments.pop("tau", 1.0)
    with pytest.raises(ValueError, match=named):
        mosaic_outcome(**arguments, tau=tau)


@PROPERTY
@given(inst=instances(max_n=5), minus_inf=st.sets(st.tuples(st.integers(0, 4), st.integers(0, 5))))
def test_others_logits_are_the_sum_over_the_other_advertisers(inst, minus_inf):
    """β_{-i,j} = Σ_{k≠i} r_kj / τ + log π_ref(y_j) − log π_gen(y_j) (eq. 11), −inf rewards
    included: advertiser i's own −inf reward leaves her β_{-i} finite."""
    rewards = inst.rewards.copy()
    for i, j in minus_inf:
        if i < rewards.shape[0] and j < rewards.shape[1]:
            rewards[i, j] = -math.inf
    weight = inst.log_ref - inst.log_gen
    n, m = rewards.shape
    expected = np.array(
        [
            [
                sum(rewards[k, j] / inst.tau for k in range(n) if k != i) + weight[j]
                for j in range(m)
            ]
            for i in range(n)
        ]
    )
    beta = others_logits(rewards, weight, inst.tau)
    np.testing.assert_array_equal(np.isneginf(beta), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(beta[finite], expected[finite], rtol=1e-12, atol=1e-12)
