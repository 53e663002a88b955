"""Entry policies: each round, an advertiser decides to enter the auction or stay out.

A policy sees only its advertiser's own history (and, for ``imitation``, its neighbors' histories
on the observation graph) and draws only from its own ``numpy.random.Generator``; given the same
generator state and the same histories it makes the same decisions. Every decision draws the same
number of uniforms whatever the branch, so two runs that differ elsewhere (offset on/off) keep
their policy streams aligned (common random numbers).

The payoff a policy learns from is ``RoundRecord.payoff(learn_from)``: the expected utility the
mechanism reports (``"expected"``) or the realized one (``"realized"``) when in; the outside
option's reward, or 0, when out. Non-finite payoffs (NaN: not observed) are ignored.

New policies plug in with ``@register_policy("name")`` on an ``EntryPolicy`` subclass whose
``__init__`` takes ``rng`` and keyword-only settings; ``build_policy`` validates the settings.
Histories are append-only: policies read only the records added since their last call.

Targeting: every policy spec also takes ``targeting`` (``"all"``, the default, or ``"topic"``).
``"all"`` decides from the whole history whatever the query; ``"topic"`` wraps the policy in
`TopicTargeting`, which keeps one independent copy per query topic, each learning only from the
rounds of its topic, so an advertiser can learn to enter music auctions and stay out of travel
ones.
"""

from __future__ import annotations

import difflib
import inspect
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from agents.records import RoundRecord

LEARN_FROM = ("expected", "realized")
TARGETING = ("all", "topic")
NO_NEIGHBORS: Mapping[str, Sequence[RoundRecord]] = MappingProxyType({})

POLICIES: dict[str, type[EntryPolicy]] = {}


def register_policy(name: str) -> Callable[[type[EntryPolicy]], type[EntryPolicy]]:
    """Class decorator: make an ``EntryPolicy`` subclass buildable as ``{type: name}``."""

    def register(cls: type[EntryPolicy]) -> type[EntryPolicy]:
        if name in POLICIES:
            raise ValueError(f"policy type {name!r} is already registered; pick another name")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return register


def _check_probability(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_finite(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class ArmStats:
    """Running count and mean of one arm's payoffs."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0

    def add(self, x: float) -> None:
        self.count += 1
        self.mean += (x - self.mean) / self.count


class EntryRule(ABC):
    """What an advertiser asks each round: ``decide(history, neighbors, topic) -> bool``
    (True = enter this round).

    ``history`` holds the advertiser's past rounds, oldest first; ``neighbors`` maps each neighbor
    on the observation graph to its history; ``topic`` is the current query's topic (None when
    the caller does not say).
    """

    name: ClassVar[str] = "base"

    @abstractmethod
    def decide(
        self,
        history: Sequence[RoundRecord],
        neighbors: Mapping[str, Sequence[RoundRecord]] = NO_NEIGHBORS,
        topic: str | None = None,
    ) -> bool:
        """Enter (True) or stay out (False) this round."""


class EntryPolicy(EntryRule):
    """Base class of the registered policies: they target every query, so ``topic`` is ignored.

    Subclasses implement ``_decide``; ``_observe`` is called once for every new record of the
    advertiser's own history, in order.
    """

    def __init__(self, rng: np.random.Generator, *, learn_from: str = "expected") -> None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(
                f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
                "pass numpy.random.default_rng(seed_sequence)"
            )
        if learn_from not in LEARN_FROM:
            raise ValueError(f"learn_from must be one of {LEARN_FROM}, got {learn_from!r}")
        self.rng = rng
        self.learn_from = learn_from
        self._seen = 0

    def decide(
        self,
        history: Sequence[RoundRecord],
        neighbors: Mapping[str, Sequence[RoundRecord]] = NO_NEIGHBORS,
        topic: str | None = None,
    ) -> bool:
        """Enter (True) or stay out (False) this round, from the whole history (any topic)."""
        if len(history) < self._seen:
            raise ValueError(
                f"history shrank from {self._seen} to {len(history)} records; histories are "
                "append-only, build a new policy for a new run"
            )
        for record in history[self._seen :]:
            self._observe(record)
        self._seen = len(history)
        return bool(self._decide(history, neighbors))

    def _observe(self, record: RoundRecord) -> None:  # noqa: B027 (optional hook)
        """Update running statistics with one new record (default: nothing to remember)."""

    @abstractmethod
    def _decide(
        self, history: Sequence[RoundRecord], neighbors: Mapping[str, Sequence[RoundRecord]]
    ) -> bool:
        """The decision, once the statistics include every record in ``history``."""


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


class TwoArmPolicy(EntryPolicy):
    """Shared bookkeeping for policies that treat enter / stay out as two arms.

    The "in" arm's payoff is the round's payoff minus the entry ``cost``; the "out" arm's payoff
    is ``RoundRecord.payoff`` (the outside option's reward, or 0).
    """

    def __init__(
        self, rng: np.random.Generator, *, cost: float = 0.0, learn_from: str = "expected"
    ) -> None:
        super().__init__(rng, learn_from=learn_from)
        self.cost = _check_finite("cost", cost)
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


@register_policy("threshold")
class ThresholdPolicy(EntryPolicy):
    """Enters while the moving average of its in-auction payoff is at least the entry ``cost``.

    The average is over the last ``window`` rounds it entered (``average="window"``) or an
    exponential moving average with weight ``alpha`` on the newest round (``average="ema"``).
    Until it has entered once it enters. Once the average drops below ``cost`` it stays out, and
    re-enters with probability ``epsilon`` each round to refresh its estimate.
    """

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
        if average not in ("window", "ema"):
            raise ValueError(f"average must be 'window' or 'ema', got {average!r}")
        self.cost = _check_finite("cost", cost)
        self.epsilon = _check_probability("epsilon", epsilon)
        self.average = average
        self.window = _check_count("window", window)
        self.alpha = _check_probability("alpha", alpha)
        if self.alpha == 0.0:
            raise ValueError("alpha must be in (0, 1], got 0: an EMA with alpha 0 never learns")
        self._recent: deque[float] = deque(maxlen=self.window)
        self._ema: float | None = None

    def _observe(self, record: RoundRecord) -> None:
        if not record.entered:
            return
        payoff = record.payoff(self.learn_from)
        if not math.isfinite(payoff):
            return
        self._recent.append(payoff)
        self._ema = payoff if self._ema is None else self._ema + self.alpha * (payoff - self._ema)

    @property
    def estimate(self) -> float | None:
        """Current average in-auction payoff, or None before the first entry."""
        if self.average == "ema":
            return self._ema
        return float(np.mean(self._recent)) if self._recent else None

    def _decide(self, history, neighbors) -> bool:
        explore = self.rng.random() < self.epsilon
        estimate = self.estimate
        return estimate is None or estimate >= self.cost or explore


@register_policy("epsilon_greedy")
class EpsilonGreedyPolicy(TwoArmPolicy):
    """Two-armed bandit (enter / stay out) on sample means, exploring with probability epsilon.

    Each arm is tried once first (enter, then stay out); afterwards it picks the arm with the
    higher sample mean (ties: enter), or a uniformly random arm with probability ``epsilon``.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        epsilon: float = 0.1,
        cost: float = 0.0,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, cost=cost, learn_from=learn_from)
        self.epsilon = _check_probability("epsilon", epsilon)

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

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        c: float = 1.0,
        cost: float = 0.0,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, cost=cost, learn_from=learn_from)
        if not (isinstance(c, int | float) and math.isfinite(c) and c >= 0):
            raise ValueError(f"c must be a finite number >= 0, got {c!r}")
        self.c = float(c)

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

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        temperature: float = 1.0,
        cost: float = 0.0,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, cost=cost, learn_from=learn_from)
        self.temperature = _check_positive("temperature", temperature)

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


@register_policy("imitation")
class ImitationPolicy(EntryPolicy):
    """Copies the entry choice of the best-doing advertiser in its neighborhood.

    Compares its own mean payoff over the last ``window`` rounds with each neighbor's (same
    ``learn_from``) and adopts the latest entry choice of the best one (ties: itself first, then
    neighbors by name). With probability ``epsilon`` it enters or stays out uniformly at random.
    It enters in its first round.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        epsilon: float = 0.05,
        window: int = 10,
        learn_from: str = "expected",
    ) -> None:
        super().__init__(rng, learn_from=learn_from)
        self.epsilon = _check_probability("epsilon", epsilon)
        self.window = _check_count("window", window)

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


class TopicTargeting(EntryRule):
    """Topic targeting: one independent inner policy per query topic.

    The inner policy of a topic sees only the rounds whose ``RoundRecord.topic`` is that topic,
    in its own history and in each neighbor's (every neighbor stays in the mapping, possibly with
    an empty history). Inner policies are built by ``make_inner(rng)`` when a decision is first
    asked for their topic; their generators are spawned from ``rng`` in that order, so the same
    sequence of questions (a run, or its replay on resume) gives the same streams. The filtered
    histories grow append-only, as the inner policies require.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        make_inner: Callable[[np.random.Generator], EntryPolicy],
        name: str = "base",
    ) -> None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(
                f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
                "pass numpy.random.default_rng(seed_sequence)"
            )
        self.rng = rng
        self.name = name
        self._make_inner = make_inner
        self.inner: dict[str, EntryPolicy] = {}
        self._own = _TopicSplit()
        self._neighbors: dict[str, _TopicSplit] = {}

    def decide(
        self,
        history: Sequence[RoundRecord],
        neighbors: Mapping[str, Sequence[RoundRecord]] = NO_NEIGHBORS,
        topic: str | None = None,
    ) -> bool:
        """Ask the inner policy of ``topic`` (required) on the rounds of that topic."""
        if not isinstance(topic, str):
            raise ValueError(
                f"topic must be the current query's topic (a string) for a policy with "
                f"targeting='topic', got {topic!r}; pass decide(history, neighbors, topic=...)"
            )
        self._own.extend(history)
        for name, records in neighbors.items():
            self._neighbors.setdefault(name, _TopicSplit()).extend(records)
        if topic not in self.inner:
            self.inner[topic] = self._make_inner(self.rng.spawn(1)[0])
        return self.inner[topic].decide(
            self._own.of(topic),
            {name: self._neighbors[name].of(topic) for name in neighbors},
            topic,
        )


class _TopicSplit:
    """An append-only history split by topic, read incrementally."""

    def __init__(self) -> None:
        self._seen = 0
        self._by_topic: dict[str, list[RoundRecord]] = {}

    def extend(self, history: Sequence[RoundRecord]) -> None:
        if len(history) < self._seen:
            raise ValueError(
                f"history shrank from {self._seen} to {len(history)} records; histories are "
                "append-only, build a new policy for a new run"
            )
        for record in history[self._seen :]:
            self._by_topic.setdefault(record.topic, []).append(record)
        self._seen = len(history)

    def of(self, topic: str) -> list[RoundRecord]:
        return self._by_topic.setdefault(topic, [])


def spec_parts(spec: Any, what: str) -> tuple[str, Mapping[str, Any]]:
    """Read ``type`` and ``kwargs`` from a ``{type, kwargs}`` mapping or an object with both."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"type", "kwargs"}
        if unknown:
            raise ValueError(f"{what} spec has unknown keys {sorted(unknown)}; use type and kwargs")
        kind, kwargs = spec.get("type"), spec.get("kwargs") or {}
    else:
        kind, kwargs = getattr(spec, "type", None), getattr(spec, "kwargs", None) or {}
    if not isinstance(kind, str):
        raise ValueError(f"{what} spec needs a string 'type', got {kind!r}")
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{what} kwargs must be a mapping, got {type(kwargs).__name__}")
    return kind, kwargs


def check_kwargs(cls: type, kwargs: Mapping[str, Any], what: str, also: Sequence[str] = ()) -> None:
    """Raise ValueError naming a kwarg ``cls`` does not take, with the valid ones.

    The generator is never a kwarg: builders pass it themselves. ``also`` lists kwargs the
    builder itself takes.
    """
    valid = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "rng"
    ] + list(also)
    for key in kwargs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{what} has no kwarg {key!r}{hint}; valid kwargs: {', '.join(valid) or 'none'}"
            )


def check_targeting(value: Any) -> str:
    """The ``targeting`` setting of a policy spec, or ValueError naming the valid values."""
    if value not in TARGETING:
        raise ValueError(
            f"targeting must be one of {', '.join(repr(t) for t in TARGETING)}, got {value!r}"
        )
    return value


def build_policy(spec: Any, rng: np.random.Generator) -> EntryRule:
    """Build an entry policy from ``{type: ..., kwargs: {...}}`` (a mapping or a ComponentSpec).

    Besides the policy's own kwargs, ``targeting`` (``"all"`` default, or ``"topic"``) picks
    whether it decides from every round or keeps one policy per query topic (`TopicTargeting`).
    """
    kind, kwargs = spec_parts(spec, "policy")
    if kind not in POLICIES:
        raise ValueError(f"unknown policy type {kind!r}; known: {', '.join(POLICIES)}")
    cls = POLICIES[kind]
    settings = {k: v for k, v in kwargs.items() if k != "targeting"}
    try:
        targeting = check_targeting(kwargs.get("targeting", "all"))
    except ValueError as err:
        raise ValueError(f"policy {kind!r}: {err}") from err
    check_kwargs(cls, settings, f"policy {kind!r}", also=("targeting",))

    def make(generator: np.random.Generator) -> EntryPolicy:
        try:
            return cls(generator, **settings)
        except ValueError as err:
            raise ValueError(f"policy {kind!r}: {err}") from err

    if targeting == "all":
        return make(rng)
    make(np.random.default_rng(0))  # settings fail here, not at the first round
    return TopicTargeting(rng, make, name=kind)
