"""`mosaic_outcome` computes, bit for bit, what the paper's steps give when taken one at a time
with the module's public helpers: logits and allocation (Alg. 1 / eq. 11), β_{-i} (eq. 11), the
Rochet utility (eq. 4 / 12), the offset (Sec. 5.3), payments (eq. 13) and softmax(β_{-i}) · r_i
(eq. 15). Its fused path (every row's logsumexp in one array, one combined finiteness check) must
not move a single bit, so a run gives the same rows and draws the same replies as before the
fusion: thousands of seeded auctions, with −inf rewards and log-probabilities, one candidate, one
or no advertiser, both offsets and several τ.
"""

from __future__ import annotations

import numpy as np
import pytest

from market.mechanisms.mosaic import (
    expectation,
    logsumexp,
    mosaic_outcome,
    others_logits,
    sample_reply,
    softmax,
)

FIELDS = (
    "allocation",
    "logits",
    "payments",
    "expected_rewards",
    "utilities",
    "offsets",
    "expected_rewards_without",
)


def stepwise_outcome(rewards, log_ref, log_gen, tau, offset):
    """The mechanism's numbers one step and one helper at a time (arrays as in MosaicOutcome);
    None when no candidate has a finite logit."""
    finite_ref = np.isfinite(log_ref)
    log_weight = np.where(finite_ref, log_ref - np.where(finite_ref, log_gen, 0.0), -np.inf)
    logits = np.add.reduce(rewards, axis=0)
    if tau != 1.0:
        logits /= tau
    logits += log_weight
    if not np.isfinite(logits).any():
        return None
    allocation = softmax(logits)
    beta = others_logits(rewards, log_weight, tau)
    own = (rewards / tau if tau != 1.0 else rewards) + beta
    rochet = tau * logsumexp(own, axis=1) if tau != 1.0 else logsumexp(own, axis=1)
    if offset:
        lse = logsumexp(beta, axis=1)
        offsets = 0.0 - (tau * lse if tau != 1.0 else lse)
    else:
        offsets = np.zeros(rewards.shape[0])
    expected = expectation(allocation, rewards)
    payments = expected - rochet
    payments -= offsets
    return {
        "allocation": allocation,
        "logits": logits,
        "payments": payments,
        "expected_rewards": expected,
        "utilities": rochet + offsets,
        "offsets": offsets,
        "expected_rewards_without": expectation(softmax(beta), rewards),
    }


def random_auction(rng: np.random.Generator):
    """An auction of the kinds a market meets, and of the corners the mechanism must handle."""
    n = int(rng.choice([0, 1, 2, 3, 7, 20]))
    m = int(rng.choice([1, 2, 5, 16, 33]))
    rewards = rng.normal(size=(n, m)) * rng.choice([0.01, 1.0, 30.0, 1e4])
    log_ref = -rng.exponential(size=m) * rng.choice([1.0, 40.0, 400.0])
    log_gen = -rng.exponential(size=m) * rng.choice([1.0, 40.0, 400.0])
    kind = rng.integers(4)
    if kind == 1:  # vetoes: rewards of -inf
        rewards[rng.random((n, m)) < 0.15] = -np.inf
    elif kind == 2:  # replies the reference cannot produce, some never generated either
        impossible = rng.random(m) < 0.3
        log_ref[impossible] = -np.inf
        log_gen[impossible & (rng.random(m) < 0.5)] = -np.inf
    tau = float(rng.choice([1.0, 1.0, 0.5, 2.0, 0.05, 10.0]))
    return rewards, log_ref, log_gen, tau, bool(rng.integers(2))


@pytest.mark.parametrize("block", range(4))
def test_the_fused_outcome_is_the_stepwise_outcome_bit_for_bit(block):
    rng = np.random.default_rng([2026, block])
    compared = 0
    for _ in range(500):
        rewards, log_ref, log_gen, tau, offset = random_auction(rng)
        expected = stepwise_outcome(rewards, log_ref, log_gen, tau, offset)
        if expected is None:
            with pytest.raises(ValueError, match="-inf"):
                mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=offset)
            continue
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # and warns of nothing
            out = mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=offset)
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(out, name), expected[name], err_msg=name)
        seed = int(rng.integers(2**32))
        draw = sample_reply(out, np.random.default_rng(seed))
        cdf = np.cumsum(expected["allocation"])
        assert draw == int(
            np.searchsorted(cdf / cdf[-1], np.random.default_rng(seed).random(), "right")
        )
        compared += 1
    assert compared > 450  # nearly every auction had a candidate to return
