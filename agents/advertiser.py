"""Advertisers as Mesa agents: who they are, whether they enter, what they remember.

An agent never calls an engine: the model runs the auction and hands each agent its
`RoundRecord`. Entry is decided by the agent's policy from its own history and from the histories
of its neighbours on the scenario's observation graph (DESIGN.md, "One round", step 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import mesa

from agents.policies import EntryRule
from agents.records import RoundRecord
from agents.strategies import ReportStrategy
from market.prompts import Brand


class _Prefix(Sequence[RoundRecord]):
    """The first ``length`` records of a history, read without copying the list."""

    def __init__(self, records: list[RoundRecord], length: int) -> None:
        self._records = records
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._records[i] for i in range(*index.indices(self._length))]
        if not -self._length <= index < self._length:
            raise IndexError(f"history index {index} out of range for {self._length} records")
        return self._records[index % self._length]


class _NeighborHistories(Mapping[str, Sequence[RoundRecord]]):
    """Her neighbours' histories by name, each read when asked: the live lists, read only."""

    def __init__(self, agent: AdvertiserAgent) -> None:
        self._agent = agent
        self._neighbors: tuple[AdvertiserAgent, ...] = ()
        self._by_name: dict[str, AdvertiserAgent] = {}

    def _names(self) -> dict[str, AdvertiserAgent]:
        if self._agent.neighbors is not self._neighbors:
            self._neighbors = self._agent.neighbors
            self._by_name = {n.name: n for n in self._neighbors}
        return self._by_name

    def __getitem__(self, name: str) -> Sequence[RoundRecord]:
        return self._names()[name].history

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


class AdvertiserAgent(mesa.Agent):
    """One advertiser: a brand with a value scale v_i, an entry policy and a report strategy.

    ``value`` scales her reward r_i(x, y) = v_i · (log π_i(y|x) − log π_ref(y|x)).
    ``neighbors`` are the agents whose histories she observes; the model sets them once all
    agents exist. ``entering`` holds the decision of the current round.
    """

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        description: str,
        topics: Sequence[str],
        value: float,
        policy: EntryRule,
        policy_type: str,
        strategy: ReportStrategy,
    ) -> None:
        super().__init__(model)
        if not name or any(ch.isspace() or ch == "," for ch in name):
            raise ValueError(f"name must be one word without spaces or commas, got {name!r}")
        if not value >= 0:
            raise ValueError(f"value of {name} must be >= 0, got {value}")
        self.name = name
        self.description = description
        self.topics = tuple(topics)
        self.value = float(value)
        self.policy = policy
        self.policy_type = policy_type
        self.strategy = strategy
        self.history: list[RoundRecord] = []
        self.neighbors: tuple[AdvertiserAgent, ...] = ()
        self.entering = False
        self._neighbor_histories = _NeighborHistories(self)

    @property
    def brand(self) -> Brand:
        return Brand(self.name, self.description, self.topics)

    def neighbor_histories(self, rounds: int | None = None) -> Mapping[str, Sequence[RoundRecord]]:
        """The histories she observes by neighbour name (the live lists, read only, each read
        when asked), or their first ``rounds`` records when given."""
        if rounds is None:
            return self._neighbor_histories
        return {n.name: _Prefix(n.history, rounds) for n in self.neighbors}

    def decide_entry(self, topic: str) -> bool:
        """Ask her policy whether to enter this round, whose query has ``topic``; the answer is
        kept in ``entering``."""
        self.entering = bool(self.policy.decide(self.history, self.neighbor_histories(), topic))
        return self.entering

    def replay_entry(self, rounds: int) -> bool:
        """Re-ask her policy the question of round ``rounds`` from the recorded histories (the
        round's topic is the one its record holds).

        Used when resuming a run: it advances the policy's random stream and any state it keeps
        exactly as the original run did, and returns the decision to check against the record.
        """
        return bool(
            self.policy.decide(
                _Prefix(self.history, rounds),
                self.neighbor_histories(rounds),
                self.history[rounds].topic,
            )
        )

    @property
    def last(self) -> RoundRecord:
        if not self.history:
            raise LookupError(f"{self.name} has no recorded round yet")
        return self.history[-1]
