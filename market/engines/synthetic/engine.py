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
result); a prompt's sampler and its draws are `sampler.Sampler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from market.engines.base import Candidate, Catalog, EngineError, EngineInfo, SamplingParams
from market.engines.checks import check_prompt_style
from market.engines.synthetic.oracle import ExactOracle
from market.engines.synthetic.phrases import TOPIC_TEMPLATES
from market.engines.synthetic.sampler import KNOWN_REPLIES, Sampler
from market.engines.synthetic.scored import ScoredStack
from market.engines.synthetic.world import World, require
from market.lru import LRU
from market.prompts import Brand, Prompt, Query

MODEL_NAME = "synthetic-v1"
# Memory for full (max_len + 1, V + 1, V) tables: the sampler's of recent generator prompts (three
# each: the sampler's log-probs and CDFs, the model's log-probs) and the oracle's. A few dozen with the defaults: memory stays flat while entrant sets, and
# so generator prompts, keep changing.
FULL_TABLE_BYTES = 32 * 2**20
STACKS = 64  # recent score calls' prompts: compact models stacked, replies' scores (a few MB)


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
        self._chains = LRU(cache_size)  # compact models: (max_len + 1) x (2V + 1) floats each
        self._by_prompt = LRU(cache_size)  # id(prompt) -> (prompt, its compact model)
        self._stacks = LRU(min(STACKS, cache_size))  # prompt ids -> their `ScoredStack`
        self._vocabulary = frozenset(range(self.vocab_size))
        # full tables, V + 1 times larger: the sampler's of the recent generator prompts, the
        # oracle's; a few, so that memory stays flat when entrant sets keep changing
        table_bytes = (max_len + 1) * (self.vocab_size + 1) * self.vocab_size * 8
        sampler_bytes = 3 * table_bytes + KNOWN_REPLIES * 512  # its tables and known replies
        full_tables = max(2, min(cache_size, FULL_TABLE_BYTES // sampler_bytes))
        self._tables = LRU(full_tables)
        self._samplers = LRU(cache_size)  # (id(prompt), temperature, top_p) -> (prompt, key)
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

    def _chain(self, prompt: Prompt) -> np.ndarray:
        """A prompt's compact next-token model (max_len + 1, 2V + 1) (`World.chain`), cached."""
        return self._chains_of([prompt])[0]

    def _chains_of(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        """The prompts' `_chain`s: cached by what each depends on and, in front, by the prompt
        object itself (callers that reuse their prompt objects, as the auction does, skip building
        the key); those not cached are built together (`World.chains`)."""
        chains: list = []
        missing: dict[int, tuple] = {}  # position in prompts -> the prompt's key
        for k, prompt in enumerate(prompts):
            seen = self._by_prompt.get(id(prompt))
            if seen is not None and seen[0] is prompt:
                chains.append(seen[1])
                continue
            if type(prompt) is not Prompt:
                require(
                    isinstance(prompt, Prompt),
                    f"prompts must be market.prompts.Prompt, got {type(prompt).__name__}",
                )
            key = World.table_key(prompt)
            chain = self._chains.get(key)
            if chain is None:
                missing[k] = key
            else:
                self._by_prompt.put(id(prompt), (prompt, chain))  # holds it: its id stays its own
            chains.append(chain)
        if missing:
            built = self.world.chains([prompts[k] for k in missing])
            for (k, key), chain in zip(missing.items(), built, strict=True):
                chains[k] = self._chains.put(key, chain)
                self._by_prompt.put(id(prompts[k]), (prompts[k], chain))
        return chains

    def _scored(self, prompts: Sequence[Prompt]) -> ScoredStack:
        """The prompts' `_chain`s stacked (K, max_len + 1, 2V + 1) with the scores of replies
        scored before (`ScoredStack`), cached by the prompt objects (the auction scores the same
        prompt objects round after round)."""
        key = tuple(map(id, prompts))
        seen = self._stacks.get(key)
        if seen is not None:
            return seen
        stacked = np.stack(self._chains_of(prompts))
        stacked.setflags(write=False)
        return self._stacks.put(key, ScoredStack(prompts, stacked))  # holds them: ids stay theirs

    def _table(self, prompt: Prompt) -> np.ndarray:
        """Exact next-token log-probs (max_len + 1, V + 1, V) of a prompt (`World.table`)."""
        key = ("table", World.table_key(prompt))
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        return self._tables.put(key, self.world.expand(self._chain(prompt)))

    def _sampler_tables(self, prompt: Prompt, params: SamplingParams) -> Sampler:
        """The sampler of a prompt under ``params`` (`Sampler`), cached."""
        seen = self._samplers.get((id(prompt), params.temperature, params.top_p))
        if seen is not None and seen[0] is prompt:
            key = seen[1]
        else:
            key = (World.table_key(prompt), params.temperature, params.top_p)
            self._samplers.put((id(prompt), params.temperature, params.top_p), (prompt, key))
        cached = self._tables.get(key)
        if cached is None:
            cached = self._tables.put(key, self._new_sampler_tables(prompt, params))
        return cached

    def _new_sampler_tables(self, prompt: Prompt, params: SamplingParams) -> Sampler:
        full = self.world.expand(self._chain(prompt))
        return Sampler.of(full, params.temperature, params.top_p)

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

    def _steps(
        self, replies: Sequence[Candidate | str | Sequence[int]]
    ) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray, np.ndarray]:
        """The replies' checked token ids and where their steps read a compact model flattened
        per prompt (`_chain_logprobs`): (ids, logit index, normaliser index, penalty), the last
        three (R, W) over replies padded to the longest (W).

        Step t of reply y reads the logit at pos·(2V + 1) + y_t and the normaliser at
        pos·(2V + 1) + V + y_{t−1} (y_{−1} = V, the start), and subtracts the repeat penalty
        when y_t = y_{t−1} (0 otherwise: x − 0.0 is x). Past max_len every step is −inf already
        (the last segment's successor must be EOS and nothing follows EOS), so pos = min(t,
        max_len) keeps it exact. A padding step reads position 0's start normaliser (finite) as
        both: its log-prob is 0. A reply whose ids are not a tuple of the vocabulary's ids is
        checked alone (`_reply_ids`), for its error message.
        """
        V, L, stride = self.vocab_size, self.max_len, 2 * self.vocab_size + 1
        repeat, vocabulary = self._p["repeat_penalty"], self._vocabulary
        ids = []
        for reply in replies:
            reply_ids = reply.token_ids if type(reply) is Candidate else reply
            try:
                checked = type(reply_ids) is tuple and vocabulary.issuperset(reply_ids)
            except TypeError:  # unhashable ids
                checked = False
            ids.append(reply_ids if checked else self._reply_ids(reply))
        width = max(1, max(map(len, ids)))
        logits, normalisers, penalties = [], [], []
        for reply_ids in ids:
            prev = V
            for t, token in enumerate(reply_ids):
                row = min(t, L) * stride
                logits.append(row + token)
                normalisers.append(row + V + prev)
                penalties.append(repeat if token == prev else 0.0)
                prev = token
            fill = width - len(reply_ids)
            logits += [2 * V] * fill
            normalisers += [2 * V] * fill
            penalties += [0.0] * fill
        shape = (len(ids), width)
        return (
            ids,
            np.array(logits, dtype=np.intp).reshape(shape),
            np.array(normalisers, dtype=np.intp).reshape(shape),
            np.array(penalties).reshape(shape),
        )

    def _sequence_logprobs(
        self, table: np.ndarray, padded: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        """Σ_t log table[t, y_{t−1}, y_t] for each padded reply y: (R,)."""
        rows, width = padded.shape
        valid = np.arange(width)[None, :] < lengths[:, None]
        tokens = np.where(valid, padded, 0)
        prev = np.concatenate([np.full((rows, 1), self.vocab_size), tokens[:, :-1]], axis=1)
        position = np.minimum(np.arange(width), self.max_len)[None, :]
        return np.where(valid, table[position, prev, tokens], 0.0).sum(axis=-1)

    def _chain_logprobs(self, chains: np.ndarray, steps: tuple) -> np.ndarray:
        """Σ_t log π_k(y_t | t, y_{t−1}) for K stacked compact `World.chain`s (K, L + 1, 2V + 1)
        and the replies' ``steps`` (`_steps`): (K, R), every prompt and reply in one gather.

        Each step's log-prob is the `World.table` entry, computed the same way: logit, minus the
        repeat penalty when the token repeats the previous one, minus the normaliser; −inf where
        the normaliser is −inf (after EOS). The sum runs over the steps in order (a cumulative
        sum: ``sum`` regroups from eight terms on), so a reply's score is the same in any batch.
        """
        _, logit, normaliser, penalty = steps
        flat = chains.reshape(len(chains), -1)
        logits = flat[:, logit] - penalty
        lse = flat[:, normaliser]
        if np.isfinite(lse).all():
            logprobs = logits - lse
        else:
            finite = np.isfinite(lse)
            logprobs = np.where(finite, logits - np.where(finite, lse, 0.0), -np.inf)
        return logprobs.cumsum(axis=-1)[..., -1]

    def score(
        self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str | Sequence[int]]
    ) -> np.ndarray:
        """Exact log π(reply | prompt), (len(prompts), len(replies)).

        A Candidate is scored by its token ids, a str is parsed as a complete reply (EOS appended),
        a sequence of ints is taken as is. Replies the model cannot produce score −inf. One
        vectorised gather scores every prompt and every reply these prompts have not scored
        before (`_chain_logprobs`); the others' scores are read back (`ScoredStack`). Row-major,
        as callers slice it by prompt.
        """
        if not prompts or not replies:
            for reply in replies:
                self._reply_ids(reply)
            return np.zeros((len(prompts), len(replies)))
        stack = self._scored(prompts)
        found = stack.find(replies)
        if None not in found:
            return stack.take(found)
        new = [k for k, column in enumerate(found) if column is None]
        steps = self._steps([replies[k] for k in new])
        fresh = self._chain_logprobs(stack.chains, steps)
        stack.remember(steps[0], fresh)
        scores = np.empty((len(prompts), len(replies)))
        scores[:, new] = fresh
        old = [k for k, column in enumerate(found) if column is not None]
        scores[:, old] = stack.take([found[k] for k in old])
        return scores

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        """Exact next-token log-probs (len(prompts), V) after each prompt's reply prefix."""
        require(
            len(prompts) == len(prefixes),
            f"next_token_logprobs needs one prefix per prompt, got {len(prompts)} prompts and "
            f"{len(prefixes)} prefixes",
        )
        V = self.vocab_size
        rows = np.empty((len(prompts), V))
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
            prev = ids[-1] if ids else V
            position = self._chain(prompt)[len(ids)]
            logits = position[:V].copy()
            if prev < V:
                logits[prev] -= self._p["repeat_penalty"]
            lse = position[V + prev]  # finite: prev is not EOS
            rows[row] = logits - lse
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
        """n replies of at most ``cap`` segments by inverse-CDF draws, one uniform per position:
        the token is the number of entries of its CDF row at or below the uniform."""
        sampler = self._sampler_tables(prompt, params)
        steps = cap + 1 if cap == self.max_len else cap  # the forced EOS after max_len segments
        uniforms = np.random.default_rng(seeds).random((n, steps)).tolist()
        eos = self._eos
        drawn = sampler.draw(uniforms, eos)
        known = sampler.replies
        candidates = [known.get(ids) for ids in drawn]
        if not all(candidates):  # replies not drawn before (None): their two log-probs
            new = [ids for ids in dict.fromkeys(drawn) if ids not in known]
            proposal, model = sampler.logprobs(new)
            texts = self.segment_texts
            made = {}
            for ids, p, m in zip(new, proposal, model, strict=True):
                words = ids[:-1] if ids[-1] == eos else ids
                made[ids] = Candidate(" ".join([texts[i] for i in words]), ids, p, m)
                sampler.remember(ids, made[ids])
            candidates = [
                made[ids] if c is None else c for ids, c in zip(drawn, candidates, strict=True)
            ]
        return candidates
