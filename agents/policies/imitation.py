"""Imitation: copy the entry choice of the best-doing neighbor on the observation graph."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from agents.policies.base import EntryPolicy, register_policy
from agents.records import RoundRecord
from market.registry import integer, probability


@register_policy("imitation")
class ImitationPolicy(EntryPolicy):
    """Copies the entry choice of the best-doing advertiser in its neighborhood.

    Compares its own mean payoff over the last ``window`` rounds with each neighbor's (same
    ``learn_from``) and adopts the latest entry choice of the best one (ties: itself first, then
    neighbors by name). With probability ``epsilon`` it enters or stays out uniformly at random.
    It enters in its first round.
    """

    checks = {**EntryPolicy.checks, "epsilon": probability(), "window": integer(1)}

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        epsilon: float = 0.05,
        window: int = 10,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, learn_from=learn_from)
        self.epsilon = self.checked("epsilon", epsilon)
        self.window = self.checked("window", window)

    def _recent_mean(self, history: Sequence[RoundRecord]) -> float:
        payoffs = [r.payoff(self.learn_from) for r in history[-self.window :]]
        finite = [p for p in payoffs if math.isfinite(p)]
        return float(np.mean(finite)) if finite else -math.inf

    def best_neighbor(
        self, history: Sequence[RoundRecord], neighbors: Mapping[str, Sequence[RoundRecord]]
    ) -> str | None:
        """The neighbor doing strictly better than the advertiser itself, or None."""
        best_name, best_mean = None, self._recent_mean(history) if history else -math.inf
        for name in sorted(neighbors):
            if neighbors[name]:
                mean = self._recent_mean(neighbors[name])
                if mean > best_mean:
                    best_name, best_mean = name, mean
        return best_name

    def _decide(self, history, neighbors) -> bool:
        explore = self.rng.random() < self.epsilon
        coin = self.rng.random() < 0.5
        if explore:
            return coin
        best = self.best_neighbor(history, neighbors)
        if best is not None:
            return neighbors[best][-1].entered
        return history[-1].entered if history else True
