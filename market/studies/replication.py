"""The paper's one-shot study (Sec. 6, App. C) as a study of the runner: its own rows, not a
second simulator.

Each *instance* is one query with two relevant advertisers who always enter (App. C.1). The
study's variants are the scenario's generators (π_con "context", π_ref "baseline"); a replicate
(one generator under the run's root seed) has one round per instance × seed index: one candidate
pool of M_max replies, drawn once, of which every M of the grid uses the first M (nested
candidate sets, `market.engines.nested.NestedCandidates`), so `market.auction.run_round` —
prompts, rewards r_i = v_i·(log π_i − log π_ref), mechanism, counterfactual allocation, reply
draw — runs unchanged for every M while the engine generates and scores only once.

Seeding: a round's engine seed is ``SeedSequence([root, instance, seed index])`` (shared by the
generators: common random numbers) and its reply draw for M is
``SeedSequence([root, instance, seed index, generator index, M, 1])``.

The optimal distribution π_r(y|x) ∝ π_ref(y|x)·exp(Σ_i r_i(x, y)/τ) (eq. 2 / eq. 17):

- synthetic engine: exact. The whole support is scored under the reference and advertiser prompts
  (`SyntheticEngine.support_logprobs`, the order of `enumerate_support`) and π_r is
  `market.mechanisms.mosaic.optimal_distribution` over it, which gives log Z(x),
  E_{π_r}[log π_r] (Fig. 1a's benchmark) and E_{π_ref}[log π_ref] (footnote 4's proxy) exactly,
  and log π_r(y_j) of every candidate;
- other engines: Z(x) is unknown, so log π_r is reported up to the per-query constant log Z(x)
  (footnote 9: Z_i(x) = 1), as the paper does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from market.auction import Bidder, run_round
from market.columns import REPLICATION_TABLES, TableSpec
from market.engines.base import Catalog, Engine, SamplingParams
from market.engines.nested import NestedCandidates
from market.engines.pool import EnginePool
from market.mechanisms import MosaicMechanism
from market.prompts import Brand
from market.studies.counterfactual import absent_from_prompt_rewards
from market.studies.optimum import ExactOptimum, exact_optimum, sampler_distances
from market.studies.replication_rows import (
    convergence_rows,
    optimum_row,
    round_rows,
)
from scenarios.loader import expand_variants


@dataclass(frozen=True)
class Instance:
    """One query with the two advertisers who bid on it (their value scales v_i)."""

    index: int
    query: str
    topic: str
    brands: tuple[Brand, ...]
    values: tuple[float, ...]
    brand_topics: tuple[tuple[str, ...], ...]

    @property
    def label(self) -> str:
        return " + ".join(b.name for b in self.brands)

    def catalog(self) -> Catalog:
        """The instance's world for a synthetic engine: its query and its two advertisers."""
        return Catalog(
            brand_topics={b.name: t for b, t in zip(self.brands, self.brand_topics, strict=True)},
            query_topics={self.query: self.topic},
        )

    def bidders(self) -> list[Bidder]:
        return [Bidder(b, v) for b, v in zip(self.brands, self.values, strict=True)]


@dataclass(frozen=True)
class Generator:
    """A variant of the study: its name ("context", "baseline") and π_gen ("context"/"reference")."""

    name: str
    generator: str


@dataclass(frozen=True)
class StudySettings:
    """Everything that fixes the numbers of a study besides the engine and the root seed."""

    m_grid: tuple[int, ...]
    n_seeds: int
    tau: float
    sampling: SamplingParams
    generators: tuple[Generator, ...]
    convergence_m: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.m_grid or any(m < 1 for m in self.m_grid):
            raise ValueError(f"m_grid must list candidate counts >= 1, got {self.m_grid}")
        if list(self.m_grid) != sorted(set(self.m_grid)):
            raise ValueError(f"m_grid must be strictly increasing, got {self.m_grid}")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if any(m < 1 for m in self.convergence_m):
            raise ValueError(
                f"convergence_m must list candidate counts >= 1, got {self.convergence_m}"
            )

    @property
    def m_max(self) -> int:
        return self.m_grid[-1]


# Fig. 1a's exact curves run to M = 2 ** CONVERGENCE_LOG2_MAX (no sampling: cheap at any M).
CONVERGENCE_LOG2_MAX = 12


def default_m_grid(m_max: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``m_max``, then ``m_max`` itself (20 → 1, 2, 4, 8, 16, 20)."""
    if m_max < 1:
        raise ValueError(f"mechanism.kwargs.candidates must be >= 1, got {m_max}")
    grid = [1 << k for k in range(m_max.bit_length()) if 1 << k < m_max]
    return (*grid, m_max)


def study_instances(scenario: Any, n_queries: int | None = None) -> list[Instance]:
    """Queries paired with two advertisers relevant to their topic (App. C.1).

    The k-th query of a topic takes the topic's advertisers k and k+1 (cyclically); later passes
    rotate the pair further, so a topic with 3 advertisers gives each query 3 distinct pairs.
    Instances are ordered pass by pass, round-robin over topics, so the first Q cover as many
    topics as possible. ``n_queries`` = None takes the scenario's queries once (first pass).
    """
    by_topic: dict[str, list] = {}
    for query in scenario.queries:
        by_topic.setdefault(query.topic, []).append(query)
    relevant = {t: [a for a in scenario.advertisers if t in a.topics] for t in by_topic}
    usable = [t for t in by_topic if len(relevant[t]) >= 2]
    if not usable:
        raise ValueError(
            f"scenario {scenario.name!r}: no query topic has two relevant advertisers; every "
            "instance needs two (add advertisers whose topics include the queries' topics)"
        )
    combos, seen = [], set()
    passes = max(len(relevant[t]) for t in usable)
    depth = max(len(by_topic[t]) for t in usable)
    for shift in range(passes):
        for k in range(depth):
            for topic in usable:
                if k >= len(by_topic[topic]):
                    continue
                query, ads = by_topic[topic][k], relevant[topic]
                pair = (ads[(k + shift) % len(ads)], ads[(k + shift + 1) % len(ads)])
                key = (query.text, frozenset(a.name for a in pair))
                if key not in seen:
                    seen.add(key)
                    combos.append((query, pair))
    first_pass = sum(len(by_topic[t]) for t in usable)
    wanted = first_pass if n_queries is None else n_queries
    if not 1 <= wanted <= len(combos):
        raise ValueError(
            f"--queries must be between 1 and {len(combos)} (distinct query/advertiser-pair "
            f"instances in scenario {scenario.name!r}), got {wanted}"
        )
    return [
        Instance(
            index=i,
            query=query.text,
            topic=query.topic,
            brands=tuple(Brand(a.name, a.description) for a in pair),
            values=tuple(float(a.value) for a in pair),
            brand_topics=tuple(tuple(a.topics) for a in pair),
        )
        for i, (query, pair) in enumerate(combos[:wanted])
    ]


class ReplicationReplicate:
    """One generator under one root seed: round r is instance r // S at seed index r % S."""

    def __init__(self, study: ReplicationStudy, variant: str, seed: int, engines: EnginePool):
        self.study = study
        self.variant = variant
        self.seed = int(seed)
        self.generator_index = study.variants.index(variant)
        self.generator = study.settings.generators[self.generator_index]
        self.engines = engines
        self.engine = study.engine_for(study.instances[0], engines)
        self.engine_seconds = 0.0
        self.round = 0
        self._optimum: tuple[int, ExactOptimum | None] | None = None
        self._rows: dict[str, list[dict]] = {name: [] for name in study.tables}

    def restore(self, folder: Any, done: int) -> None:
        self.round = done  # every round is independent of the others

    def _optimum_of(self, instance: Instance, engine: Engine) -> ExactOptimum | None:
        if self._optimum is None or self._optimum[0] != instance.index:
            self._optimum = (instance.index, exact_optimum(engine, instance, self.study.tau))
        return self._optimum[1]

    def step(self) -> None:
        settings = self.study.settings
        instance = self.study.instances[self.round // settings.n_seeds]
        seed_index = self.round % settings.n_seeds
        engine = self.study.engine_for(instance, self.engines)
        self.engine = engine
        optimum = self._optimum_of(instance, engine)
        rows: dict[str, list[dict]] = {name: [] for name in self.study.tables}
        instance_keys = {
            "instance": instance.index,
            "query": instance.query,
            "advertisers": instance.label,
        }
        if self.generator_index == 0 and seed_index == 0:
            rows["optima"].append(optimum_row(instance_keys, optimum))
        if seed_index == 0 and optimum is not None and self.study.exact_sampler:
            for name, sampling in self.study.samplers().items():
                distances = sampler_distances(
                    engine,
                    instance,
                    self.generator.generator,
                    sampling,
                    optimum,
                    settings.convergence_m,
                )
                keys = {**instance_keys, "generator": self.generator.name, "sampler": name}
                rows["convergence"].extend(convergence_rows(keys, sampling, distances))
        log_z = optimum.log_z if optimum else 0.0
        engine_seed = np.random.SeedSequence([self.seed, instance.index, seed_index])
        nested = NestedCandidates(engine, settings.m_max)
        round_seed = int(engine_seed.generate_state(1)[0])
        if self.study.absent_prompt:
            absent = absent_from_prompt_rewards(
                nested,
                MosaicMechanism(tau=settings.tau, generator=self.generator.generator),
                instance.query,
                instance.bidders(),
                settings.sampling,
                round_seed,
                settings.m_grid,
            )
        else:
            absent = np.full((len(settings.m_grid), len(instance.brands)), np.nan)
        for row_index, m in enumerate(settings.m_grid):
            mechanism = MosaicMechanism(
                tau=settings.tau, offset=True, generator=self.generator.generator, candidates=m
            )
            reply_seed = [self.seed, instance.index, seed_index, self.generator_index, m, 1]
            outcome = run_round(
                nested,
                mechanism,
                instance.query,
                instance.bidders(),
                settings.sampling,
                seed=round_seed,
                rng=np.random.default_rng(np.random.SeedSequence(reply_seed)),
            )
            keys = {
                "instance": instance.index,
                "query": instance.query,
                "topic": instance.topic,
                "advertisers": instance.label,
                "seed": seed_index,
                "generator": self.generator.name,
                "M": m,
            }
            row, advertisers, candidates = round_rows(
                outcome, keys, settings.tau, log_z, absent[row_index]
            )
            rows["instances"].append(row)
            rows["advertisers"].extend(advertisers)
            rows["candidates"].extend(candidates)
        for name, new in rows.items():  # only a whole round's rows: a round cut short adds none
            self._rows[name].extend(new)
        self.engine_seconds += nested.engine_seconds
        self.round += 1

    def drain(self) -> Mapping[str, pd.DataFrame]:
        frames = {
            name: pd.DataFrame(rows, columns=list(self.study.tables[name].names))
            for name, rows in self._rows.items()
        }
        self._rows = {name: [] for name in self.study.tables}
        return frames

    def close(self) -> None:
        self._rows = {name: [] for name in self.study.tables}


@dataclass(frozen=True)
class ReplicationStudy:
    """The paper's study of a scenario: instances × seeds × generators × M (docs/replication.md).

    The scenario holds the defaults: engine, mechanism τ, sampling, the queries and advertisers,
    ``rounds`` = seeds per instance, ``mechanism.kwargs.candidates`` = M_max and one variant per
    generator; ``options`` holds the number of instances (``queries``) and the M grid.
    """

    scenario: Any
    instances: tuple[Instance, ...]
    settings: StudySettings
    kind: ClassVar[str] = "replication"
    tables: ClassVar[Mapping[str, TableSpec]] = REPLICATION_TABLES

    @classmethod
    def from_scenario(
        cls, scenario: Any, options: Mapping[str, Any] | None = None
    ) -> ReplicationStudy:
        options = dict(options or {})
        unknown = sorted(set(options) - {"queries", "m_grid", "convergence_m"})
        if unknown:
            raise ValueError(
                f"unknown replication options {unknown}; known: queries, m_grid, convergence_m"
            )
        generators = []
        for name, variant in expand_variants(scenario).items():
            if variant.mechanism.type != "mosaic":
                raise ValueError(
                    f"variant {name!r} uses mechanism {variant.mechanism.type!r}; the replication "
                    "compares MOSAIC generators (set mechanism.type: mosaic)"
                )
            generators.append(Generator(name, variant.mechanism.kwargs.get("generator", "context")))
        if options.get("m_grid") is not None:
            grid = tuple(sorted({int(m) for m in options["m_grid"]}))
            if not grid or grid[0] < 1:
                raise ValueError(f"--m values must be >= 1, got {list(options['m_grid'])}")
        else:
            grid = default_m_grid(int(scenario.mechanism.kwargs.get("candidates", 8)))
        convergence = options.get("convergence_m")
        convergence = sorted(
            {int(m) for m in convergence}
            if convergence is not None
            else set(grid) | {1 << k for k in range(CONVERGENCE_LOG2_MAX + 1)}
        )
        settings = StudySettings(
            m_grid=grid,
            n_seeds=int(scenario.rounds),
            tau=float(scenario.mechanism.kwargs.get("tau", 1.0)),
            sampling=SamplingParams(**scenario.sampling.model_dump()),
            generators=tuple(generators),
            convergence_m=tuple(convergence),
        )
        instances = tuple(study_instances(scenario, options.get("queries")))
        return cls(scenario, instances, settings)

    @property
    def tau(self) -> float:
        return self.settings.tau

    @property
    def absent_prompt(self) -> bool:
        """Whether the counterfactual absent from the prompt is recorded: on the synthetic engine,
        where regenerating the candidates without each advertiser is cheap."""
        return self.scenario.engine.type == "synthetic"

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.settings.generators)

    @property
    def rounds(self) -> int:
        """Candidate pools per generator: instances × seeds."""
        return len(self.instances) * self.settings.n_seeds

    @property
    def exact_sampler(self) -> bool:
        """Whether Fig. 1a's induced distribution is computed exactly: on the synthetic engine,
        when replies are not cut before the engine's longest (the support lists whole replies)."""
        return (
            self.scenario.engine.type == "synthetic"
            and self.settings.sampling.max_new_tokens
            >= (int(self.scenario.engine.kwargs.get("max_len", 4)))
        )

    def samplers(self) -> dict[str, SamplingParams]:
        """The study's sampler and the same one with full support (top_p = 1), under which
        Theorem A.1's convergence to π_r holds."""
        return {
            "study": self.settings.sampling,
            "top_p=1": replace(self.settings.sampling, top_p=1.0),
        }

    def options(self) -> dict[str, Any]:
        return {
            "queries": len(self.instances),
            "m_grid": list(self.settings.m_grid),
            "convergence_m": list(self.settings.convergence_m),
        }

    def facts(self) -> dict[str, Any]:
        reference = [g.name for g in self.settings.generators if g.generator == "reference"]
        return {
            "queries": len(self.instances),
            "seeds": self.settings.n_seeds,
            "m_grid": list(self.settings.m_grid),
            "tau": self.settings.tau,
            "sampling": self.scenario.sampling.model_dump(mode="json"),
            "generators": {g.name: g.generator for g in self.settings.generators},
            "reference_generator": reference[0] if reference else None,
            "convergence_m": list(self.settings.convergence_m) if self.exact_sampler else [],
            "samplers": {name: sampling.top_p for name, sampling in self.samplers().items()},
            "counterfactuals": ["same_candidates"]
            + (["absent_from_prompt"] if self.absent_prompt else []),
        }

    def engine_for(self, instance: Instance, engines: EnginePool) -> Engine:
        """Synthetic: an exact engine whose world is the instance's query and two advertisers
        (the paper's one-shot world; its support stays small enough to enumerate). Other
        engines: the pool's one engine, its calls cached on disk."""
        if self.scenario.engine.type == "synthetic":
            return engines.get(self.scenario.engine, catalog=instance.catalog())
        return engines.get(self.scenario.engine)

    def check(self, engines: EnginePool, seed: int) -> None:
        self.engine_for(self.instances[0], engines)

    def replicate(self, variant: str, seed: int, engines: EnginePool) -> ReplicationReplicate:
        return ReplicationReplicate(self, variant, seed, engines)


def replicate_overrides(
    scenario_engine_type: str, engine: str | None, seeds: int | None, overrides: Sequence[str]
) -> list[str]:
    """The scenario overrides of `admarket replicate`'s flags: a different ``--engine`` type starts
    from its own defaults (the same type keeps the scenario's kwargs), ``--seeds`` sets
    ``rounds`` (seeds per instance), after any ``--set``."""
    if seeds is not None and seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    switch = engine is not None and engine != scenario_engine_type
    sets = [f"engine.type={engine}", "engine.kwargs={}"] if switch else []
    return sets + list(overrides) + ([f"rounds={seeds}"] if seeds is not None else [])


def resolve(
    scenario_name: str = "paper_replication",
    *,
    engine: str | None = None,
    n_queries: int | None = None,
    n_seeds: int | None = None,
    m_grid: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
) -> ReplicationStudy:
    """The study `admarket replicate` runs for these flags (scenario defaults, then ``--engine``,
    ``--set`` and the size flags), for notebooks and tests."""
    from scenarios.loader import load_scenario

    sets = replicate_overrides(load_scenario(scenario_name).engine.type, engine, n_seeds, overrides)
    return ReplicationStudy.from_scenario(
        load_scenario(scenario_name, sets), {"queries": n_queries, "m_grid": m_grid}
    )
