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

import bisect
import itertools
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import mesa
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from agents.advertiser import AdvertiserAgent
from agents.policies import build_policy, spec_parts
from agents.records import RoundRecord
from agents.strategies import STRATEGIES, build_strategy
from market.auction import Bidder, RoundOutcome, mentioned_names, run_round
from market.columns import ADVERTISERS, AUCTIONS, RUN_TABLES
from market.engines.base import Engine, SamplingParams
from market.history import RecentRecords, kept_rounds
from market.mechanisms import build_mechanism
from market.prompts import Query, is_relevant
from market.reporters import (
    ADVERTISER_REPORTERS,
    AUCTION_REPORTERS,
    ROUND_REPORTERS,
    RoundCollector,
)

__all__ = [
    "ADVERTISER_REPORTERS",
    "AUCTION_REPORTERS",
    "ROUND_REPORTERS",
    "MarketModel",
    "RandomStreams",
    "TableRows",
]

STREAMS = ("query", "engine", "reply", "policy", "strategy")
RECORD_FIELDS = tuple(f.name for f in fields(RoundRecord))  # each one an advertisers column


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
    """New rows of the run tables (docs/data.md): one Arrow table per table, in the spec's schema
    (`market.columns`), ready for the run folder's parquet parts."""

    rounds: pa.Table
    advertisers: pa.Table
    auctions: pa.Table

    def __len__(self) -> int:
        return self.rounds.num_rows

    def tables(self) -> dict[str, pa.Table]:
        """Table name -> its Arrow table."""
        return {"rounds": self.rounds, "advertisers": self.advertisers, "auctions": self.auctions}

    def frames(self) -> dict[str, pd.DataFrame]:
        """Table name -> its rows as a pandas frame (as `read_table` gives them back)."""
        return {name: table.to_pandas() for name, table in self.tables().items()}


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
        self._query_cdf = (cdf / cdf[-1]).tolist()
        self._prompt_queries = tuple(Query(q.text, q.topic) for q in self.queries)
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
        self._bidders = [Bidder(a.brand, a.value, a.strategy) for a in self.advertisers]
        self._observers = [Bidder(a.brand, a.value) for a in self.advertisers]
        self._names = tuple(a.name for a in self.advertisers)
        self._relevance: dict[str, dict[str, bool]] = {}  # query topic -> advertiser -> rel

        self.round = 0
        self.query: Any = None  # the round's QuerySpec (text, topic, weight)
        self.outcome: RoundOutcome | None = None
        self.entrant_index: dict[str, int] = {}
        self.entrant_rows = np.zeros(0, dtype=np.intp)  # advertisers' indices, entrant order
        self.observer_rows = np.zeros(0, dtype=np.intp)  # advertisers' indices, observer order
        self.round_seconds = math.nan
        self.relevant_now: dict[str, bool] = {}  # per advertiser, for the round's query
        self.mentioned_now: frozenset[str] = frozenset()  # advertisers named in the reply
        # the round's advertisers rows, column -> one value per advertiser (ADVERTISER_REPORTERS)
        self.columns: dict[str, list] = {}
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
    def _collector() -> RoundCollector:
        """A DataCollector with one named reporter per column of the run tables: Mesa model
        reporters for the rounds, column reporters for the advertisers' and auctions' tables."""
        return RoundCollector(
            model_reporters=ROUND_REPORTERS,
            tables={"advertisers": list(ADVERTISERS.names), "auctions": list(AUCTIONS.names)},
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
        return self.queries[self._query_index(round_index)]

    def _query_index(self, round_index: int) -> int:
        uniform = self.streams.rng("query", round_index).random()
        return bisect.bisect_right(self._query_cdf, uniform)  # searchsorted(side="right")

    def is_relevant(self, name: str) -> bool:
        """Whether the round's query topic is one of the advertiser's: an edge of the bipartite
        advertisers–topics graph."""
        return is_relevant(self.topics_graph.neighbors(name), self.query.topic)

    def _relevant_to(self, topic: str) -> dict[str, bool]:
        """Every advertiser's relevance to a query topic (`is_relevant`), read once per topic."""
        known = self._relevance.get(topic)
        if known is None:
            graph = self.topics_graph
            known = {n: is_relevant(graph.neighbors(n), topic) for n in self._names}
            self._relevance[topic] = known
        return known

    def _bidder(self, index: int) -> Bidder:
        if index not in self._drawing_strategies:
            return self._bidders[index]
        bidder = self._bidders[index]
        strategy = build_strategy(
            self._drawing_strategies[index], self.streams.rng("strategy", index, self.round)
        )
        return Bidder(bidder.brand, bidder.value, strategy)

    def step(self) -> None:
        """One round: query, entry decisions, the auction, histories, data collection."""
        start = time.perf_counter()
        t = self.round
        k = self._query_index(t)
        self.query = self.queries[k]
        # decisions read only past rounds and the query's topic: order-free
        self.agents.do("decide_entry", self.query.topic)
        present, absent = [], []
        for i, agent in enumerate(self.advertisers):
            (present if agent.entering else absent).append(i)
        outcome = run_round(
            self.engine,
            self.mechanism,
            self._prompt_queries[k],
            [self._bidder(i) for i in present],
            self.sampling,
            seed=self.streams.engine_seed(t),
            rng=self.streams.rng("reply", t),
            observers=[self._observers[i] for i in absent] if self.outside_option else (),
        )
        self.outcome = outcome
        self.entrant_index = {name: i for i, name in enumerate(outcome.entrants)}
        self.entrant_rows = np.array(present, dtype=np.intp)
        self.observer_rows = np.array(absent if self.outside_option else (), dtype=np.intp)
        self.relevant_now = self._relevant_to(self.query.topic)
        self.mentioned_now = frozenset(mentioned_names(outcome.reply.text, self._names))
        self.columns = self._advertiser_columns()
        for agent, row in zip(self.advertisers, self._record_rows(), strict=True):
            agent.history.append_row(row)
        self.round_seconds = time.perf_counter() - start
        self.datacollector.collect(self)
        self.datacollector.add_table_rows("advertisers", self.columns)
        self.datacollector.add_table_rows("auctions", self._auction_columns())
        self.round += 1

    def _advertiser_columns(self) -> dict[str, list]:
        """The round's advertisers rows, column by column (one call per `ADVERTISER_REPORTERS`)."""
        return {name: column(self) for name, column in ADVERTISER_REPORTERS.items()}

    def _auction_columns(self) -> dict[str, list]:
        """The round's auctions rows, column by column (one call per `AUCTION_REPORTERS`)."""
        return {name: column(self) for name, column in AUCTION_REPORTERS.items()}

    def _record_rows(self) -> Iterator[tuple]:
        """Each advertiser's `RoundRecord` of the round as a row of its field values, read off
        the round's advertisers columns (her history builds the record when it is read)."""
        return zip(*(self.columns[name] for name in RECORD_FIELDS), strict=True)

    # --- data out, state back in -------------------------------------------------------------

    def drain_rows(self) -> TableRows:
        """The rows collected since the last drain, one frame per run table.

        Reads the DataCollector's columns (Mesa's ``model_vars`` and ``tables``) straight into
        Arrow, then hands the model a fresh collector, so collected rows live only until they are
        written. Only rounds whose step completed are returned: a step cut short (Ctrl-C) may
        have collected part of its round.
        """
        collector, self.datacollector = self.datacollector, self._collector()
        columns = {
            "rounds": collector.model_vars,
            "advertisers": collector.tables["advertisers"],
            "auctions": collector.tables["auctions"],
        }
        return TableRows(
            **{name: _arrow(columns[name], RUN_TABLES[name], self.round) for name in columns}
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
        for agent in self.advertisers:
            agent.history = RecentRecords(self._kept, agent.history)
        self.round = self.steps = done


def _arrow(columns: Mapping[str, list], spec: Any, before: int) -> pa.Table:
    """Collected columns as an Arrow table in ``spec``'s schema, NaN stored as null (as pandas
    frames are written), without the rows of rounds from ``before`` on (a step cut short)."""
    lengths = {len(values) for values in columns.values()}
    rows = min(lengths, default=0)
    cut = (lambda values: values[:rows]) if len(lengths) > 1 else (lambda values: values)
    arrays = [_column(cut(columns[c.name]), c.type) for c in spec.columns]
    table = pa.Table.from_arrays(arrays, schema=spec.schema)
    if rows and columns["round"][rows - 1] >= before:
        table = table.filter(pc.less(table["round"], before))
    return table


def _column(values: list, kind: pa.DataType) -> pa.Array:
    """One collected column as Arrow, NaN stored as null. Consecutive rows holding one shared
    list (a round's entrants, on each of its candidates' rows) are converted once and repeated."""
    if pa.types.is_floating(kind):
        return _floats(np.array(values, dtype=kind.to_pandas_dtype()), kind)
    if not (pa.types.is_list(kind) and values):
        return pa.array(values, type=kind, from_pandas=True)
    if pa.types.is_floating(kind.value_type) and all(
        type(v) is np.ndarray and v.ndim == 1 for v in values
    ):
        return _float_arrays(values, kind)
    ids = np.fromiter(map(id, values), dtype=np.int64, count=len(values))
    new = np.empty(len(values), dtype=bool)
    new[0] = True
    np.not_equal(ids[1:], ids[:-1], out=new[1:])  # a run of rows holding the same list
    if new.all():
        return _lists(values, kind)
    array = _lists([values[i] for i in np.flatnonzero(new).tolist()], kind)
    return array.take(pa.array(np.cumsum(new) - 1))


def _lists(values: list[list], kind: pa.DataType) -> pa.Array:
    """Python lists as an Arrow list column, from their items and offsets (pyarrow's typed
    conversion of nested lists takes ~2 us an item), NaN items stored as null."""
    items = _column(list(itertools.chain.from_iterable(values)), kind.value_type)
    return pa.ListArray.from_arrays(_offsets(values), items, type=kind)


def _float_arrays(values: list[np.ndarray], kind: pa.DataType) -> pa.Array:
    """A list column whose rows are 1-D float arrays (a round's rewards per candidate), as
    `_column` converts it, NaN stored as null, from one concatenated buffer."""
    flat = np.concatenate(values) if len(values) > 1 else np.asarray(values[0])
    return pa.ListArray.from_arrays(_offsets(values), _floats(flat, kind.value_type), type=kind)


def _offsets(values: Sequence[Sequence]) -> pa.Array:
    """Where each row of a list column starts in its items, and where the last one ends."""
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    return pa.array(offsets)


def _floats(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """A float column as Arrow, NaN stored as null: pyarrow's own NaN handling for a Python list
    (``from_pandas=True``) takes microseconds per value once a few NaN are mixed in."""
    nan = np.isnan(values)
    return pa.array(values, type=kind, mask=nan if nan.any() else None)
