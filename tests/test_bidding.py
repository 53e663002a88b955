"""Iterated best-response search (market.bidding): known optima, a known cycle, bad input."""

import numpy as np
import pytest

from market.bidding import best_response_search
from market.mechanisms.token_auction import token_step

GRID = tuple(np.arange(0.0, 4.01, 0.5))


def test_recovers_the_unique_equilibrium_of_a_smooth_game():
    # u_i = −(a_i − (1 + a_j / 2))²: best response 1 + a_j/2, unique equilibrium a_1 = a_2 = 2.
    def payoff(profile):
        a, b = profile
        return np.array([-((a - (1 + b / 2)) ** 2), -((b - (1 + a / 2)) ** 2)])

    result = best_response_search(payoff, [GRID, GRID], (0.0, 4.0))
    assert result.converged
    assert result.profile == (2.0, 2.0)
    assert result.indices == (GRID.index(2.0), GRID.index(2.0))
    np.testing.assert_array_equal(result.regrets, 0.0)
    assert result.path[0] == (0.0, 4.0) and result.path[-1] == (2.0, 2.0)


def test_reports_a_cycle_as_not_converged():
    # Matching pennies: best responses cycle forever; no pure equilibrium exists.
    def payoff(profile):
        same = profile[0] == profile[1]
        return np.array([1.0, -1.0]) if same else np.array([-1.0, 1.0])

    result = best_response_search(payoff, [(0.0, 1.0), (0.0, 1.0)], (0.0, 1.0), max_passes=5)
    assert not result.converged
    assert result.passes == 5
    assert result.regrets.max() == pytest.approx(2.0)


def test_without_convergence_it_returns_the_visited_profile_closest_to_an_equilibrium():
    # Best responses cycle (0,0) → (0,1) → (1,0) → (0,1) → ...; the largest regrets there are
    # 1, 1 and 2, so the answer is an ε-equilibrium with ε = 1 (the latest of the tied ones).
    table = {(0, 0): (2, 0), (0, 1): (0, 1), (1, 1): (1, 0), (1, 0): (0, 3)}
    result = best_response_search(
        lambda p: np.array(table[(int(p[0]), int(p[1]))], dtype=float),
        [(0.0, 1.0), (0.0, 1.0)],
        (0.0, 0.0),
        max_passes=4,
    )
    assert not result.converged
    assert result.path == ((0, 0), (0, 1), (1, 0), (0, 1), (1, 0))
    assert result.profile == (0.0, 1.0)
    np.testing.assert_array_equal(result.regrets, [1.0, 0.0])
    np.testing.assert_array_equal(result.payoffs, [0.0, 1.0])


def test_ties_keep_the_current_action():
    result = best_response_search(lambda p: np.zeros(2), [GRID, GRID], (1.5, 3.0))
    assert result.converged and result.profile == (1.5, 3.0) and result.passes == 1


def test_a_single_token_bidder_best_responds_with_her_value_per_token():
    """One advertiser, one token, the reference joining with weight 1 (linear rule, Duetting et
    al.). Her LLM wants token 0 (p = (1, 0)), the reference is (1/2, 1/2), and token 0 is worth r
    to her. With bid b, q_0(b) = (b + 1/2)/(b + 1); token 0 is drawn iff u < q_0(b) and then costs
    the critical bid c(u) = (u − 1/2)/(1 − u) (0 for u < 1/2). Her expected utility
    r·q_0(b) − ∫_{1/2}^{q_0(b)} c(u) du has derivative (r − b)·q_0'(b): the optimum is b = r.
    The search, on the mechanism's own token_step and a fine stratified grid of uniforms (common
    random numbers), must find the grid bid equal to r (neighbours are ≥ 0.0078 worse)."""
    value = 1.5
    mine, reference = np.array([[1.0, 0.0]]), np.array([0.5, 0.5])
    uniforms = (np.arange(500) + 0.5) / 500
    memo = {}

    def payoff(profile):
        if profile in memo:
            return memo[profile]
        total = 0.0
        for u in uniforms:
            step = token_step(mine, np.array(profile), u, rule="linear", reference=reference,
                              reference_weight=1.0)  # fmt: skip
            total += value * (step.token == 0) - step.payments[0]
        memo[profile] = np.array([total / uniforms.size])
        return memo[profile]

    exact = [value * (b + 0.5) / (b + 1) - _expected_payment(b) for b in GRID]
    assert GRID[int(np.argmax(exact))] == value  # the closed form agrees: b* = r
    result = best_response_search(payoff, [GRID], (0.0,))
    assert result.converged and result.profile == (value,)
    # Midpoint rule over u: the integrand jumps by r − b at u = q_0(b), an error ≤ |r − b|/(2·500).
    np.testing.assert_allclose([payoff((b,))[0] for b in GRID], exact, atol=3e-3)


def _expected_payment(bid: float) -> float:
    """∫_{1/2}^{q_0(b)} (u − 1/2)/(1 − u) du = [−(u − 1/2) − (1/2)·log(1 − u)] in closed form."""
    top = (bid + 0.5) / (bid + 1)
    return -(top - 0.5) - 0.5 * np.log(1 - top) + 0.5 * np.log(0.5)


@pytest.mark.parametrize(
    ("grids", "start", "kwargs", "match"),
    [
        ([()], (0.0,), {}, "non-empty grid"),
        ([GRID], (0.25,), {}, "not on player 0's grid"),
        ([GRID], (0.0, 1.0), {}, "2 actions for 1 players"),
        ([GRID], (0.0,), {"max_passes": 0}, "max_passes"),
        ([GRID], (0.0,), {"tolerance": -1.0}, "tolerance"),
    ],
)
def test_bad_input_names_the_problem(grids, start, kwargs, match):
    with pytest.raises(ValueError, match=match):
        best_response_search(lambda p: np.zeros(len(p)), grids, start, **kwargs)


def test_a_payoff_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="one utility per player"):
        best_response_search(lambda p: np.zeros(3), [GRID, GRID], (0.0, 0.0))
