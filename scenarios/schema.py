"""The scenario schema: what one simulated market is made of (pydantic v2, unknown keys rejected).

A scenario fixes the engine, the mechanism, the sampling parameters, the query mix, the
advertisers (brand, topics, value scale v_i, entry policy, report strategy), the observation graph
the policies may look at, and named variants (dotted-path overrides of the base scenario).

Validation goes through the same registries the simulation builds from: the mechanism registry
(``market.mechanisms.build_mechanism``), the policy and strategy registries (``agents``), and the
list of engine types — so a scenario that validates can be built. Problems are raised as
``FieldError`` and turned into one-line ``ScenarioError`` messages by ``scenarios.loader``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any

import networkx as nx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from agents.policies import POLICIES, TARGETING, build_policy
from agents.strategies import STRATEGIES, build_strategy
from market.engines.base import Catalog
from market.mechanisms import MECHANISMS, build_mechanism
from market.prompts import is_relevant
from scenarios.errors import FieldError, join_path
from scenarios.paths import split_path

ENGINE_TYPES = ("hf", "synthetic", "vllm")
NETWORK_TYPES = ("complete", "ring", "watts_strogatz", "erdos_renyi", "none")
NETWORK_KWARGS = {
    "complete": (),
    "ring": (),
    "watts_strogatz": ("k", "p"),
    "erdos_renyi": ("p",),
    "none": (),
}
# Entropy mixed with the scenario seed for the observation graph, apart from the run's streams.
NETWORK_ENTROPY = 0x6E6574
_ONE_WORD = re.compile(r"^[^\s,]+$")
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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

    @field_validator("policy")
    @classmethod
    def _buildable_policy(cls, spec: ComponentSpec) -> ComponentSpec:
        if spec.type not in POLICIES:
            raise FieldError(
                "type", f"unknown policy {spec.type!r}", f"known policies: {', '.join(POLICIES)}"
            )
        targeting = spec.kwargs.get("targeting", "all")
        if targeting not in TARGETING:
            raise FieldError(
                "kwargs.targeting",
                f"unknown targeting {targeting!r}",
                f"use one of: {', '.join(TARGETING)} (topic: one policy per query topic)",
            )
        try:
            build_policy(spec, np.random.default_rng(0))
        except ValueError as err:
            raise FieldError("kwargs", str(err), "fix the policy kwargs") from err
        return spec

    @field_validator("strategy")
    @classmethod
    def _buildable_strategy(cls, spec: ComponentSpec) -> ComponentSpec:
        if spec.type not in STRATEGIES:
            raise FieldError(
                "type",
                f"unknown strategy {spec.type!r}",
                f"known strategies: {', '.join(STRATEGIES)}",
            )
        try:
            build_strategy(spec, np.random.default_rng(0))
        except ValueError as err:
            raise FieldError("kwargs", str(err), "fix the strategy kwargs") from err
        return spec


class SamplingSpec(_Strict):
    """How candidate replies are sampled (the paper: temperature 0.8, top-p 0.95)."""

    temperature: float = Field(default=0.8, gt=0, allow_inf_nan=False)
    top_p: float = Field(default=0.95, gt=0, le=1, allow_inf_nan=False)
    max_new_tokens: int = Field(default=48, ge=1)


class NetworkSpec(_Strict):
    """The observation graph over advertisers (whose histories a policy may look at)."""

    type: str = "complete"
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, kind: str) -> str:
        if kind not in NETWORK_TYPES:
            raise FieldError(
                "", f"unknown network {kind!r}", f"known networks: {', '.join(NETWORK_TYPES)}"
            )
        return kind

    @model_validator(mode="after")
    def _known_kwargs(self) -> NetworkSpec:
        valid = NETWORK_KWARGS[self.type]
        for key in self.kwargs:
            if key not in valid:
                raise FieldError(
                    join_path("kwargs", key),
                    f"network {self.type!r} takes no kwarg {key!r}",
                    f"valid kwargs: {', '.join(valid) or 'none'}",
                )
        p = self.kwargs.get("p", 0.5)
        if not (_is_number(p) and 0 <= p <= 1):
            raise FieldError("kwargs.p", f"must be a probability in [0, 1], got {p!r}", "e.g. 0.3")
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

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, spec: ComponentSpec) -> ComponentSpec:
        if spec.type not in ENGINE_TYPES:
            raise FieldError(
                "type", f"unknown engine {spec.type!r}", f"known engines: {', '.join(ENGINE_TYPES)}"
            )
        return spec

    @field_validator("mechanism")
    @classmethod
    def _buildable_mechanism(cls, spec: ComponentSpec) -> ComponentSpec:
        if spec.type not in MECHANISMS:
            raise FieldError(
                "type",
                f"unknown mechanism {spec.type!r}",
                f"known mechanisms: {', '.join(MECHANISMS)}",
            )
        known = [f.name for f in dataclasses.fields(MECHANISMS[spec.type])]
        for key in spec.kwargs:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise FieldError(
                    join_path("kwargs", key),
                    f"mechanism {spec.type!r} has no kwarg {key!r}",
                    (f"did you mean {close[0]!r}? " if close else "")
                    + f"valid kwargs: {', '.join(known)}",
                )
        tau = spec.kwargs.get("tau", 1.0)
        if not (_is_number(tau) and math.isfinite(tau) and tau > 0):
            raise FieldError(
                "kwargs.tau",
                f"tau must be a finite number > 0, got {tau!r}",
                "tau weighs the reference LLM (eq. 1); use e.g. tau: 1.0",
            )
        try:
            build_mechanism({"type": spec.type, "kwargs": dict(spec.kwargs)})
        except ValueError as err:
            raise FieldError("kwargs", str(err), "fix the mechanism kwargs") from err
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
        if self.network.type == "watts_strogatz":
            k = self.network.kwargs.get("k", 2)
            n = len(self.advertisers)
            if not (isinstance(k, int) and not isinstance(k, bool) and 2 <= k < n):
                raise FieldError(
                    "network.kwargs.k",
                    f"k (neighbors per node) must be an integer in [2, {n - 1}] for {n} "
                    f"advertisers, got {k!r}",
                    "lower k or use network type complete",
                )
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
        kind, kwargs = self.network.type, self.network.kwargs
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, NETWORK_ENTROPY]))
        if kind == "complete":
            graph = nx.complete_graph(len(names))
        elif kind == "ring":
            graph = nx.cycle_graph(len(names))
        elif kind == "watts_strogatz":
            graph = nx.watts_strogatz_graph(
                len(names), kwargs.get("k", 2), kwargs.get("p", 0.1), seed=rng
            )
        elif kind == "erdos_renyi":
            graph = nx.gnp_random_graph(len(names), kwargs.get("p", 0.5), seed=rng)
        else:
            graph = nx.empty_graph(len(names))
        graph.remove_edges_from(list(nx.selfloop_edges(graph)))
        return nx.relabel_nodes(graph, dict(enumerate(names)))
