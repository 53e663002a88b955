"""Report strategies: reports over candidates, token-auction bids, registry errors."""

from __future__ import annotations

import numpy as np
import pytest

from agents.strategies import STRATEGIES, ReportStrategy, build_strategy, register_strategy

REWARDS = np.array([1.5, -0.5, 0.0, -np.inf])


def test_registry_has_every_documented_strategy():
    assert {"truthful", "scale", "shift", "noise"} <= set(STRATEGIES)


def test_truthful_reports_the_true_rewards_in_a_new_array():
    strategy = build_strategy({"type": "truthful"})
    report = strategy.report(REWARDS)
    np.testing.assert_array_equal(report, REWARDS)
    report[0] = 99.0
    assert REWARDS[0] == 1.5
    assert strategy.bid(2.5) == 2.5


def test_scale_multiplies_reports_and_bid():
    strategy = build_strategy({"type": "scale", "kwargs": {"factor": 2.0}})
    np.testing.assert_array_equal(strategy.report(REWARDS), [3.0, -1.0, 0.0, -np.inf])
    assert strategy.bid(1.5) == 3.0


def test_shift_adds_a_constant_and_clips_bids_at_zero():
    strategy = build_strategy({"type": "shift", "kwargs": {"amount": -1.0}})
    np.testing.assert_array_equal(strategy.report(REWARDS), [0.5, -1.5, -1.0, -np.inf])
    assert strategy.bid(3.0) == 2.0
    assert strategy.bid(0.5) == 0.0


def test_noise_draws_from_its_rng_and_is_reproducible():
    spec = {"type": "noise", "kwargs": {"sigma": 0.5}}
    a = build_strategy(spec, np.random.default_rng(3)).report(REWARDS[:3])
    b = build_strategy(spec, np.random.default_rng(3)).report(REWARDS[:3])
    expected = REWARDS[:3] + 0.5 * np.random.default_rng(3).standard_normal(3)
    np.testing.assert_allclose(a, expected)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, REWARDS[:3])
    bids = [build_strategy(spec, np.random.default_rng(s)).bid(0.1) for s in range(50)]
    assert min(bids) == 0.0 and max(bids) > 0.1


def test_noise_needs_an_rng():
    with pytest.raises(ValueError, match=r"needs an rng: call build_strategy\(spec, rng\)"):
        build_strategy({"type": "noise", "kwargs": {"sigma": 1.0}})


def test_reports_keep_the_shape_of_the_rewards():
    rewards = np.zeros((3, 4))
    for kind in STRATEGIES:
        report = build_strategy({"type": kind}, np.random.default_rng(0)).report(rewards)
        assert report.shape == (3, 4), kind


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match=r"unknown strategy type 'lie'.*truthful"):
        build_strategy({"type": "lie"})
    with pytest.raises(ValueError, match=r"no kwarg 'factr'.*did you mean 'factor'"):
        build_strategy({"type": "scale", "kwargs": {"factr": 2}})
    with pytest.raises(ValueError, match=r"factor must be a finite number > 0"):
        build_strategy({"type": "scale", "kwargs": {"factor": 0}})
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0"):
        build_strategy({"type": "noise", "kwargs": {"sigma": -1}}, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"value must be a finite number >= 0"):
        build_strategy({"type": "truthful"}).bid(-1.0)


def test_new_strategies_plug_in_through_the_registry():
    @register_strategy("test_zero")
    class Zero(ReportStrategy):
        def _report(self, rewards):
            return np.zeros_like(rewards)

        def _bid(self, value):
            return 0.0

    try:
        strategy = build_strategy({"type": "test_zero"})
        np.testing.assert_array_equal(strategy.report(REWARDS), np.zeros(4))
        assert strategy.bid(5.0) == 0.0
    finally:
        del STRATEGIES["test_zero"]
