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

from agents.advertiser import AdvertiserAgent
from agents.policies import build_policy, spec_parts
from agents.records import RoundRecord
from agents.strategies import STRATEGIES, build_strategy
from market.auction import Bidder, RoundOutcome, mentions, run_round
from market.columns import AUCTION_COLUMNS
from market.engines.base import Engine, SamplingParams
from market.mechanisms import build_mechanism
from market.prompts import Query, is_relevant

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


# --- DataCollector reporters: one small function per column of docs/data.md -------------------


def _outcome(model: MarketModel) -> RoundOutcome:
    if model.outcome is None:
        raise RuntimeError("no round has run yet: call step() before collecting")
    return model.outcome


def variant(model: MarketModel) -> str:
    return model.variant


def seed(model: MarketModel) -> int:
    return model.root_seed


def round_index(model: MarketModel) -> int:
    return model.round


def query_text(model: MarketModel) -> str:
    return model.query.text


def query_topic(model: MarketModel) -> str:
    return model.query.topic


def mechanism_name(model: MarketModel) -> str:
    return _outcome(model).mechanism


def generator(model: MarketModel) -> str:
    return _outcome(model).generator


def n_entrants(model: MarketModel) -> int:
    return len(_outcome(model).entrants)


def entrants(model: MarketModel) -> list[str]:
    return list(_outcome(model).entrants)


def n_relevant_entrants(model: MarketModel) -> int:
    return sum(model.is_relevant(name) for name in _outcome(model).entrants)


def n_irrelevant_entrants(model: MarketModel) -> int:
    return n_entrants(model) - n_relevant_entrants(model)


def n_candidates(model: MarketModel) -> int:
    return len(_outcome(model).candidates)


def revenue(model: MarketModel) -> float:
    return _outcome(model).revenue


def welfare(model: MarketModel) -> float:
    return _outcome(model).welfare


def expected_welfare(model: MarketModel) -> float:
    return _outcome(model).expected_welfare


def usefulness(model: MarketModel) -> float:
    return _outcome(model).usefulness


def reply_logprob_ref(model: MarketModel) -> float:
    return _outcome(model).reply_logprob_ref


def reply_tokens(model: MarketModel) -> int:
    return _outcome(model).reply_tokens


def reply_text(model: MarketModel) -> str:
    return _outcome(model).reply.text


def ess(model: MarketModel) -> float:
    return _outcome(model).ess


def mentioned(model: MarketModel) -> list[str]:
    return list(_outcome(model).mentioned)


def engine_seconds(model: MarketModel) -> float:
    return _outcome(model).engine_seconds


def round_seconds(model: MarketModel) -> float:
    return model.round_seconds


ROUND_REPORTERS = {
    "variant": variant,
    "seed": seed,
    "round": round_index,
    "query": query_text,
    "topic": query_topic,
    "mechanism": mechanism_name,
    "generator": generator,
    "n_entrants": n_entrants,
    "entrants": entrants,
    "n_relevant_entrants": n_relevant_entrants,
    "n_irrelevant_entrants": n_irrelevant_entrants,
    "n_candidates": n_candidates,
    "revenue": revenue,
    "welfare": welfare,
    "expected_welfare": expected_welfare,
    "usefulness": usefulness,
    "reply_logprob_ref": reply_logprob_ref,
    "reply_tokens": reply_tokens,
    "reply_text": reply_text,
    "ess": ess,
    "mentioned": mentioned,
    "engine_seconds": engine_seconds,
    "round_seconds": round_seconds,
}


def _entrant_index(agent: AdvertiserAgent) -> int | None:
    return agent.model.entrant_index.get(agent.name)


def agent_variant(agent: AdvertiserAgent) -> str:
    return agent.model.variant


def agent_seed(agent: AdvertiserAgent) -> int:
    return agent.model.root_seed


def agent_round(agent: AdvertiserAgent) -> int:
    return agent.last.round


def advertiser(agent: AdvertiserAgent) -> str:
    return agent.name


def value(agent: AdvertiserAgent) -> float:
    return agent.value


def policy(agent: AdvertiserAgent) -> str:
    return agent.policy_type


def entered(agent: AdvertiserAgent) -> bool:
    return agent.last.entered


def relevant(agent: AdvertiserAgent) -> bool:
    return agent.last.relevant


def agent_topic(agent: AdvertiserAgent) -> str:
    return agent.last.topic


def payment(agent: AdvertiserAgent) -> float:
    return agent.last.payment


def expected_reward(agent: AdvertiserAgent) -> float:
    return agent.last.expected_reward


def expected_reward_without(agent: AdvertiserAgent) -> float:
    i = _entrant_index(agent)
    return math.nan if i is None else float(agent.model.outcome.expected_rewards_without[i])


def utility(agent: AdvertiserAgent) -> float:
    return agent.last.utility


def realized_reward(agent: AdvertiserAgent) -> float:
    return agent.last.realized_reward


def realized_utility(agent: AdvertiserAgent) -> float:
    return agent.last.realized_utility


def outside_reward(agent: AdvertiserAgent) -> float:
    return agent.last.outside_reward


def agent_mentioned(agent: AdvertiserAgent) -> bool:
    return agent.last.mentioned


def offset(agent: AdvertiserAgent) -> float:
    i = _entrant_index(agent)
    return math.nan if i is None else float(agent.model.outcome.offsets[i])


ADVERTISER_REPORTERS = {
    "variant": agent_variant,
    "seed": agent_seed,
    "round": agent_round,
    "advertiser": advertiser,
    "value": value,
    "policy": policy,
    "entered": entered,
    "relevant": relevant,
    "topic": agent_topic,
    "payment": payment,
    "expected_reward": expected_reward,
    "expected_reward_without": expected_reward_without,
    "utility": utility,
    "realized_reward": realized_reward,
    "realized_utility": realized_utility,
    "outside_reward": outside_reward,
    "mentioned": agent_mentioned,
    "offset": offset,
}


@dataclass(frozen=True)
class TableRows:
    """Rows for the three output tables (docs/data.md), one dict per row."""

    rounds: list[dict[str, Any]]
    advertisers: list[dict[str, Any]]
    auctions: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.rounds)


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
        self._query_probabilities = weights / weights.sum()
        self.outside_option = bool(scenario.outside_option)
        self.topics_graph = scenario.topics_graph()
        self.advertisers = [
            self._make_agent(i, spec) for i, spec in enumerate(scenario.advertisers)
        ]
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
        self.datacollector = mesa.DataCollector(
            model_reporters=ROUND_REPORTERS,
            agent_reporters=ADVERTISER_REPORTERS,
            tables={"auctions": list(AUCTION_COLUMNS)},
        )
        self._drained_rounds = self._drained_steps = self._drained_auction_rows = 0

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
        rng = self.streams.rng("query", round_index)
        return self.queries[int(rng.choice(len(self.queries), p=self._query_probabilities))]

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
        for agent in self.advertisers:
            agent.record(self._record_for(agent, outcome))
        self.round_seconds = time.perf_counter() - start
        self.datacollector.collect(self)
        self._collect_auction()
        self.round += 1

    def _record_for(self, agent: AdvertiserAgent, outcome: RoundOutcome) -> RoundRecord:
        said = mentions(outcome.reply.text, agent.name)
        relevant = self.is_relevant(agent.name)
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
                    "log_ref": float(outcome.log_ref[j]),
                    "log_gen": float(outcome.log_gen[j]),
                    "allocation": float(outcome.allocation[j]),
                    "returned": j == outcome.returned,
                    "rewards": [float(r) for r in outcome.rewards[:, j]],
                    "entrants": list(outcome.entrants),
                },
            )

    # --- data out, state back in -------------------------------------------------------------

    def drain_rows(self) -> TableRows:
        """The rows collected since the last drain, ready for the run folder's tables.

        Reads only what is new: the model reporters' lists from the last drained round on, the
        agent records of the steps since the last drain (mesa keeps them per step in
        ``_agent_records``), and the new rows of the auctions table. Only rounds whose step
        completed are returned.
        """
        collector = self.datacollector
        stop = len(collector.model_vars["round"])
        rounds = [
            {name: collector.model_vars[name][k] for name in ROUND_REPORTERS}
            for k in range(self._drained_rounds, stop)
        ]
        advertisers = [
            dict(zip(ADVERTISER_REPORTERS, record[2:], strict=True))  # (step, agent id, ...)
            for step in range(self._drained_steps + 1, self.steps + 1)
            for record in collector._agent_records.get(step, ())
        ]
        table = collector.tables["auctions"]
        end = len(table["round"])
        auctions = [
            {name: table[name][k] for name in AUCTION_COLUMNS}
            for k in range(self._drained_auction_rows, end)
        ]
        self._drained_rounds, self._drained_auction_rows = stop, end
        self._drained_steps = self.steps
        # a step cut short (Ctrl-C) may have collected part of its round: leave that round out
        return TableRows(
            rounds=[r for r in rounds if r["round"] < self.round],
            advertisers=[r for r in advertisers if r["round"] < self.round],
            auctions=[r for r in auctions if r["round"] < self.round],
        )

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
        self.round = self.steps = self._drained_steps = done
