"""Token auction (Duetting et al. 2023): aggregation, stable sampling, critical-bid payments and
the monotonicity each aggregation rule provably has."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.mechanisms.token_auction import (
    BID_TOLERANCE,
    aggregate,
    critical_bids,
    stable_sample,
    token_step,
)

PROPERTY = settings(max_examples=50, deadline=None)
RULE = st.sampled_from(["linear", "loglinear"])


@st.composite
def auctions(draw, max_n=3, max_v=6):
    n = draw(st.integers(1, max_n))
    v = draw(st.integers(2, max_v))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    concentration = draw(st.sampled_from([0.3, 1.0, 5.0]))
    dists = rng.dirichlet(np.full(v, concentration), size=n + 1)
    if draw(st.booleans()):  # sparse: some tokens impossible, one common token kept possible
        dists[rng.random(dists.shape) < 0.3] = 0.0
        dists[:, rng.integers(v)] = 1.0 / v
    dists = np.clip(dists, 0.0, None)
    dists /= dists.sum(axis=1, keepdims=True)
    bids = rng.uniform(0.0, 3.0, n) * (rng.random(n) > 0.2)
    reference_weight = draw(st.sampled_from([0.0, 0.5, 1.0]))
    if reference_weight == 0.0 and not np.any(bids > 0):
        bids[0] = 1.0
    return {
        "dists": dists[:n],
        "bids": bids,
        "u": draw(st.floats(0.0, 1.0, exclude_max=True)),
        "reference": dists[n],
        "reference_weight": reference_weight,
    }


def draw_with_bid(auction: dict, rule: str, i: int, bid: float) -> int:
    bids = auction["bids"].copy()
    bids[i] = bid
    q = aggregate(auction["dists"], bids, rule, auction["reference"], auction["reference_weight"])
    return stable_sample(q, auction["u"])


def step(auction: dict, rule: str):
    return token_step(
        auction["dists"],
        auction["bids"],
        auction["u"],
        rule=rule,
        reference=auction["reference"],
        reference_weight=auction["reference_weight"],
    )


# --- aggregation ----------------------------------------------------------------------------


def test_linear_and_loglinear_aggregation_by_hand():
    dists = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])
    bids = np.array([3.0, 1.0])
    np.testing.assert_allclose(aggregate(dists, bids, "linear"), [0.425, 0.425, 0.15])
    # Log-linear: token 2 has p_0 = 0 with b_0 > 0, so it is vetoed; the rest ∝ 0.5^.75·0.2^.25.
    np.testing.assert_allclose(aggregate(dists, bids, "loglinear"), [0.5, 0.5, 0.0])
    # With b_0 = 0 the first bidder vetoes nothing.
    np.testing.assert_allclose(aggregate(dists, np.array([0.0, 1.0]), "loglinear"), dists[1])


@PROPERTY
@given(auction=auctions())
def test_aggregation_formulas_and_reference_as_one_more_bidder(auction):
    dists, bids, ref, weight = (
        auction[k] for k in ("dists", "bids", "reference", "reference_weight")
    )
    everyone = np.vstack([dists, ref])
    weights = np.append(bids, weight)
    linear = aggregate(dists, bids, "linear", ref, weight)
    np.testing.assert_allclose(linear, weights @ everyone / weights.sum(), atol=1e-12)
    geometric = np.ones(everyone.shape[1])
    for weight_k, dist_k in zip(weights, everyone, strict=True):
        if weight_k > 0:  # a zero weight raises to the power 0, even a zero probability
            geometric = geometric * dist_k ** (weight_k / weights.sum())
    np.testing.assert_allclose(
        aggregate(dists, bids, "loglinear", ref, weight), geometric / geometric.sum(), atol=1e-10
    )
    np.testing.assert_allclose(aggregate(everyone, weights, "linear"), linear, atol=1e-15)


def test_loglinear_without_a_common_token_is_an_error():
    with pytest.raises(ValueError, match="no token has positive probability"):
        aggregate(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0]), "loglinear")


# --- stable sampling ------------------------------------------------------------------------


def test_stable_sample_is_the_inverse_cdf_in_token_order():
    q = np.array([0.2, 0.0, 0.5, 0.3])
    assert [stable_sample(q, u) for u in (0.0, 0.19, 0.2, 0.69, 0.7, 0.999)] == [0, 0, 2, 2, 3, 3]
    grid = (np.arange(10_000) + 0.5) / 10_000
    frequencies = np.bincount([stable_sample(q, u) for u in grid], minlength=4) / grid.size
    np.testing.assert_allclose(frequencies, q, atol=1e-4)


@PROPERTY
@given(
    weights=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8).filter(lambda w: sum(w) > 0.01),
    u=st.floats(0.0, 1.0, exclude_max=True),
)
def test_stable_sample_never_draws_a_zero_probability_token(weights, u):
    q = np.array(weights) / sum(weights)
    token = stable_sample(q, u)
    assert q[token] > 0
    cdf = np.cumsum(q)
    assert token == int(np.argmax(cdf > u * cdf[-1]))


@pytest.mark.parametrize(
    ("q", "u", "named"),
    [
        (np.array([0.5, 0.6]), 0.1, "sum to 1"),
        (np.array([1.5, -0.5]), 0.1, "non-negative"),
        (np.array([0.5, 0.5]), 1.0, "u"),
        (np.array([0.5, 0.5]), -0.1, "u"),
        (np.zeros((2, 2)), 0.1, "q"),
    ],
)
def test_stable_sample_rejects_bad_input(q, u, named):
    with pytest.raises(ValueError, match=named):
        stable_sample(q, u)


# --- critical-bid payments --------------------------------------------------------------------


@PROPERTY
@given(auction=auctions(), rule=RULE)
def test_payment_is_between_zero_and_the_bid(auction, rule):
    payments = step(auction, rule).payments
    assert np.all(payments >= 0)
    assert np.all(payments <= auction["bids"])


@PROPERTY
@given(auction=auctions(), rule=RULE)
def test_the_same_token_is_drawn_from_the_critical_bid_up_to_the_bid(auction, rule):
    result = step(auction, rule)
    assert result.token == stable_sample(result.q, auction["u"])
    for i, (bid, payment) in enumerate(zip(auction["bids"], result.payments, strict=True)):
        if bid == 0:
            assert payment == 0
            continue
        just_above = min(bid, payment + BID_TOLERANCE)
        for b in np.linspace(just_above, bid, 25):
            assert draw_with_bid(auction, rule, i, b) == result.token
        if payment > 2 * BID_TOLERANCE:
            assert draw_with_bid(auction, rule, i, payment - 2 * BID_TOLERANCE) != result.token


def oracle_tokens(auction: dict, rule: str, i: int, grid: np.ndarray) -> np.ndarray:
    """Tokens drawn with advertiser i bidding each value of ``grid``, written independently of
    the module: q(b) = (b·p_i + Σ_{k≠i} w_k p_k)/(b + W_{-i}) or its geometric counterpart."""
    own = auction["dists"][i]
    everyone = np.vstack([np.delete(auction["dists"], i, axis=0), auction["reference"]])
    weights = np.append(np.delete(auction["bids"], i), auction["reference_weight"])
    b = grid[:, None]
    if rule == "linear":
        q = (b * own + weights @ everyone) / (b + weights.sum())
    else:
        vetoed = ((weights > 0) @ (everyone == 0) > 0) | ((b > 0) & (own == 0))
        with np.errstate(divide="ignore"):
            own_log, logs = np.log(own), np.log(everyone)
        own_log, logs = np.where(own > 0, own_log, 0.0), np.where(everyone > 0, logs, 0.0)
        logs = (b * own_log + weights @ logs) / (b + weights.sum())
        q = np.exp(np.where(vetoed, -np.inf, logs - logs.max(axis=1, keepdims=True)))
        q /= q.sum(axis=1, keepdims=True)
    cdf = np.cumsum(q, axis=1)
    return np.argmax(cdf > auction["u"] * cdf[:, -1:], axis=1)


@PROPERTY
@given(auction=auctions(), rule=RULE)
def test_critical_bid_matches_a_brute_force_scan(auction, rule):
    """The critical bid is the left end of the run of bids, ending at b_i, that draw the same
    token; a 4001-point scan of [0, b_i] with an independent formula brackets it within a step."""
    payments = step(auction, rule).payments
    for i, bid in enumerate(auction["bids"]):
        if bid == 0:
            continue
        if not _others_hold(auction, i):
            assert payments[i] == 0.0
            continue
        grid = np.linspace(0.0, bid, 4001)
        tokens = oracle_tokens(auction, rule, i, grid)
        different = np.flatnonzero(tokens != tokens[-1])
        lowest_same = grid[different[-1] + 1] if different.size else 0.0
        assert lowest_same - bid / 4000 - 1e-9 <= payments[i] <= lowest_same + 1e-9


def test_linear_critical_bid_in_closed_form():
    # Advertiser 0 wants token 0, the reference wants token 1, u = 0.5: token 0 is drawn when
    # b / (b + 1) > 0.5, i.e. for every bid above 1, so a bid of 3 pays exactly 1.
    dists, reference = np.array([[1.0, 0.0]]), np.array([0.0, 1.0])
    result = token_step(
        dists, np.array([3.0]), 0.5, rule="linear", reference=reference, reference_weight=1.0
    )
    assert result.token == 0
    assert result.payments[0] == pytest.approx(1.0, abs=1e-12)


def test_loglinear_veto_makes_q_jump_at_zero_and_the_payment_sees_it():
    # Bid 0 draws token 2 from the reference (cdf .2 .4 .7 1 at u = .5). Any positive bid vetoes
    # token 3, which p_i rules out, and small bids then draw token 1; token 2 returns once
    # 2·0.2^(1-λ)·0.1^λ <= 0.3^(1-λ)·0.8^λ, λ = b/(b + 1). The bid pays that boundary, not 0.
    dists, reference = np.array([[0.1, 0.1, 0.8, 0.0]]), np.array([0.2, 0.2, 0.3, 0.3])
    result = token_step(
        dists, np.array([10.0]), 0.5, rule="loglinear", reference=reference, reference_weight=1.0
    )
    lam = np.log(0.3 / 0.4) / np.log(0.5 / (8.0 / 3.0))
    assert result.token == 2
    assert stable_sample(aggregate(dists, np.array([0.0]), "loglinear", reference, 1.0), 0.5) == 2
    assert result.payments[0] == pytest.approx(lam / (1.0 - lam), abs=2 * BID_TOLERANCE)


def test_no_competition_means_no_payment():
    dists = np.array([[0.1, 0.9], [0.1, 0.9]])
    alone = token_step(dists[:1], np.array([2.0]), 0.3, rule="loglinear")
    assert alone.payments[0] == 0.0
    same_taste = token_step(dists, np.array([2.0, 1.0]), 0.3, rule="linear")
    np.testing.assert_array_equal(same_taste.payments, [0.0, 0.0])


@PROPERTY
@given(auction=auctions(max_v=5), rule=RULE)
def test_drawn_token_is_piecewise_constant_in_one_bid(auction, rule):
    """Linear: each token's bid set is an interval (a half-line intersection), so on a fine grid
    every token occupies one contiguous run and there are at most V − 1 changes. Log-linear: a
    change needs some cumsum(q)[k] − u, an exponential sum with at most V − 1 sign changes of
    its coefficients, to cross 0, so at most V(V − 1) changes."""
    v = auction["dists"].shape[1]
    grid = np.linspace(0.0, 6.0, 600)
    tokens = [draw_with_bid(auction, rule, 0, b) for b in grid if b > 0 or _others_hold(auction)]
    runs = [t for k, t in enumerate(tokens) if k == 0 or t != tokens[k - 1]]
    if rule == "linear":
        assert len(runs) == len(set(runs)) <= v
    else:
        assert len(runs) - 1 <= v * (v - 1)


def _others_hold(auction: dict, i: int = 0) -> bool:
    others = np.delete(auction["bids"], i)
    return auction["reference_weight"] > 0 or bool(np.any(others > 0))


# --- monotonicity -----------------------------------------------------------------------------


def mixtures(auction: dict, rule: str, bids: np.ndarray) -> list[np.ndarray]:
    out = []
    for b in bids:
        modified = auction["bids"].copy()
        modified[0] = b
        out.append(
            aggregate(
                auction["dists"], modified, rule, auction["reference"], auction["reference_weight"]
            )
        )
    return out


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p‖q) with 0·log 0 = 0."""
    support = p > 0
    return float(p[support] @ (np.log(p[support]) - np.log(q[support])))


INCREASING_BIDS = np.array([0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0])


@PROPERTY
@given(auction=auctions())
def test_linear_raising_a_bid_moves_q_straight_towards_its_distribution(auction):
    """q − p_i = W_{-i}/(b_i + W_{-i}) · (m − p_i): total variation to p_i shrinks by exactly that
    factor and KL(p_i‖q) (convex along the segment, 0 at p_i) never increases."""
    if not _others_hold(auction):
        return
    own = auction["dists"][0]
    others_weight = auction["bids"][1:].sum() + auction["reference_weight"]
    qs = mixtures(auction, "linear", INCREASING_BIDS)
    others_mix = mixtures(auction, "linear", np.array([0.0]))[0]
    tv = np.array([0.5 * np.abs(q - own).sum() for q in qs])
    expected = (
        others_weight / (INCREASING_BIDS + others_weight) * 0.5 * np.abs(others_mix - own).sum()
    )
    np.testing.assert_allclose(tv, expected, atol=1e-12)
    kl = [kl_divergence(own, q) for q in qs]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(kl))


@PROPERTY
@given(auction=auctions())
def test_loglinear_raising_a_bid_tilts_q_towards_its_distribution(auction):
    """q ∝ p_i^λ m^(1−λ), λ = b_i/(b_i + W_{-i}): an exponential family in λ with statistic
    s = log p_i − log m, so E_q[s] is non-decreasing (derivative Var_q s) and KL(q‖p_i) is
    non-increasing (derivative −(1 − λ)·Var_q s)."""
    if not _others_hold(auction):
        return
    own = auction["dists"][0]
    others = mixtures(auction, "loglinear", np.array([0.0]))[0]
    qs = mixtures(auction, "loglinear", INCREASING_BIDS)
    # For b_i > 0, q > 0 only where p_i > 0 and m > 0, so every term below is finite.
    statistic = [float(q[q > 0] @ np.log(own[q > 0] / others[q > 0])) for q in qs]
    kl = [kl_divergence(q, own) for q in qs]
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(statistic))
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(kl))


def test_loglinear_expected_log_p_i_alone_is_not_monotone():
    # The others are sharper than p_i in the same direction (m ∝ p_i^4): raising b_i flattens q,
    # so E_q[log p_i] falls. This is why the statistic above is log p_i − log m.
    own = np.array([0.4, 0.35, 0.25])
    sharp = own**4 / np.sum(own**4)
    dists = np.vstack([own, sharp])
    low, high = (aggregate(dists, np.array([b, 1.0]), "loglinear") for b in (0.1, 10.0))
    assert high @ np.log(own) < low @ np.log(own) - 1e-3


# --- bad input ------------------------------------------------------------------------------

GOOD = {"dists": np.array([[0.5, 0.5], [0.9, 0.1]]), "bids": np.array([1.0, 2.0]), "u": 0.3}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"bids": np.zeros(2)}, "all bids are zero"),
        ({"bids": np.array([1.0, -1.0])}, "bids"),
        ({"bids": np.array([1.0])}, "bids"),
        ({"bids": np.array([1.0, np.nan])}, "bids"),
        ({"dists": np.log([[0.5, 0.5], [0.9, 0.1]])}, "dists"),
        ({"dists": np.array([[0.5, 0.6], [0.9, 0.1]])}, "dists row 0"),
        ({"dists": np.array([0.5, 0.5])}, "dists"),
        ({"u": 1.0}, "u"),
        ({"rule": "median"}, "rule"),
        ({"reference_weight": 1.0}, "reference"),
        ({"reference_weight": -1.0, "reference": np.array([0.5, 0.5])}, "reference_weight"),
        ({"reference_weight": 1.0, "reference": np.array([0.2, 0.3, 0.5])}, "reference"),
    ],
)
def test_bad_input_is_a_clear_error(changes, named):
    arguments = {"rule": "linear", **GOOD, **changes}
    with pytest.raises(ValueError, match=named):
        token_step(**arguments)


def test_all_zero_bids_with_a_weighted_reference_follow_the_reference():
    reference = np.array([0.25, 0.75])
    result = token_step(
        GOOD["dists"], np.zeros(2), 0.3, rule="linear", reference=reference, reference_weight=1.0
    )
    np.testing.assert_allclose(result.q, reference)
    assert result.token == 1
    np.testing.assert_array_equal(result.payments, [0.0, 0.0])
    np.testing.assert_array_equal(
        critical_bids(
            GOOD["dists"],
            np.zeros(2),
            0.3,
            rule="linear",
            reference=reference,
            reference_weight=1.0,
        ),
        result.payments,
    )
