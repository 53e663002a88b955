"""Topic targeting: one independent copy of a policy per query topic.

Every policy spec takes ``targeting`` (``"all"``, the default, or ``"topic"``). ``"all"`` decides
from the whole history whatever the query; ``"topic"`` wraps the policy in `TopicTargeting`, which
keeps one copy per query topic, each learning only from the rounds of its topic, so an advertiser
can learn to enter music auctions and stay out of travel ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.policies.base import NO_NEIGHBORS, EntryPolicy, EntryRule, check_rng
from agents.records import RoundRecord

TARGETING = ("all", "topic")


def check_targeting(value: Any) -> str:
    """The ``targeting`` setting of a policy spec, or ValueError naming the valid values."""
    if value not in TARGETING:
        raise ValueError(
            f"targeting must be one of {', '.join(repr(t) for t in TARGETING)}, got {value!r}"
        )
    return value


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
        self.rng = check_rng(rng)
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
