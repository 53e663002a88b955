"""The paper's one-shot study (Sec. 6, App. C), computed: auctions, exact optimum, tidy rows.

Each *instance* is one query with two relevant advertisers who always enter (App. C.1). For each
instance, seed and generator (π_con "context" or π_ref "reference"), the M_max candidates are drawn
once and every M of the grid uses the first M of them (nested candidate sets): `NestedCandidates`
wraps the engine so that `market.auction.run_round` — prompts, rewards r_i = v_i·(log π_i −
log π_ref), mechanism, counterfactual allocation, reply draw — runs unchanged for every M while
the engine generates and scores only once.

The optimal distribution π_r(y|x) ∝ π_ref(y|x)·exp(Σ_i r_i(x, y)/τ) (eq. 2 / eq. 17):

- synthetic engine: exact. The whole support is scored under the reference and advertiser prompts
  (`SyntheticEngine.support_logprobs`, the order of `enumerate_support`), which gives log Z(x),
  E_{π_r}[log π_r] (the log-probability of one reply drawn from π_r, Fig. 1a's benchmark) and
  E_{π_ref}[log π_ref] (footnote 4's proxy for it) exactly, and log π_r(y_j) of every candidate;
- other engines: Z(x) is unknown, so log π_r is reported up to the per-query constant log Z(x)
  (footnote 9: Z_i(x) = 1), as the paper does, and the benchmark is footnote 4's proxy: replies
  drawn from π_ref (the baseline generator's candidates) scored by π_ref itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market.auction import Bidder, RoundOutcome, rewards_from_scores, run_round
from market.engines.base import Candidate, Catalog, Engine, Prompt, SamplingParams
from market.mechanisms import MosaicMechanism
from market.mechanisms.mosaic import logsumexp
from market.prompts import Brand, advertiser_prompt, reference_prompt


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
    """Everything that fixes the numbers of a study (besides the engine)."""

    m_grid: tuple[int, ...]
    n_seeds: int
    root_seed: int
    tau: float
    sampling: SamplingParams
    generators: tuple[Generator, ...]

    def __post_init__(self) -> None:
        if not self.m_grid or any(m < 1 for m in self.m_grid):
            raise ValueError(f"m_grid must list candidate counts >= 1, got {self.m_grid}")
        if list(self.m_grid) != sorted(set(self.m_grid)):
            raise ValueError(f"m_grid must be strictly increasing, got {self.m_grid}")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")

    @property
    def m_max(self) -> int:
        return self.m_grid[-1]


@dataclass(frozen=True)
class ExactOptimum:
    """π_r of one instance over the engine's whole support (synthetic engine only).

    ``log_z`` = log Σ_y π_ref(y)·exp(r(y)/τ); ``optimal_logp`` = E_{y~π_r}[log π_r(y)];
    ``reference_logp`` = E_{y~π_ref}[log π_ref(y)] (footnote 4's proxy, here exact).
    """

    log_z: float
    optimal_logp: float
    reference_logp: float
    support_size: int


@dataclass(frozen=True)
class StudyFrames:
    """Tidy results: one row per instance × seed × generator × M (``instances``), per advertiser
    of those (``advertisers``), per candidate of those (``candidates``), and per instance
    (``optima``: exact benchmarks, NaN off the synthetic engine)."""

    instances: pd.DataFrame
    advertisers: pd.DataFrame
    candidates: pd.DataFrame
    optima: pd.DataFrame
    engine_seconds: float
    wall_seconds: float


class NestedCandidates:
    """An engine whose ``generate`` returns the first n of one M_max draw per (prompts, seed).

    ``score`` of a prefix of such a draw is computed once for the whole draw and sliced, so a
    sweep over M costs one generate and one score call. Anything else goes to the wrapped engine.
    """

    def __init__(self, engine: Engine, m_max: int) -> None:
        self._engine = engine
        self._m_max = m_max
        self._pools: dict[tuple, list[list[Candidate]]] = {}
        self._scores: dict[tuple, np.ndarray] = {}
        self.info = engine.info
        self.engine_seconds = 0.0

    def _timed(self, method: Callable, *args):
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.engine_seconds += time.perf_counter() - start

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]:
        if n > self._m_max:
            raise ValueError(f"n = {n} candidates asked, but the pool holds M_max = {self._m_max}")
        key = (tuple(prompts), params, int(seed))
        if key not in self._pools:
            self._pools[key] = self._timed(
                self._engine.generate, list(prompts), self._m_max, params, seed
            )
        return [pool[:n] for pool in self._pools[key]]

    def score(self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str]) -> np.ndarray:
        for pools in self._pools.values():
            for pool in pools:
                if _is_prefix(replies, pool):
                    key = (tuple(prompts), id(pool))
                    if key not in self._scores:
                        self._scores[key] = np.asarray(
                            self._timed(self._engine.score, list(prompts), pool), dtype=float
                        )
                    return self._scores[key][:, : len(replies)]
        return self._timed(self._engine.score, prompts, replies)

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        return self._engine.next_token_logprobs(prompts, prefixes)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._engine.decode(token_ids)

    @property
    def eos_token_id(self) -> int | None:
        return self._engine.eos_token_id


def _is_prefix(replies: Sequence, pool: Sequence[Candidate]) -> bool:
    return len(replies) <= len(pool) and all(a is b for a, b in zip(replies, pool, strict=False))


def exact_optimum(engine: Engine, instance: Instance, tau: float) -> ExactOptimum | None:
    """π_r over the full support of a synthetic engine (eq. 2 / 17); None for other engines."""
    support_logprobs = getattr(engine, "support_logprobs", None)
    if support_logprobs is None:
        return None
    prompts = [reference_prompt(instance.query)] + [
        advertiser_prompt(instance.query, b) for b in instance.brands
    ]
    scores = np.asarray(support_logprobs(prompts), dtype=float)
    log_ref = scores[0]
    rewards = rewards_from_scores(np.asarray(instance.values, float), scores[1:], log_ref)
    logits = log_ref + rewards.sum(axis=0) / tau
    log_z = float(logsumexp(logits))
    log_pi_r = logits - log_z
    return ExactOptimum(
        log_z=log_z,
        optimal_logp=_entropy_term(log_pi_r),
        reference_logp=_entropy_term(log_ref),
        support_size=int(log_ref.size),
    )


def _entropy_term(logp: np.ndarray) -> float:
    """Σ_y p(y) log p(y), with 0·log 0 = 0."""
    p = np.exp(logp)
    return float(np.sum(np.where(p > 0, p * np.where(p > 0, logp, 0.0), 0.0)))


def _engine_seed(settings: StudySettings, instance: Instance, seed: int) -> int:
    sequence = np.random.SeedSequence([settings.root_seed, instance.index, seed])
    return int(sequence.generate_state(1)[0])


def _reply_rng(
    settings: StudySettings, instance: Instance, seed: int, generator: int, m: int
) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([settings.root_seed, instance.index, seed, generator, m, 1])
    )


def _rows(
    outcome: RoundOutcome,
    keys: dict,
    tau: float,
    log_z: float,
) -> tuple[dict, list[dict], list[dict]]:
    """One instance row, its advertiser rows and its candidate rows from a MOSAIC outcome.

    The mechanism runs with the offset; plain Rochet payments (C_i = 0) differ by C_i alone
    (eq. 13), so utility without offset = utility − C_i and payment = payment + C_i.
    """
    log_pi_r = outcome.log_ref + outcome.rewards.sum(axis=0) / tau - log_z
    allocation = outcome.allocation
    logp_expected = float(np.sum(np.where(allocation > 0, allocation * log_pi_r, 0.0)))
    utilities = outcome.utilities
    offsets = outcome.offsets
    mentioned = set(outcome.mentioned)
    row = {
        **keys,
        "logp_optimal": logp_expected,
        "logp_optimal_returned": float(log_pi_r[outcome.returned]),
        "logp_reference": float(np.sum(allocation * outcome.log_ref)),
        "usefulness": outcome.usefulness,
        "expected_reward": float(outcome.expected_rewards.sum()),
        "normalized_reward": float(
            (outcome.expected_rewards - outcome.expected_rewards_without).sum()
        ),
        "utility_offset": float(utilities.sum()),
        "utility_no_offset": float((utilities - offsets).sum()),
        "revenue_offset": outcome.revenue,
        "revenue_no_offset": float((outcome.payments + offsets).sum()),
        "ess": outcome.ess,
        "mentions": len(mentioned),
        "reply_tokens": outcome.reply_tokens,
        "reply_text": outcome.reply.text,
    }
    advertisers = [
        {
            **keys,
            "advertiser": name,
            "expected_reward": float(outcome.expected_rewards[i]),
            "expected_reward_without": float(outcome.expected_rewards_without[i]),
            "contribution": float(
                outcome.expected_rewards[i] - outcome.expected_rewards_without[i]
            ),
            "utility_offset": float(utilities[i]),
            "utility_no_offset": float(utilities[i] - offsets[i]),
            "payment_offset": float(outcome.payments[i]),
            "payment_no_offset": float(outcome.payments[i] + offsets[i]),
            "offset": float(offsets[i]),
            "mentioned": name in mentioned,
        }
        for i, name in enumerate(outcome.entrants)
    ]
    candidates = [
        {
            **keys,
            "candidate": j,
            "reply": " ".join(map(str, c.token_ids)),
            "allocation": float(allocation[j]),
            "log_ref": float(outcome.log_ref[j]),
            "log_pi_r": float(log_pi_r[j]),
        }
        for j, c in enumerate(outcome.candidates)
    ]
    return row, advertisers, candidates


def run_study(
    instances: Sequence[Instance],
    settings: StudySettings,
    engine_for: Callable[[Instance], Engine],
    *,
    on_pool: Callable[[], None] = lambda: None,
) -> StudyFrames:
    """Every instance × seed × generator × M; ``engine_for`` gives the engine of an instance.

    ``on_pool`` is called after each (instance, seed, generator) candidate pool is done.
    """
    started = time.perf_counter()
    rows: list[dict] = []
    advertiser_rows: list[dict] = []
    candidate_rows: list[dict] = []
    optima = []
    engine_seconds = 0.0
    for instance in instances:
        engine = engine_for(instance)
        optimum = exact_optimum(engine, instance, settings.tau)
        optima.append(
            {
                "instance": instance.index,
                "query": instance.query,
                "advertisers": instance.label,
                "exact": optimum is not None,
                "log_z": optimum.log_z if optimum else np.nan,
                "optimal_logp": optimum.optimal_logp if optimum else np.nan,
                "reference_logp": optimum.reference_logp if optimum else np.nan,
                "support_size": optimum.support_size if optimum else 0,
            }
        )
        log_z = optimum.log_z if optimum else 0.0
        for seed in range(settings.n_seeds):
            engine_seed = _engine_seed(settings, instance, seed)
            for g_index, generator in enumerate(settings.generators):
                nested = NestedCandidates(engine, settings.m_max)
                for m in settings.m_grid:
                    mechanism = MosaicMechanism(
                        tau=settings.tau, offset=True, generator=generator.generator, candidates=m
                    )
                    outcome = run_round(
                        nested,
                        mechanism,
                        instance.query,
                        instance.bidders(),
                        settings.sampling,
                        seed=engine_seed,
                        rng=_reply_rng(settings, instance, seed, g_index, m),
                    )
                    keys = {
                        "instance": instance.index,
                        "query": instance.query,
                        "topic": instance.topic,
                        "advertisers": instance.label,
                        "seed": seed,
                        "generator": generator.name,
                        "M": m,
                    }
                    row, adv, cand = _rows(outcome, keys, settings.tau, log_z)
                    rows.append(row)
                    advertiser_rows.extend(adv)
                    candidate_rows.extend(cand)
                engine_seconds += nested.engine_seconds
                on_pool()
    return StudyFrames(
        instances=pd.DataFrame(rows),
        advertisers=pd.DataFrame(advertiser_rows),
        candidates=pd.DataFrame(candidate_rows),
        optima=pd.DataFrame(optima),
        engine_seconds=engine_seconds,
        wall_seconds=time.perf_counter() - started,
    )
