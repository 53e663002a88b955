"""Utility gain from participation (App. C.4, eq. 15): the mechanism-level facts and the report helper.

gain_i = U_i − softmax(β_{-i}) · r_i. With the offset (Sec. 5.3) and truthful reports it equals
τ·log E_β[e^{r_i/τ}] − E_β[r_i] ≥ 0 (Jensen), and 0 for a constant reward.
"""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from market.mechanisms.mosaic import mosaic_outcome, softmax
from reports.gain import IR_TOLERANCE, gain_is_non_negative, utility_gain

PROPERTY = settings(max_examples=80, deadline=None)


@st.composite
def instances(draw):
    n = draw(st.integers(1, 4))
    m = draw(st.integers(1, 8))
    rewards = draw(arrays(np.float64, (n, m), elements=st.floats(-20.0, 20.0)))
    log_ref = draw(arrays(np.float64, (m,), elements=st.floats(-60.0, 0.0)))
    log_gen = draw(arrays(np.float64, (m,), elements=st.floats(-60.0, 0.0)))
    tau = draw(st.sampled_from([0.1, 0.5, 1.0, 2.0, 10.0]))
    return rewards, log_ref, log_gen, tau


def _gain(out) -> np.ndarray:
    return np.asarray(out.utilities) - np.asarray(out.expected_rewards_without)


@PROPERTY
@given(instances())
def test_with_the_offset_the_gain_is_the_jensen_gap_and_never_negative(inst):
    rewards, log_ref, log_gen, tau = inst
    out = mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=True)
    gain = _gain(out)
    for i in range(rewards.shape[0]):
        others = np.delete(rewards, i, axis=0).sum(axis=0) / tau + log_ref - log_gen
        beta = softmax(others)
        e_r = float(beta @ rewards[i])
        peak = rewards[i].max()
        jensen = peak + tau * math.log(float(beta @ np.exp((rewards[i] - peak) / tau))) - e_r
        assert gain[i] == pytest.approx(jensen, abs=1e-8 * (1 + abs(peak)))
        assert gain[i] >= -1e-9 * (1 + abs(peak))


@PROPERTY
@given(instances(), st.floats(-50.0, 50.0), st.integers(0, 3))
def test_a_constant_reward_advertiser_gains_nothing_with_the_offset(inst, c, who):
    rewards, log_ref, log_gen, tau = inst
    who = who % rewards.shape[0]
    rewards = rewards.copy()
    rewards[who] = c
    out = mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=True)
    assert abs(_gain(out)[who]) <= 1e-9
    assert out.utilities[who] == pytest.approx(c, abs=1e-9)
    assert out.expected_rewards_without[who] == pytest.approx(c, abs=1e-9)


def test_without_the_offset_the_ir_check_can_fail():
    # Importance weights far below 1 (long replies, paper Fig. 4): τ·logsumexp(logits) ≪ 0.
    rewards = np.zeros((2, 4))
    log_ref, log_gen = np.full(4, -60.0), np.full(4, -10.0)
    with_offset = mosaic_outcome(rewards, log_ref, log_gen, tau=1.0, offset=True)
    without = mosaic_outcome(rewards, log_ref, log_gen, tau=1.0, offset=False)
    np.testing.assert_allclose(_gain(with_offset), 0.0, atol=1e-12)
    np.testing.assert_allclose(_gain(without), -50.0 + math.log(4.0))
    assert not gain_is_non_negative(_gain(without)).any()


def test_utility_gain_computes_from_the_columns_and_blanks_absent_advertisers():
    frame = pd.DataFrame(
        {
            "entered": [True, True, False],
            "utility": [1.5, -2.0, 0.0],
            "expected_reward_without": [0.5, -3.0, np.nan],
        }
    )
    gain = utility_gain(frame)
    assert gain.name == "utility_gain"
    np.testing.assert_array_equal(gain.to_numpy(), [1.0, 1.0, np.nan])


def test_utility_gain_prefers_a_recorded_column():
    frame = pd.DataFrame(
        {
            "entered": [True, False],
            "utility": [1.5, 0.0],
            "expected_reward_without": [0.5, np.nan],
            "utility_gain": [0.25, 0.0],  # as a run might record it; differs on purpose
        }
    )
    np.testing.assert_array_equal(utility_gain(frame).to_numpy(), [0.25, np.nan])


def test_the_ir_check_allows_round_off_only():
    checks = gain_is_non_negative(np.array([0.0, -0.5 * IR_TOLERANCE, -2 * IR_TOLERANCE, np.nan]))
    np.testing.assert_array_equal(checks, [True, True, False, False])
