"""The scenario schema: what one simulated market is made of (pydantic v2, unknown keys rejected).

A scenario fixes the engine, the mechanism, the sampling parameters, the query mix, the
advertisers (brand, topics, value scale v_i, entry policy, report strategy), the observation graph
the policies may look at, and named variants (dotted-path overrides of the base scenario).

Validation goes through the same registries the simulation builds from (``market.registry``):
mechanisms, entry policies (registered or plug-in classes), report strategies and networks are
checked by name, by their constructors' signatures and by the classes' own pure validators, so a
scenario that validates can be built, and validating builds nothing. Engines are checked by name
(their classes may import torch). Sizes are bounded (``MAX_ROUNDS``, ``MAX_SEED``, and the
mechanisms' ``MAX_CANDIDATES`` / ``MAX_TOKENS``). Problems are raised as ``FieldError`` and turned
into one-line ``ScenarioError`` messages by ``scenarios.loader``.
"""

from __future__ import annotations

import re
from typing import Any

import networkx as nx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from agents.policies import TARGETING, check_policy
from agents.strategies import STRATEGIES
from market.engines import ENGINES
from market.engines.base import Catalog
from market.mechanisms import MAX_TOKENS, MECHANISMS
from market.prompts import is_relevant
from market.registry import SettingError, SpecError
from scenarios.errors import FieldError, join_path
from scenarios.networks import NETWORKS
from scenarios.paths import split_path

ENGINE_TYPES = tuple(ENGINES)
# Seeds are stored in int64 columns (parquet) and seed numpy's SeedSequence.
MAX_SEED = 2**63 - 1
# Ten million rounds: ~1 hour at the synthetic market's ~3,000 rounds/s and ~10^8 advertiser rows
# with ten advertisers; past that, replicate with seeds (a sweep) instead of one longer run.
MAX_ROUNDS = 10_000_000
# Entropy mixed with the scenario seed for the observation graph, apart from the run's streams.
NETWORK_ENTROPY = 0x6E6574
_ONE_WORD = re.compile(r"^[^\s,]+$")
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _component_error(err: SpecError, what: str) -> FieldError:
    """A registry's SpecError as a FieldError at the same place inside the component spec."""
    return FieldError(err.field, err.problem, err.fix or f"fix the {what} kwargs")


def _not_blank(text: str, fix: str) -> str:
    if not text.strip():
        raise FieldError("", "is empty or only whitespace", fix)
    return text


def _at_most(value: int, maximum: int, name: str, why: str) -> int:
    if value > maximum:
        raise FieldError("", f"{name} {value} is above the limit {maximum:,}", why)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(_Strict):
    """A pluggable component: a registered ``type`` and its constructor ``kwargs``."""

    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class QuerySpec(_Strict):
    """A user query x, its topic, and its weight in the query mix (drawn ∝ weight)."""

    text: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    @field_validator("text")
    @classmethod
    def _a_question(cls, text: str) -> str:
        return _not_blank(text, "write the user's question, e.g. How can I learn the guitar?")

    @field_validator("topic")
    @classmethod
    def _a_topic(cls, topic: str) -> str:
        return _not_blank(topic, "name the query's topic, e.g. music")


class AdvertiserSpec(_Strict):
    """One advertiser: brand name and description (inserted as "<name>, who <description>"),
    the topics she is relevant to, value scale v_i in r_i = v_i · (log π_i − log π_ref), entry
    policy and report strategy."""

    name: str
    description: str = Field(min_length=1)
    topics: list[str] = Field(default_factory=list)
    value: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    policy: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="always"))
    strategy: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="truthful"))

    @field_validator("name")
    @classmethod
    def _one_word(cls, name: str) -> str:
        if not _ONE_WORD.match(name):
            raise FieldError(
                "",
                f"brand name {name!r} must be one word without spaces or commas",
                "write it like MusicMastery",
            )
        return name

    @field_validator("description")
    @classmethod
    def _a_description(cls, description: str) -> str:
        return _not_blank(description, "say what the brand sells, e.g. offering music lessons")

    @field_validator("policy")
    @classmethod
    def _valid_policy(cls, spec: ComponentSpec) -> ComponentSpec:
        targeting = spec.kwargs.get("targeting", "all")
        if targeting not in TARGETING:
            raise FieldError(
                "kwargs.targeting",
                f"unknown targeting {targeting!r}",
                f"use one of: {', '.join(TARGETING)} (topic: one policy per query topic)",
            )
        try:
            check_policy(spec)
        except SpecError as err:
            raise _component_error(err, "policy") from err
        return spec

    @field_validator("strategy")
    @classmethod
    def _valid_strategy(cls, spec: ComponentSpec) -> ComponentSpec:
        try:
            STRATEGIES.check(spec)
        except SpecError as err:
            raise _component_error(err, "strategy") from err
        return spec


class SamplingSpec(_Strict):
    """How candidate replies are sampled (the paper: temperature 0.8, top-p 0.95)."""

    temperature: float = Field(default=0.8, gt=0, allow_inf_nan=False)
    top_p: float = 0.95
    max_new_tokens: int = Field(default=48, ge=1)

    @field_validator("top_p")
    @classmethod
    def _nucleus(cls, top_p: float) -> float:
        if not 0 < top_p <= 1:  # NaN fails too
            raise FieldError(
                "",
                f"top_p must be a number in (0, 1], got {top_p!r}",
                "give a finite number: it keeps the most likely tokens up to that probability; use e.g. 0.95 "
                "(1: full support)",
            )
        return top_p

    @field_validator("max_new_tokens")
    @classmethod
    def _bounded_reply(cls, tokens: int) -> int:
        return _at_most(
            tokens,
            MAX_TOKENS,
            "max_new_tokens",
            "ad replies are tens to hundreds of tokens; a longer reply leaves no room for the "
            "prompt in the embedded model's 8192-token context",
        )


class NetworkSpec(_Strict):
    """The observation graph over advertisers (whose histories a policy may look at)."""

    type: str = "complete"
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_network(self) -> NetworkSpec:
        try:
            NETWORKS.check(self)
        except SpecError as err:
            raise _component_error(err, "network") from err
        return self


class Scenario(_Strict):
    """One simulated market; see the module docstring. ``variants`` maps a variant name to
    ``{dotted.path: value}`` overrides of this scenario (``scenarios.loader.expand_variants``)."""

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    rounds: int = Field(ge=1)
    seed: int = Field(default=0, ge=0)
    engine: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="hf"))
    mechanism: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="mosaic"))
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    queries: list[QuerySpec]
    advertisers: list[AdvertiserSpec]
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    outside_option: bool = False
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _source: str = PrivateAttr(default="<scenario>")

    @field_validator("rounds")
    @classmethod
    def _bounded_rounds(cls, rounds: int) -> int:
        return _at_most(
            rounds,
            MAX_ROUNDS,
            "rounds",
            "a run that long takes hours and fills the disk; run more seeds instead "
            "(admarket sweep)",
        )

    @field_validator("seed")
    @classmethod
    def _int64_seed(cls, seed: int) -> int:
        if seed > MAX_SEED:
            raise FieldError(
                "",
                f"seed {seed} does not fit in 64 bits: seeds are stored as int64, at most "
                f"2^63 - 1 = {MAX_SEED}",
                "use a smaller seed, e.g. seed: 0",
            )
        return seed

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, spec: ComponentSpec) -> ComponentSpec:
        if spec.type not in ENGINES:
            raise FieldError(
                "type", f"unknown engine {spec.type!r}", f"known engines: {', '.join(ENGINES)}"
            )
        return spec

    @field_validator("mechanism")
    @classmethod
    def _valid_mechanism(cls, spec: ComponentSpec) -> ComponentSpec:
        try:
            MECHANISMS.check(spec)
        except SpecError as err:
            raise _component_error(err, "mechanism") from err
        return spec

    @field_validator("queries")
    @classmethod
    def _some_queries(cls, queries: list[QuerySpec]) -> list[QuerySpec]:
        if not queries:
            raise FieldError(
                "",
                "no queries",
                "add at least one {text, topic} or queries: {catalog: {topics: [music]}}",
            )
        seen: dict[str, int] = {}
        for index, query in enumerate(queries):
            if query.text in seen:
                raise FieldError(
                    join_path(index, "text"),
                    f"duplicate query {query.text!r} (also queries.{seen[query.text]})",
                    "list each query once and raise its weight instead",
                )
            seen[query.text] = index
        return queries

    @field_validator("advertisers")
    @classmethod
    def _some_unique_advertisers(cls, advertisers: list[AdvertiserSpec]) -> list[AdvertiserSpec]:
        if not advertisers:
            raise FieldError(
                "",
                "no advertisers",
                "add at least one {name, description, topics} or advertisers: {catalog: ...}",
            )
        seen: dict[str, int] = {}
        for index, advertiser in enumerate(advertisers):
            if advertiser.name in seen:
                raise FieldError(
                    join_path(index, "name"),
                    f"duplicate advertiser name {advertiser.name!r} "
                    f"(also advertisers.{seen[advertiser.name]})",
                    "give every advertiser its own name",
                )
            seen[advertiser.name] = index
        return advertisers

    @field_validator("variants")
    @classmethod
    def _well_formed_variants(
        cls, variants: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        for name, overrides in variants.items():
            if not _VARIANT_NAME.match(name):
                raise FieldError(
                    name,
                    f"variant name {name!r} must use letters, digits, '_', '-' or '.'",
                    "rename it, e.g. no_offset",
                )
            for path in overrides:
                try:
                    head = split_path(path)[0]
                except FieldError as err:
                    raise FieldError(join_path(name, path), err.problem, err.fix) from err
                if head in ("variants", "name"):
                    raise FieldError(
                        join_path(name, path),
                        f"a variant cannot override {head!r}",
                        "override the market's settings (mechanism, engine, advertisers, ...)",
                    )
        return variants

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        topics = {t for a in self.advertisers for t in a.topics} | {q.topic for q in self.queries}
        for index, advertiser in enumerate(self.advertisers):
            if advertiser.name in topics:
                raise FieldError(
                    join_path("advertisers", index, "name"),
                    f"advertiser name {advertiser.name!r} is also a topic",
                    "rename the advertiser or the topic: graph nodes must be distinct",
                )
        try:
            network = NETWORKS.load(self.network.type)
            network.check_nodes(self.network.kwargs, len(self.advertisers))
        except SettingError as err:
            raise FieldError(join_path("network.kwargs", err.name), err.problem, err.fix) from err
        return self

    def __eq__(self, other: object) -> bool:
        """Equal content; where a scenario was loaded from does not count."""
        if not isinstance(other, Scenario):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    @property
    def source(self) -> str:
        """Where the scenario came from (a file, a built-in name), for error messages."""
        return self._source

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic of a query or an advertiser, in order of first appearance."""
        seen = [q.topic for q in self.queries] + [t for a in self.advertisers for t in a.topics]
        return tuple(dict.fromkeys(seen))

    def advertiser(self, name: str) -> AdvertiserSpec:
        """The advertiser called ``name``."""
        for advertiser in self.advertisers:
            if advertiser.name == name:
                return advertiser
        known = ", ".join(a.name for a in self.advertisers)
        raise ValueError(f"no advertiser named {name!r} in scenario {self.name!r}; known: {known}")

    def is_relevant(self, advertiser_name: str, topic: str) -> bool:
        """Whether the topic is one of the advertiser's topics (an edge of ``topics_graph``)."""
        return is_relevant(self.advertiser(advertiser_name).topics, topic)

    def topics_graph(self) -> nx.Graph:
        """Bipartite advertisers–topics graph: advertisers have ``bipartite=0, kind="advertiser"``,
        topics ``bipartite=1, kind="topic"``; an edge means the advertiser is relevant to it."""
        graph = nx.Graph()
        graph.add_nodes_from((a.name for a in self.advertisers), bipartite=0, kind="advertiser")
        graph.add_nodes_from(self.topics, bipartite=1, kind="topic")
        graph.add_edges_from((a.name, t) for a in self.advertisers for t in a.topics)
        return graph

    def catalog(self) -> Catalog:
        """The world knowledge a synthetic engine needs: brand -> topics, query -> topic."""
        return Catalog(
            brand_topics={a.name: tuple(a.topics) for a in self.advertisers},
            query_topics={q.text: q.topic for q in self.queries},
        )

    def observation_graph(self) -> nx.Graph:
        """Who observes whom, over advertiser names (``network``). Random graphs draw from a
        generator seeded by ``seed`` alone, so every variant of a scenario sees the same graph."""
        names = [a.name for a in self.advertisers]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, NETWORK_ENTROPY]))
        graph = NETWORKS.build(self.network).graph(len(names), rng)
        graph.remove_edges_from(list(nx.selfloop_edges(graph)))
        return nx.relabel_nodes(graph, dict(enumerate(names)))
