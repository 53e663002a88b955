"""Bandit policies: entering and staying out as two arms (epsilon-greedy, UCB1, logit response).

The "in" arm's payoff is the round's payoff minus the entry ``cost``; the "out" arm's payoff is
``RoundRecord.payoff`` when out (the outside option's reward, or 0 without one).
"""

from __future__ import annotations

import math

import numpy as np

from agents.policies.base import EntryPolicy, register_policy
from agents.records import RoundRecord
from market.registry import finite, nonnegative, positive, probability


class ArmStats:
    """Running count and mean of one arm's payoffs."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0

    def add(self, x: float) -> None:
        self.count += 1
        self.mean += (x - self.mean) / self.count


class TwoArmPolicy(EntryPolicy):
    """Shared bookkeeping for policies that treat enter / stay out as two arms."""

    checks = {**EntryPolicy.checks, "cost": finite()}

    def __init__(
        self, rng: np.random.Generator, *, cost: float = 0.0, learn_from: str = "expected"
    ) -> None:
        super().__init__(rng, learn_from=learn_from)
        self.cost = self.checked("cost", cost)
        self.arm_in = ArmStats()
        self.arm_out = ArmStats()
        self._low = math.inf
        self._high = -math.inf

    def _observe(self, record: RoundRecord) -> None:
        payoff = record.payoff(self.learn_from)
        if not math.isfinite(payoff):
            return
        if record.entered:
            payoff -= self.cost
            self.arm_in.add(payoff)
        else:
            self.arm_out.add(payoff)
        self._low = min(self._low, payoff)
        self._high = max(self._high, payoff)

    @property
    def payoff_range(self) -> float:
        """max − min of every payoff seen so far (0 before two distinct payoffs)."""
        return self._high - self._low if self._high > self._low else 0.0


@register_policy("epsilon_greedy")
class EpsilonGreedyPolicy(TwoArmPolicy):
    """Two-armed bandit (enter / stay out) on sample means, exploring with probability epsilon.

    Each arm is tried once first (enter, then stay out); afterwards it picks the arm with the
    higher sample mean (ties: enter), or a uniformly random arm with probability ``epsilon``.
    """

    checks = {**TwoArmPolicy.checks, "epsilon": probability()}

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        epsilon: float = 0.1,
        cost: float = 0.0,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, cost=cost, learn_from=learn_from)
        self.epsilon = self.checked("epsilon", epsilon)

    def _decide(self, history, neighbors) -> bool:
        explore = self.rng.random() < self.epsilon
        coin = self.rng.random() < 0.5
        if self.arm_in.count == 0:
            return True
        if self.arm_out.count == 0:
            return False
        if explore:
            return coin
        return self.arm_in.mean >= self.arm_out.mean


@register_policy("ucb")
class UCBPolicy(TwoArmPolicy):
    """UCB1 on the two arms with an empirical-scale bonus (payoffs may be negative, unbounded).

    index(arm) = mean(arm) + c · range · sqrt(2 ln t / n(arm)), where range = max − min of all
    payoffs seen so far stands in for the width of UCB1's [0, 1] reward interval. Unlike a
    standard deviation it never shrinks when one arm keeps paying the same amount, so an arm
    written off after an unlucky start is still revisited. Each arm is tried once first; ties go
    to entering. Deterministic: the rng is not used.
    """

    checks = {**TwoArmPolicy.checks, "c": nonnegative()}

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        c: float = 1.0,
        cost: float = 0.0,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, cost=cost, learn_from=learn_from)
        self.c = self.checked("c", c)

    def _index(self, arm: ArmStats, total: int) -> float:
        bonus = self.c * self.payoff_range * math.sqrt(2.0 * math.log(total) / arm.count)
        return arm.mean + bonus

    def _decide(self, history, neighbors) -> bool:
        if self.arm_in.count == 0:
            return True
        if self.arm_out.count == 0:
            return False
        total = self.arm_in.count + self.arm_out.count
        return self._index(self.arm_in, total) >= self._index(self.arm_out, total)


@register_policy("logit")
class LogitPolicy(TwoArmPolicy):
    """Quantal response: P(enter) = sigmoid((mean_in − mean_out − cost) / temperature).

    Arms without data count with mean 0, so a newcomer enters with probability
    sigmoid(−cost / temperature). Here ``cost`` enters once, through mean_in.
    """

    checks = {**TwoArmPolicy.checks, "temperature": positive()}

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        temperature: float = 1.0,
        cost: float = 0.0,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, cost=cost, learn_from=learn_from)
        self.temperature = self.checked("temperature", temperature)

    @property
    def enter_probability(self) -> float:
        mean_in = self.arm_in.mean if self.arm_in.count else -self.cost
        mean_out = self.arm_out.mean if self.arm_out.count else 0.0
        z = (mean_in - mean_out) / self.temperature
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        return math.exp(z) / (1.0 + math.exp(z))

    def _decide(self, history, neighbors) -> bool:
        return self.rng.random() < self.enter_probability
