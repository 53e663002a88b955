"""An exact synthetic LLM: enumerable replies with known log-probabilities, for ground truth.

It takes the same structured `Prompt`s the hf engine gets and reads their fields (`world`: the
vocabulary and the model), answering with short replies whose probability under every prompt is
known exactly, so that tests can check mechanisms against closed forms and large studies run
thousands of rounds per second. `oracle` adds the exact support and π_r (eq. 2 / 17).

A reply has 1 to ``max_len`` segments followed by EOS; ``SamplingParams.max_new_tokens`` caps the
number of segments a sampler may produce (a reply cut by that cap ends without EOS, as an hf reply
cut by ``max_new_tokens`` does).

With the defaults, a brand relevant to the query is rarely named by π_ref (under 1% of replies),
about half the time by its advertiser's LLM, and most often by π_con listing it alone; every listed
brand is named less often as more brands are listed (dilution), and an irrelevant listed brand far
less often than a relevant one. On π_con's replies a relevant entrant's expected reward is positive
and an irrelevant one's negative. tests/test_engine_synthetic.py checks each of these statements.

Sampling. `generate` applies temperature and top-p per position as the hf engine does (tempered
softmax; keep the smallest set of tokens, in descending probability, whose mass reaches top_p;
renormalise) and reports the exact log-probability of each reply under that sampler
(``proposal_logprob``) and under the untempered model (``model_logprob``). Tables of next-token
log-probs are cached per prompt (pure functions of the prompt, so the cache never changes a
result).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from market.engines.base import Candidate, Catalog, EngineError, EngineInfo, SamplingParams
from market.engines.checks import check_prompt_style
from market.engines.synthetic.oracle import ExactOracle
from market.engines.synthetic.phrases import TOPIC_TEMPLATES
from market.engines.synthetic.world import LRU, World, log_normalise, require
from market.prompts import Brand, Prompt, Query

MODEL_NAME = "synthetic-v1"


def sampler_logprobs(logprobs: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """The next-token log-distribution a temperature / top-p sampler draws from.

    ``logprobs`` (..., V) are the model's exact next-token log-probabilities. Temperature: softmax
    of logprobs / temperature. Top-p: sort tokens by descending probability (ties by token id) and
    keep each token whose preceding mass is < top_p — the smallest prefix whose mass reaches top_p,
    as the hf sampler does — then renormalise. Impossible tokens stay −inf; rows that are all −inf
    stay so.
    """
    tempered = log_normalise(logprobs / temperature)
    if top_p >= 1.0:
        return tempered
    probs = np.exp(tempered)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = (mass_before < top_p) & (sorted_probs > 0)
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return log_normalise(np.where(keep, tempered, -np.inf))


class SyntheticEngine(ExactOracle):
    """The exact synthetic engine (see the module docstring for the model).

    Parameters (all keyword): ``catalog`` (brands' and queries' topics; brands named in prompts must
    be in it), ``max_len`` (most segments in a reply, default 4), ``seed`` (the per-query content
    perturbations), the logits ``generic_logit`` (0), ``on_topic_logit`` (2), ``off_topic_logit``
    (−3), ``brand_logit`` (−4), ``relevance_bonus`` (1.5), ``eos_logit`` (1.5), ``eos_growth`` (1),
    ``content_noise`` (0.5), ``repeat_penalty`` (3), the instructions' ``ad_boost`` (5),
    ``con_boost`` (5), ``topic_pull`` (0.5), ``shoehorn`` (0.5), ``rival_penalty`` (1),
    ``rel_floor`` (0.15), ``dilution`` (0.25), ``phrases_per_topic`` (3, at most 4), and
    ``prompt_style`` (recorded for the auction's prompts; the model reads the prompts' fields, so
    every style gives the same numbers).
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        max_len: int = 4,
        seed: int = 0,
        generic_logit: float = 0.0,
        on_topic_logit: float = 2.0,
        off_topic_logit: float = -3.0,
        brand_logit: float = -4.0,
        relevance_bonus: float = 1.5,
        eos_logit: float = 1.5,
        eos_growth: float = 1.0,
        content_noise: float = 0.5,
        repeat_penalty: float = 3.0,
        ad_boost: float = 5.0,
        con_boost: float = 5.0,
        topic_pull: float = 0.5,
        shoehorn: float = 0.5,
        rival_penalty: float = 1.0,
        rel_floor: float = 0.15,
        dilution: float = 0.25,
        phrases_per_topic: int = 3,
        cache_size: int = 512,
        prompt_style: str | None = None,
    ) -> None:
        catalog = Catalog() if catalog is None else catalog
        require(
            isinstance(catalog, Catalog),
            f"catalog must be a market.engines.base.Catalog, got {type(catalog).__name__}",
            "catalog",
        )
        for name, value in (("max_len", max_len), ("phrases_per_topic", phrases_per_topic)):
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be an integer >= 1, got {value!r}",
                name,
            )
        require(
            phrases_per_topic <= len(TOPIC_TEMPLATES),
            f"phrases_per_topic must be <= {len(TOPIC_TEMPLATES)}, got {phrases_per_topic}",
            "phrases_per_topic",
        )
        require(
            isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
            f"seed must be an integer >= 0, got {seed!r}",
            "seed",
        )
        require(
            isinstance(cache_size, int) and cache_size >= 1,
            f"cache_size must be an integer >= 1, got {cache_size!r}",
            "cache_size",
        )
        params = {
            "generic_logit": generic_logit,
            "on_topic_logit": on_topic_logit,
            "off_topic_logit": off_topic_logit,
            "brand_logit": brand_logit,
            "relevance_bonus": relevance_bonus,
            "eos_logit": eos_logit,
            "eos_growth": eos_growth,
            "content_noise": content_noise,
            "repeat_penalty": repeat_penalty,
            "ad_boost": ad_boost,
            "con_boost": con_boost,
            "topic_pull": topic_pull,
            "shoehorn": shoehorn,
            "rival_penalty": rival_penalty,
            "rel_floor": rel_floor,
            "dilution": dilution,
        }
        for name, value in params.items():
            require(
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value),
                f"{name} must be a finite number, got {value!r}",
                name,
            )
        for name in ("content_noise", "repeat_penalty", "dilution"):
            require(params[name] >= 0, f"{name} must be >= 0, got {params[name]}", name)
        require(0 <= rel_floor <= 1, f"rel_floor must be in [0, 1], got {rel_floor}", "rel_floor")

        style = check_prompt_style(prompt_style, "system")
        self.max_len = max_len
        self.seed = seed
        self.catalog = catalog
        self._p = {k: float(v) for k, v in params.items()}
        self.world = World(
            catalog,
            self._p,
            max_len=max_len,
            seed=seed,
            phrases_per_topic=phrases_per_topic,
            cache_size=cache_size,
        )
        self.brands = self.world.brands
        self.topics = self.world.topics
        self.segment_texts = self.world.segment_texts
        self.vocab_size = self.world.vocab_size
        self._eos = self.world.eos
        self._tables = LRU(cache_size)
        self.info = EngineInfo(
            engine="synthetic",
            model=MODEL_NAME,
            extra={
                **self._p,
                "max_len": max_len,
                "seed": seed,
                "phrases_per_topic": phrases_per_topic,
                "vocab_size": self.vocab_size,
                "catalog_digest": World.catalog_digest(catalog),
                "prompt_style": style,
            },
        )

    @property
    def eos_token_id(self) -> int:
        """EOS: the last id of the vocabulary."""
        return self._eos

    def brand_token_id(self, brand: str) -> int:
        """The id of the segment that mentions ``brand``."""
        self.world.check_brand(brand, "brand_token_id")
        return self.world.brand_id[brand]

    def decode(self, token_ids: Sequence[int]) -> str:
        """The reply's text: its segments' sentences joined by spaces (EOS renders as nothing)."""
        return self.world.decode(self._as_ids(token_ids, "token_ids"))

    def parse_text(self, text: str) -> tuple[int, ...]:
        """Token ids of a complete reply's text (segments then EOS); the inverse of `decode`."""
        return self.world.parse_text(text)

    def relevance(self, brand: Brand | str, query: Query | str) -> float:
        """rel(b, x): 1 when the query's topic is one of the brand's topics, else 0
        (`market.prompts.is_relevant`, topics resolved as the model reads them)."""
        return self.world.relevance(brand, query)

    def _table(self, prompt: Prompt) -> np.ndarray:
        """Exact next-token log-probs (max_len + 1, V + 1, V) of a prompt (`World.table`)."""
        require(
            isinstance(prompt, Prompt),
            f"prompts must be market.prompts.Prompt, got {type(prompt).__name__}",
        )
        key = World.table_key(prompt)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        return self._tables.put(key, self.world.table(prompt))

    def _sampler_tables(
        self, prompt: Prompt, params: SamplingParams
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sampler's next-token log-probs and their CDFs (rows ending at exactly 1)."""
        key = (World.table_key(prompt), params.temperature, params.top_p)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        table = sampler_logprobs(self._table(prompt), params.temperature, params.top_p)
        cdf = np.cumsum(np.exp(table), axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cdf /= cdf[..., -1:]  # the EOS row (all −inf) becomes NaN and is never drawn from
        table.setflags(write=False)
        cdf.setflags(write=False)
        return self._tables.put(key, (table, cdf))

    def _as_ids(self, token_ids: Sequence[int], what: str) -> tuple[int, ...]:
        try:
            ids = tuple(int(t) for t in token_ids)
        except (TypeError, ValueError) as error:
            raise EngineError(f"{what} must be a sequence of integer token ids ({error})") from None
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        require(
            not bad, f"{what} holds ids {bad[:5]} outside the vocabulary [0, {self.vocab_size})"
        )
        return ids

    def _reply_ids(self, reply: Candidate | str | Sequence[int]) -> tuple[int, ...]:
        if isinstance(reply, Candidate):
            return self._as_ids(reply.token_ids, "Candidate.token_ids")
        if isinstance(reply, str):
            return self.parse_text(reply)
        return self._as_ids(reply, "reply")

    def _pad(self, replies: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter((len(r) for r in replies), dtype=np.int64, count=len(replies))
        width = max(1, int(lengths.max(initial=0)))
        padded = np.full((len(replies), width), -1, dtype=np.int64)
        for row, reply in enumerate(replies):
            padded[row, : len(reply)] = reply
        return padded, lengths

    def _sequence_logprobs(
        self, table: np.ndarray, padded: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        """Σ_t log table[t, y_{t−1}, y_t] for each padded reply y: (R,)."""
        rows, width = padded.shape
        valid = np.arange(width)[None, :] < lengths[:, None]
        tokens = np.where(valid, padded, 0)
        prev = np.concatenate([np.full((rows, 1), self.vocab_size), tokens[:, :-1]], axis=1)
        # Past max_len every step is −inf already: the last segment's successor must be EOS and
        # nothing follows EOS, so clipping the position index keeps the result exact.
        position = np.minimum(np.arange(width), self.max_len)[None, :]
        return np.where(valid, table[position, prev, tokens], 0.0).sum(axis=-1)

    def score(
        self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str | Sequence[int]]
    ) -> np.ndarray:
        """Exact log π(reply | prompt), (len(prompts), len(replies)).

        A Candidate is scored by its token ids, a str is parsed as a complete reply (EOS appended),
        a sequence of ints is taken as is. Replies the model cannot produce score −inf.
        """
        ids = [self._reply_ids(r) for r in replies]
        if not prompts or not ids:
            return np.zeros((len(prompts), len(ids)))
        padded, lengths = self._pad(ids)
        return np.stack([self._sequence_logprobs(self._table(p), padded, lengths) for p in prompts])

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        """Exact next-token log-probs (len(prompts), V) after each prompt's reply prefix."""
        require(
            len(prompts) == len(prefixes),
            f"next_token_logprobs needs one prefix per prompt, got {len(prompts)} prompts and "
            f"{len(prefixes)} prefixes",
        )
        rows = np.empty((len(prompts), self.vocab_size))
        for row, (prompt, prefix) in enumerate(zip(prompts, prefixes, strict=True)):
            ids = self._as_ids(prefix, "prefix")
            require(
                self._eos not in ids,
                f"prefix {ids} contains EOS ({self._eos}): a finished reply has no next token",
            )
            require(
                len(ids) <= self.max_len,
                f"prefix {ids} is longer than max_len={self.max_len} segments; no reply has it",
            )
            prev = ids[-1] if ids else self.vocab_size
            rows[row] = self._table(prompt)[len(ids), prev]
        return rows

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]:
        """n replies per prompt from the temperature / top-p sampler, each with exact log-probs.

        Prompt i draws from a Generator seeded by SeedSequence(seed, spawn_key=(i,)), one uniform
        per position and reply: same seed, same candidates.
        """
        require(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1,
            f"n must be an integer >= 1, got {n!r}",
        )
        require(
            isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0,
            f"seed must be an integer >= 0, got {seed!r}",
            "seed",
        )
        require(
            isinstance(params, SamplingParams),
            f"params must be SamplingParams, got {type(params).__name__}",
        )
        cap = min(self.max_len, params.max_new_tokens)
        return [
            self._sample(prompt, n, params, cap, np.random.SeedSequence(int(seed), spawn_key=(i,)))
            for i, prompt in enumerate(prompts)
        ]

    def _sample(
        self,
        prompt: Prompt,
        n: int,
        params: SamplingParams,
        cap: int,
        seeds: np.random.SeedSequence,
    ) -> list[Candidate]:
        """n replies of at most ``cap`` segments by inverse-CDF draws, one uniform per position."""
        (proposal, cdfs), model = self._sampler_tables(prompt, params), self._table(prompt)
        steps = cap + 1 if cap == self.max_len else cap  # the forced EOS after max_len segments
        uniforms = np.random.default_rng(seeds).random((n, steps))
        padded = np.full((n, steps), -1, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        prev = np.full(n, self.vocab_size)
        live = np.arange(n)
        for t in range(steps):
            below = cdfs[t, prev[live]] <= uniforms[live, t, None]
            token = np.minimum(below.sum(axis=-1), self.vocab_size - 1)
            padded[live, t] = token
            lengths[live] += 1
            prev[live] = token
            live = live[token != self._eos]
            if live.size == 0:
                break
        proposal_lp = self._sequence_logprobs(proposal, padded, lengths)
        model_lp = self._sequence_logprobs(model, padded, lengths)
        replies = []
        for row, ids in enumerate(padded.tolist()):
            ids = tuple(ids[: lengths[row]])
            replies.append(
                Candidate(
                    text=self.decode(ids),
                    token_ids=ids,
                    proposal_logprob=float(proposal_lp[row]),
                    model_logprob=float(model_lp[row]),
                )
            )
        return replies
