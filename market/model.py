"""The market: advertisers (Mesa agents) in repeated LLM auctions (DESIGN.md, "One round").

Randomness comes from named streams of one root ``SeedSequence`` (DESIGN.md, "Randomness"): the
query mix, each round's engine seed, each round's reply draw and each advertiser's policy (and
report strategy, when it draws). Per-round streams are addressed by round index, so round t sees
the same query and the same engine seed whatever happened before it: two variants that differ only
in mechanism settings see the same queries, and the same candidates until their entry decisions
differ (common random numbers), and a resumed run needs no fast-forwarding for them. Policies keep
one stream for the whole run; `MarketModel.restore` replays their decisions to bring them back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np
import pandas as pd

from agents.advertiser import AdvertiserAgent
from agents.policies import build_policy, spec_parts
from agents.records import RoundRecord
from agents.strategies import STRATEGIES, build_strategy
from market.auction import Bidder, RoundOutcome, mentions, run_round
from market.columns import AUCTIONS
from market.engines.base import Engine, SamplingParams
from market.history import RecentRecords, kept_rounds
from market.mechanisms import build_mechanism
from market.prompts import Query, is_relevant
from market.reporters import ADVERTISER_REPORTERS, ROUND_REPORTERS

__all__ = ["ADVERTISER_REPORTERS", "ROUND_REPORTERS", "MarketModel", "RandomStreams", "TableRows"]

STREAMS = ("query", "engine", "reply", "policy", "strategy")


class RandomStreams:
    """Independent named streams spawned from one root seed, addressed by index.

    ``SeedSequence(root).spawn(len(STREAMS))`` gives one child per name; the k-th sub-stream of a
    name is that child's k-th spawn, built directly from its spawn key so it can be reached in
    any order (round t without rounds 0..t-1).
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        children = np.random.SeedSequence(self.seed).spawn(len(STREAMS))
        self._children = dict(zip(STREAMS, children, strict=True))

    def sequence(self, name: str, *index: int) -> np.random.SeedSequence:
        parent = self._children[name]
        return np.random.SeedSequence(
            parent.entropy, spawn_key=(*parent.spawn_key, *index), pool_size=parent.pool_size
        )

    def rng(self, name: str, *index: int) -> np.random.Generator:
        return np.random.default_rng(self.sequence(name, *index))

    def engine_seed(self, round_index: int) -> int:
        """The engine's sampling seed of a round: independent of every entry decision."""
        return int(self.sequence("engine", round_index).generate_state(1)[0])


@dataclass(frozen=True)
class TableRows:
    """New rows of the run tables (docs/data.md), one frame per table, columns in spec order."""

    rounds: pd.DataFrame
    advertisers: pd.DataFrame
    auctions: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rounds)

    def frames(self) -> dict[str, pd.DataFrame]:
        """Table name -> its frame."""
        return {"rounds": self.rounds, "advertisers": self.advertisers, "auctions": self.auctions}


class MarketModel(mesa.Model):
    """Repeated auctions of one scenario variant under one root seed.

    ``scenario`` is a resolved scenario (one variant); ``engine`` is injected so that variants
    share one engine and its cache. ``seed`` defaults to the scenario's.
    """

    def __init__(
        self, scenario: Any, engine: Engine, *, seed: int | None = None, variant: str = "base"
    ) -> None:
        root_seed = scenario.seed if seed is None else seed
        self.streams = RandomStreams(root_seed)
        super().__init__(seed=self.streams.seed)
        self.scenario = scenario
        self.engine = engine
        self.variant = variant
        self.root_seed = self.streams.seed
        self.mechanism = build_mechanism(scenario.mechanism)
        self.sampling = SamplingParams(
            temperature=scenario.sampling.temperature,
            top_p=scenario.sampling.top_p,
            max_new_tokens=scenario.sampling.max_new_tokens,
        )
        self.queries = tuple(scenario.queries)  # validated: non-empty, weights > 0
        weights = np.array([q.weight for q in self.queries], dtype=float)
        # numpy's Generator.choice(p=...) draws one uniform against this same normalised CDF;
        # drawing it directly gives the same query without choice's per-call validation
        cdf = (weights / weights.sum()).cumsum()
        self._query_cdf = cdf / cdf[-1]
        self.outside_option = bool(scenario.outside_option)
        self.topics_graph = scenario.topics_graph()
        try:
            self.advertisers = [
                self._make_agent(i, spec) for i, spec in enumerate(scenario.advertisers)
            ]
        except BaseException:
            self.close()  # the agents built so far would keep this model alive
            raise
        self._kept = kept_rounds([spec.policy for spec in scenario.advertisers])
        for agent in self.advertisers:
            agent.history = RecentRecords(self._kept)
        # strategies that draw get a fresh stream each round, so a resumed run draws the same
        self._drawing_strategies = {
            i: spec.strategy
            for i, spec in enumerate(scenario.advertisers)
            if STRATEGIES[spec_parts(spec.strategy, "strategy")[0]].needs_rng
        }
        self._connect(scenario.observation_graph())

        self.round = 0
        self.query: Any = None  # the round's QuerySpec (text, topic, weight)
        self.outcome: RoundOutcome | None = None
        self.entrant_index: dict[str, int] = {}
        self.round_seconds = math.nan
        self.relevant_now: dict[str, bool] = {}  # per advertiser, for the round's query
        self.mentioned_now: frozenset[str] = frozenset()  # advertisers named in the reply
        # per entrant: (expected reward without her, offset C_i); per agent: this round's record
        self.counterfactuals: dict[str, tuple[float, float]] = {}
        self.round_records: dict[AdvertiserAgent, RoundRecord] = {}
        self.datacollector = self._collector()

    def close(self) -> None:
        """Let this model be freed once its caller drops it.

        Mesa 3.3 counts agent ids in a class-level dict keyed by model (``Agent._ids``), which
        keeps every model that ever had an agent alive, with its agents, histories and collected
        rows: a long sweep grows without bound. Call this when a model is done (or use the model
        as a context manager); the model is not usable afterwards.
        """
        mesa.Agent._ids.pop(self, None)

    def __enter__(self) -> MarketModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _collector() -> mesa.DataCollector:
        """A DataCollector with one named reporter per column of the run tables."""
        return mesa.DataCollector(
            model_reporters=ROUND_REPORTERS,
            agent_reporters=ADVERTISER_REPORTERS,
            tables={"auctions": list(AUCTIONS.names)},
        )

    def _make_agent(self, index: int, spec: Any) -> AdvertiserAgent:
        policy_type, _ = spec_parts(spec.policy, "policy")
        return AdvertiserAgent(
            self,
            name=spec.name,
            description=spec.description,
            topics=tuple(spec.topics),
            value=float(spec.value),
            policy=build_policy(spec.policy, self.streams.rng("policy", index)),
            policy_type=policy_type,
            strategy=build_strategy(spec.strategy, self.streams.rng("strategy", index)),
        )

    def _connect(self, graph: Any) -> None:
        by_name = {a.name: a for a in self.advertisers}
        for agent in self.advertisers:
            if agent.name in graph:
                agent.neighbors = tuple(
                    by_name[n] for n in sorted(graph.neighbors(agent.name)) if n in by_name
                )

    # --- one round ---------------------------------------------------------------------------

    def draw_query(self, round_index: int) -> Any:
        """The query of a round, drawn ∝ weight from the query mix's own per-round stream."""
        uniform = self.streams.rng("query", round_index).random()
        return self.queries[int(self._query_cdf.searchsorted(uniform, side="right"))]

    def is_relevant(self, name: str) -> bool:
        """Whether the round's query topic is one of the advertiser's: an edge of the bipartite
        advertisers–topics graph."""
        return is_relevant(self.topics_graph.neighbors(name), self.query.topic)

    def _bidder(self, index: int) -> Bidder:
        agent = self.advertisers[index]
        strategy = agent.strategy
        if index in self._drawing_strategies:
            strategy = build_strategy(
                self._drawing_strategies[index], self.streams.rng("strategy", index, self.round)
            )
        return Bidder(agent.brand, agent.value, strategy)

    def step(self) -> None:
        """One round: query, entry decisions, the auction, histories, data collection."""
        start = time.perf_counter()
        t = self.round
        self.query = self.draw_query(t)
        # decisions read only past rounds and the query's topic: order-free
        self.agents.shuffle_do("decide_entry", self.query.topic)
        present = [i for i, a in enumerate(self.advertisers) if a.entering]
        absent = [a for a in self.advertisers if not a.entering]
        outcome = run_round(
            self.engine,
            self.mechanism,
            Query(self.query.text, self.query.topic),
            [self._bidder(i) for i in present],
            self.sampling,
            seed=self.streams.engine_seed(t),
            rng=self.streams.rng("reply", t),
            observers=[Bidder(a.brand, a.value) for a in absent] if self.outside_option else (),
        )
        self.outcome = outcome
        self.entrant_index = {name: i for i, name in enumerate(outcome.entrants)}
        self.relevant_now = {a.name: self.is_relevant(a.name) for a in self.advertisers}
        self.mentioned_now = frozenset(
            a.name for a in self.advertisers if mentions(outcome.reply.text, a.name)
        )
        self.counterfactuals = dict(
            zip(
                outcome.entrants,
                zip(
                    outcome.expected_rewards_without.tolist(), outcome.offsets.tolist(), strict=True
                ),
                strict=True,
            )
        )
        self.round_records = {agent: self._record_for(agent, outcome) for agent in self.advertisers}
        for agent, record in self.round_records.items():
            agent.record(record)
        self.round_seconds = time.perf_counter() - start
        self.datacollector.collect(self)
        self._collect_auction()
        self.round += 1

    def _record_for(self, agent: AdvertiserAgent, outcome: RoundOutcome) -> RoundRecord:
        said = agent.name in self.mentioned_now
        relevant = self.relevant_now[agent.name]
        i = self.entrant_index.get(agent.name)
        if i is None:
            outside = math.nan
            if agent.name in outcome.observers:
                outside = float(outcome.outside_rewards[outcome.observers.index(agent.name)])
            return RoundRecord(
                self.round,
                entered=False,
                relevant=relevant,
                outside_reward=outside,
                mentioned=said,
                topic=self.query.topic,
            )
        paid = float(outcome.payments[i])
        realized = float(outcome.realized_rewards[i])
        return RoundRecord(
            self.round,
            entered=True,
            relevant=relevant,
            expected_reward=float(outcome.expected_rewards[i]),
            payment=paid,
            utility=float(outcome.utilities[i]),
            realized_reward=realized,
            realized_utility=realized - paid,
            mentioned=said,
            topic=self.query.topic,
            expected_reward_without=float(outcome.expected_rewards_without[i]),
        )

    def _collect_auction(self) -> None:
        outcome = self.outcome
        rewards = outcome.rewards.T.tolist()  # [candidate][entrant]
        log_ref, log_gen = outcome.log_ref.tolist(), outcome.log_gen.tolist()
        allocation = outcome.allocation.tolist()
        for j, candidate in enumerate(outcome.candidates):
            self.datacollector.add_table_row(
                "auctions",
                {
                    "variant": self.variant,
                    "seed": self.root_seed,
                    "round": self.round,
                    "candidate": j,
                    "text": candidate.text,
                    "n_tokens": len(candidate.token_ids),
                    "log_ref": log_ref[j],
                    "log_gen": log_gen[j],
                    "allocation": allocation[j],
                    "returned": j == outcome.returned,
                    "rewards": rewards[j],
                    "entrants": list(outcome.entrants),
                },
            )

    # --- data out, state back in -------------------------------------------------------------

    def drain_rows(self) -> TableRows:
        """The rows collected since the last drain, one frame per run table.

        Reads the DataCollector through Mesa's public frames, then hands the model a fresh one,
        so collected rows live only until they are written. Only rounds whose step completed
        are returned: a step cut short (Ctrl-C) may have collected part of its round.
        """
        collector, self.datacollector = self.datacollector, self._collector()
        frames = {
            "rounds": collector.get_model_vars_dataframe(),
            "advertisers": collector.get_agent_vars_dataframe().reset_index(drop=True),
            "auctions": collector.get_table_dataframe("auctions"),
        }
        done = {}
        for name, frame in frames.items():
            if len(frame):
                frame = frame[frame["round"] < self.round].reset_index(drop=True)
            done[name] = frame
        return TableRows(**done)

    def restore(self, histories: Mapping[str, Sequence[RoundRecord]]) -> None:
        """Continue a run from recorded histories (every advertiser, rounds 0..T-1).

        Each policy is asked again the question of every recorded round, oldest first, so its
        random stream and internal state end exactly where the original run left them; a
        decision that differs from the record means the run cannot be resumed faithfully.
        """
        if self.round != 0:
            raise RuntimeError("restore() needs a fresh model (no round run yet)")
        lengths = {a.name: len(histories.get(a.name, ())) for a in self.advertisers}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"histories must cover the same rounds for every advertiser: {lengths}"
            )
        done = next(iter(lengths.values()), 0)
        for agent in self.advertisers:
            agent.history = list(histories[agent.name]) if done else []
        for t in range(done):
            for agent in self.advertisers:
                if agent.replay_entry(t) != agent.history[t].entered:
                    raise RuntimeError(
                        f"resume replay diverged: {agent.name}'s policy decides differently in "
                        f"round {t} than the recorded run; the run folder and the code disagree"
                    )
        for agent in self.advertisers:
            agent.history = RecentRecords(self._kept, agent.history)
        self.round = self.steps = done
