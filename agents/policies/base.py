"""What an entry policy is: the question it answers each round, the base class every registered
(or plug-in) policy subclasses, and the registry that builds them by name.

A policy sees only its advertiser's own history (and, for ``imitation``, its neighbors' histories
on the observation graph) and draws only from its own ``numpy.random.Generator``; given the same
generator state and the same histories it makes the same decisions. Every decision draws the same
number of uniforms whatever the branch, so two runs that differ elsewhere (offset on/off) keep
their policy streams aligned (common random numbers).

The payoff a policy learns from is ``RoundRecord.payoff(learn_from)``: the expected utility the
mechanism reports (``"expected"``) or the realized one (``"realized"``) when in; the outside
option's reward, or 0, when out; or the utility gain from participation (``"gain"``: expected
utility minus the same candidates' reward without her, eq. 15) when in, 0 when out. Non-finite payoffs (NaN: not observed) are ignored.
Histories are append-only: policies read only the records added since their last call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from agents.records import RoundRecord
from market.registry import CheckedSettings, Registry, one_of

LEARN_FROM = ("expected", "realized", "gain")
NO_NEIGHBORS: Mapping[str, Sequence[RoundRecord]] = MappingProxyType({})


def check_rng(rng: object) -> np.random.Generator:
    """``rng`` itself, or ValueError saying how to make one."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
            "pass numpy.random.default_rng(seed_sequence)"
        )
    return rng


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


class EntryPolicy(CheckedSettings, EntryRule):
    """Base class of the registered and plug-in policies: they target every query, so ``topic``
    is ignored (``targeting: topic`` keeps one policy per topic, see `TopicTargeting`).

    Subclasses take ``rng`` first and keyword-only settings, implement ``_decide``, and may
    implement ``_observe``, called once for every new record of the advertiser's own history, in
    order. ``checks`` (see ``market.registry.CheckedSettings``) validates settings before any
    policy is built.
    """

    checks = {"learn_from": one_of(LEARN_FROM)}

    def __init__(self, rng: np.random.Generator, *, learn_from: str = "expected") -> None:
        self.rng = check_rng(rng)
        self.learn_from = self.checked("learn_from", learn_from)
        self._seen = 0

    def decide(
        self,
        history: Sequence[RoundRecord],
        neighbors: Mapping[str, Sequence[RoundRecord]] = NO_NEIGHBORS,
        topic: str | None = None,
    ) -> bool:
        """Enter (True) or stay out (False) this round, from the whole history (any topic)."""
        seen = len(history)
        if seen < self._seen:
            raise ValueError(
                f"history shrank from {self._seen} to {seen} records; histories are "
                "append-only, build a new policy for a new run"
            )
        if seen > self._seen and type(self)._observe is not EntryPolicy._observe:
            for record in history[self._seen : seen]:
                self._observe(record)
        self._seen = seen
        return bool(self._decide(history, neighbors))

    def _observe(self, record: RoundRecord) -> None:  # noqa: B027 (optional hook)
        """Update running statistics with one new record (default: nothing to remember)."""

    @abstractmethod
    def _decide(
        self, history: Sequence[RoundRecord], neighbors: Mapping[str, Sequence[RoundRecord]]
    ) -> bool:
        """The decision, once the statistics include every record in ``history``."""


POLICIES = Registry(
    "policy",
    base=EntryPolicy,
    base_name="agents.EntryPolicy",
    injected=("rng",),
    plugins=True,
    guide="docs/policies.md",
)


def register_policy(name: str) -> Callable[[type[EntryPolicy]], type[EntryPolicy]]:
    """Class decorator: make an ``EntryPolicy`` subclass buildable as ``{type: name}``."""
    return POLICIES.register(name)
