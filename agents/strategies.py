"""Report strategies: what an advertiser tells the mechanism, given her true rewards.

Under MOSAIC an advertiser reports one reward per candidate reply, ``report(true_rewards)``;
truthful reporting maximizes her expected utility for every fixed candidate set (Theorem 5.1), so
any other strategy here is a deliberate misreport for experiments. In the token auction she
submits one scalar bid, ``bid(value)``; the truthful bid is her value scale v_i.

New strategies plug in with ``@register_strategy("name")``; ``build_strategy`` validates kwargs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from market.registry import CheckedSettings, Registry, finite, nonnegative, positive


class ReportStrategy(CheckedSettings, ABC):
    """Base class. ``report`` returns a new float array shaped like ``true_rewards``.

    Settings are keyword-only constructor arguments validated by ``checks`` (pure: a scenario is
    validated without building its strategies); a strategy that draws sets ``needs_rng`` and
    takes the generator as the keyword ``rng``.
    """

    name: ClassVar[str] = "base"
    needs_rng: ClassVar[bool] = False
    # reports are the true rewards: the auction skips calling ``report`` (only the class that
    # says so itself, never a subclass that may change the report)
    truthful: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.truthful = bool(cls.__dict__.get("truthful", False))

    def report(self, true_rewards: np.ndarray) -> np.ndarray:
        """Reported rewards r̃_i(x, y_j) for the candidates, from the true r_i(x, y_j)."""
        return self._report(np.array(true_rewards, dtype=float))

    def bid(self, value: float) -> float:
        """Token-auction bid b_i >= 0 from the value scale v_i."""
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"value must be a finite number >= 0, got {value!r}")
        return max(0.0, float(self._bid(float(value))))

    @abstractmethod
    def _report(self, rewards: np.ndarray) -> np.ndarray:
        """Transform a private copy of the true rewards."""

    @abstractmethod
    def _bid(self, value: float) -> float:
        """Transform the value scale (the result is clipped at 0)."""


STRATEGIES = Registry(
    "strategy", base=ReportStrategy, base_name="agents.ReportStrategy", injected=("rng",)
)


def register_strategy(name: str) -> Callable[[type[ReportStrategy]], type[ReportStrategy]]:
    """Class decorator: make a ``ReportStrategy`` subclass buildable as ``{type: name}``."""
    return STRATEGIES.register(name)


@register_strategy("truthful")
class Truthful(ReportStrategy):
    """Reports the true rewards and bids the value scale (dominant under MOSAIC, Theorem 5.1)."""

    truthful = True

    def _report(self, rewards: np.ndarray) -> np.ndarray:
        return rewards

    def _bid(self, value: float) -> float:
        return value


@register_strategy("scale")
class Scale(ReportStrategy):
    """Reports ``factor`` · r_i and bids ``factor`` · v_i (factor > 1 overstates)."""

    checks = {"factor": positive()}

    def __init__(self, *, factor: float = 1.0) -> None:
        self.factor = self.checked("factor", factor)

    def _report(self, rewards: np.ndarray) -> np.ndarray:
        return rewards * self.factor

    def _bid(self, value: float) -> float:
        return value * self.factor


@register_strategy("shift")
class Shift(ReportStrategy):
    """Reports r_i + ``amount`` on every candidate and bids v_i + ``amount`` (clipped at 0).

    A constant shift leaves MOSAIC's allocation unchanged (softmax is shift-invariant).
    """

    checks = {"amount": finite()}

    def __init__(self, *, amount: float = 0.0) -> None:
        self.amount = self.checked("amount", amount)

    def _report(self, rewards: np.ndarray) -> np.ndarray:
        return rewards + self.amount

    def _bid(self, value: float) -> float:
        return value + self.amount


@register_strategy("noise")
class Noise(ReportStrategy):
    """Adds independent N(0, sigma²) noise to each reported reward and to the bid (clipped at 0).

    Draws from the generator given to ``build_strategy(spec, rng)``.
    """

    needs_rng = True
    checks = {"sigma": nonnegative()}

    def __init__(self, *, rng: np.random.Generator, sigma: float = 1.0) -> None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(
                "needs an rng: call build_strategy(spec, rng) with a "
                f"numpy.random.Generator, got {type(rng).__name__}"
            )
        self.rng = rng
        self.sigma = self.checked("sigma", sigma)

    def _report(self, rewards: np.ndarray) -> np.ndarray:
        return rewards + self.sigma * self.rng.standard_normal(rewards.shape)

    def _bid(self, value: float) -> float:
        return value + self.sigma * float(self.rng.standard_normal())


def build_strategy(spec: Any, rng: np.random.Generator | None = None) -> ReportStrategy:
    """Build a report strategy from ``{type: ..., kwargs: {...}}`` (a mapping or ComponentSpec).

    ``rng`` is required by strategies that draw (``noise``) and ignored by the others.
    """
    checked = STRATEGIES.check(spec)
    if checked.cls.needs_rng:
        return STRATEGIES.construct(checked, rng=rng)
    return STRATEGIES.construct(checked)
