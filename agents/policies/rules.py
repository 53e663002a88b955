"""Fixed rules and the threshold rule: always, never, and enter while entering pays."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from agents.policies.base import EntryPolicy, register_policy
from agents.records import RoundRecord
from market.registry import SettingError, finite, integer, one_of, probability


@register_policy("always")
class AlwaysEnter(EntryPolicy):
    """Enters every round."""

    def _decide(self, history, neighbors) -> bool:
        return True


@register_policy("never")
class NeverEnter(EntryPolicy):
    """Stays out every round."""

    def _decide(self, history, neighbors) -> bool:
        return False


def _ema_weight(name: str, value: object) -> float:
    if probability()(name, value) == 0.0:
        raise SettingError(
            name,
            f"{name} must be in (0, 1], got 0: an EMA with alpha 0 never learns",
            "use e.g. alpha: 0.2",
        )
    return float(value)  # type: ignore[arg-type]


class MovingAverage:
    """The mean of the last ``window`` values (``average="window"``) or an exponential moving
    average with weight ``alpha`` on the newest value (``average="ema"``); None before any."""

    def __init__(self, average: str, window: int, alpha: float) -> None:
        self.average = average
        self.alpha = alpha
        self._recent: deque[float] = deque(maxlen=window)
        self._ema: float | None = None

    def add(self, x: float) -> None:
        self._recent.append(x)
        self._ema = x if self._ema is None else self._ema + self.alpha * (x - self._ema)

    @property
    def value(self) -> float | None:
        if self.average == "ema":
            return self._ema
        return float(np.mean(self._recent)) if self._recent else None


@register_policy("threshold")
class ThresholdPolicy(EntryPolicy):
    """Enters while the moving average of its in-auction payoff covers the entry ``cost`` plus
    what staying out pays.

    What staying out pays is the moving average of the outside option's reward over the rounds
    it stayed out and observed one (a scenario with ``outside_option: true``); without an outside
    option staying out pays 0, so it enters while the in-auction average is at least ``cost``.
    The averages are over the last ``window`` rounds of each kind (``average="window"``) or
    exponential moving averages with weight ``alpha`` on the newest round (``average="ema"``).
    Until it has entered once it enters. Once entering stops paying it stays out, and re-enters
    with probability ``epsilon`` each round to refresh its estimate. It learns what staying out
    pays only in rounds it stays out: while entering covers the cost it never tries the outside
    option (the bandit policies try both arms).
    """

    checks = {
        **EntryPolicy.checks,
        "cost": finite(),
        "epsilon": probability(),
        "average": one_of(("window", "ema")),
        "window": integer(1),
        "alpha": _ema_weight,
    }

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        cost: float = 0.0,
        epsilon: float = 0.05,
        average: str = "window",
        window: int = 10,
        alpha: float = 0.2,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, learn_from=learn_from)
        self.cost = self.checked("cost", cost)
        self.epsilon = self.checked("epsilon", epsilon)
        self.average = self.checked("average", average)
        self.window = self.checked("window", window)
        self.alpha = self.checked("alpha", alpha)
        self._in = MovingAverage(self.average, self.window, self.alpha)
        self._out = MovingAverage(self.average, self.window, self.alpha)

    def _observe(self, record: RoundRecord) -> None:
        payoff = record.payoff(self.learn_from)
        if not math.isfinite(payoff):
            return
        if record.entered:
            self._in.add(payoff)
        elif math.isfinite(record.outside_reward):
            self._out.add(payoff)

    @property
    def estimate(self) -> float | None:
        """Current average in-auction payoff, or None before the first entry."""
        return self._in.value

    @property
    def outside_estimate(self) -> float | None:
        """Current average outside-option reward, or None before one was observed."""
        return self._out.value

    def _decide(self, history, neighbors) -> bool:
        explore = self.rng.random() < self.epsilon
        estimate, outside = self.estimate, self.outside_estimate
        bar = self.cost if outside is None else self.cost + outside
        return estimate is None or estimate >= bar or explore
