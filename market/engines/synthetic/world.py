"""The synthetic engine's world model: its vocabulary and the exact next-token table of a prompt.

Tokens. A reply is a sequence of *segments*, each one token of a small fixed vocabulary built from
the `Catalog` at construction (ids in this order):

- generic content: a bank of sentences that fit any question ("Set a clear goal first.");
- topic content: ``phrases_per_topic`` sentences for each topic of the catalog ("Play along with
  a metronome."), from a small bank per topic or a template naming the topic;
- one brand mention per catalog brand, "<Brand> can help with <its first topic>." — the text holds
  the brand name exactly, since the market detects mentions by name;
- EOS, the end of the reply (rendered as nothing).

A brand missing from the catalog raises `EngineError`: the vocabulary never depends on the prompts
seen, so a reply's log-probability never depends on the order of calls.

Reading a prompt. The model reads the structured `Prompt`'s fields, never its text: the role, the
query's text (its per-query noise) and topic (the `Query`'s own, else ``Catalog.query_topics``;
none when unknown), and the brands' names. A brand's topics are the catalog's (a `Brand` that
carries topics must agree with it), and rel(b, x) is `market.prompts.is_relevant` — the market's
one definition. Descriptions and the prompt style do not change the model.

Model. Given the prompt, the next segment at position t (segments already emitted) with previous
token ``prev`` has log-probability ``log softmax(logits_t − repeat_penalty·[v = prev])``:

- reference π_ref(·|x): a query x with topic T favours its own topic's segments
  (``on_topic_logit``) over generic ones (``generic_logit``) and other topics'
  (``off_topic_logit``); each content logit carries a fixed per-query, per-position perturbation
  ``content_noise · N(0, 1)`` drawn from a SeedSequence keyed by (``seed``, blake2b(x)); brand
  mentions are rare, ``brand_logit + relevance_bonus · rel(b, x)``; EOS has logit −inf at t = 0,
  ``eos_logit + eos_growth · (t − 1)`` for 1 ≤ t < ``max_len``, and is certain at t = ``max_len``.
- advertiser π_i (role "advertiser", brand b): π_ref's logits plus, at every content position,
  ``ad_boost`` on b's mention, ``topic_pull`` on b's own topics' segments, and ``− rival_penalty``
  on the mentions of b's competitors (brands sharing one of b's topics: an LLM told to advertise b
  does not promote them; brands of other topics are left alone). When b has nothing to do with the
  question (rel(b, x) = 0, T known, b has topics) it *shoehorns*: T's segments lose ``shoehorn`` in
  logit and b's own topics gain, at each position, exactly the probability mass T lost (computed
  on π_ref's logits plus the pull), so generic content, EOS and other topics keep their
  probability and the shoehorning reads as "on-topic replies are unlikely" rather than as "short
  or generic replies are likely". Rewards r_i = log π_i(y|x) − log π_ref(y|x) (App. C.1) are
  therefore large for replies naming b, a little negative for replies that do not (the normaliser
  grows by b's boost), lower for replies naming a competitor, and, for an irrelevant b, negative
  by about ``shoehorn`` per on-topic segment.
- context-aware π_con (role "context", k brands; footnote 3, App. B.4): π_ref's logits plus, for
  every listed brand b, ``con_boost · w_k(b)`` on b's mention with the diluted weight
  ``w_k(b) = (rel_floor + (1 − rel_floor) · rel(b, x)) / k ** dilution``: it answers the question
  (no topic drift) and names the listed brands, relevant ones far more often, and every brand's
  boost shrinks as more brands are listed, on top of the mass the normalisation spreads among them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from market.engines.base import Catalog, EngineError
from market.engines.synthetic.normaliser import repeat_normalisers
from market.engines.synthetic.phrases import (
    GENERIC_PHRASES,
    TOPIC_PHRASES,
    TOPIC_TEMPLATES,
    topic_label,
)
from market.lru import LRU
from market.mechanisms.mosaic import logsumexp
from market.prompts import Brand, Prompt, Query, as_query, is_relevant


def require(condition: bool, message: str, field: str | None = None) -> None:
    """Raise `EngineError` (about engine kwarg ``field``, when given) unless ``condition``."""
    if not condition:
        raise EngineError(message, field=field)


def log_normalise(z: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis; a row that is all −inf stays all −inf (no NaN)."""
    lse = logsumexp(z, axis=-1)[..., None]
    return np.where(np.isfinite(lse), z - np.where(np.isfinite(lse), lse, 0.0), -np.inf)


def _query_key(query: str) -> int:
    """A stable 64-bit key of the query text (never Python's salted hash())."""
    digest = hashlib.blake2b(query.encode("utf-8"), digest_size=8, person=b"admarket-q").digest()
    return int.from_bytes(digest, "little")


class World:
    """The vocabulary of a catalog and the model's exact next-token tables (module docstring).

    ``params``: the logits and instruction strengths, already checked finite (see
    `SyntheticEngine`); ``max_len``: most segments a reply has; ``seed``: the content noise.
    """

    def __init__(
        self,
        catalog: Catalog,
        params: Mapping[str, float],
        *,
        max_len: int,
        seed: int,
        phrases_per_topic: int,
        cache_size: int,
    ) -> None:
        self.max_len = max_len
        self.seed = seed
        self._p = dict(params)
        self._build_vocabulary(catalog, phrases_per_topic)
        self._query_logits_cache = LRU(cache_size)
        self._steer_rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # `_steer_row`

    # ----------------------------------------------------------------------------- vocabulary

    def _build_vocabulary(self, catalog: Catalog, per_topic: int) -> None:
        for brand, own in catalog.brand_topics.items():
            require(
                not isinstance(own, str) and all(isinstance(t, str) and t for t in own),
                f"Catalog.brand_topics[{brand!r}] must be a tuple of topic names, got {own!r}",
            )
        for query, topic in catalog.query_topics.items():
            require(
                isinstance(topic, str) and topic,
                f"Catalog.query_topics[{query!r}] must be a topic name, got {topic!r}",
            )
        brand_topics = {str(b): tuple(ts) for b, ts in catalog.brand_topics.items()}
        self._query_topics = dict(catalog.query_topics)
        for brand in brand_topics:
            require(
                brand.strip() != "" and " " not in brand and "," not in brand,
                f"catalog brand {brand!r}: brand names must be single words without spaces or "
                "commas (replies mention a brand by its one-word name)",
            )
        topics = sorted(
            {t for ts in brand_topics.values() for t in ts} | set(self._query_topics.values())
        )
        texts: list[str] = list(GENERIC_PHRASES)
        segment_topic: list[int] = [-1] * len(GENERIC_PHRASES)
        for index, topic in enumerate(topics):
            bank = TOPIC_PHRASES.get(topic) or tuple(
                t.format(topic=topic_label(topic)) for t in TOPIC_TEMPLATES
            )
            texts.extend(bank[:per_topic])
            segment_topic.extend([index] * per_topic)
        self.brands: tuple[str, ...] = tuple(sorted(brand_topics))
        first_brand = len(texts)
        for brand in self.brands:
            own = brand_topics[brand]
            texts.append(
                f"{brand} can help with {topic_label(own[0])}." if own else f"{brand} can help."
            )
            segment_topic.append(-1)
        texts.append("")  # EOS
        duplicates = sorted({t for t in texts if texts.count(t) > 1})
        require(
            not duplicates,
            f"catalog topics render to the same segment text {duplicates}; rename the topics so "
            "their labels differ",
        )
        self.topics: tuple[str, ...] = tuple(topics)
        self.segment_texts: tuple[str, ...] = tuple(texts)
        self.vocab_size = len(texts)
        self.eos = self.vocab_size - 1
        self.n_content = first_brand
        self.brand_id = {b: first_brand + i for i, b in enumerate(self.brands)}
        self._brand_topics = brand_topics
        topic_index = {t: i for i, t in enumerate(topics)}
        segment_topic_arr = np.asarray(segment_topic + [-1], dtype=np.int64)
        self._topic_mask = {
            t: segment_topic_arr == topic_index[t] for t in topics
        }  # topic -> (V,) bool, that topic's content segments
        self._generic_mask = np.zeros(self.vocab_size, dtype=bool)
        self._generic_mask[: len(GENERIC_PHRASES)] = True
        self._text_to_id = {t: i for i, t in enumerate(texts[:-1])}

    @staticmethod
    def catalog_digest(catalog: Catalog) -> str:
        canonical = repr(
            (
                sorted((str(b), tuple(map(str, ts))) for b, ts in catalog.brand_topics.items()),
                sorted((str(q), str(t)) for q, t in catalog.query_topics.items()),
            )
        )
        return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()

    def decode(self, ids: Sequence[int]) -> str:
        """Segments' sentences joined by spaces (EOS renders as nothing)."""
        return " ".join(self.segment_texts[i] for i in ids if i != self.eos)

    def parse_text(self, text: str) -> tuple[int, ...]:
        """Token ids of a complete reply's text (segments then EOS); the inverse of `decode`."""
        require(isinstance(text, str), f"reply text must be a str, got {type(text).__name__}")
        parses = self._parses(text.strip(), 0, {})
        require(
            len(parses) == 1,
            f"reply text {text[:80]!r} is not a sequence of this engine's segments"
            if not parses
            else f"reply text {text[:80]!r} splits into segments in more than one way",
        )
        return (*parses[0], self.eos)

    def _parses(self, text: str, start: int, memo: dict[int, list[tuple[int, ...]]]):
        if start == len(text):
            return [()]
        if start in memo:
            return memo[start]
        found: list[tuple[int, ...]] = []
        for segment, token in self._text_to_id.items():
            end = start + len(segment)
            if not text.startswith(segment, start):
                continue
            if end == len(text):
                found.extend((token, *rest) for rest in self._parses(text, end, memo))
            elif text[end] == " ":
                found.extend((token, *rest) for rest in self._parses(text, end + 1, memo))
            if len(found) > 1:
                break
        memo[start] = found
        return found

    # ----------------------------------------------------------------------------- reading prompts

    def check_brand(self, name: str, where: str) -> None:
        require(
            name in self.brand_id,
            f"brand {name!r} in the {where} is not in the synthetic engine's catalog; add it to "
            f"Catalog.brand_topics (catalog brands: {', '.join(self.brands) or 'none'})",
        )

    def brand_topics(self, brand: Brand | str, where: str = "prompt") -> tuple[str, ...]:
        """A catalog brand's topics; a `Brand` that carries topics must carry the catalog's."""
        name = brand.name if isinstance(brand, Brand) else brand
        self.check_brand(name, where)
        known = self._brand_topics[name]
        if isinstance(brand, Brand) and brand.topics:
            require(
                set(brand.topics) == set(known),
                f"brand {name!r} in the {where} has topics {list(brand.topics)} but the synthetic "
                f"engine's catalog gives {list(known)}: build both from the same scenario",
            )
        return known

    def query_topic(self, query: Query | str) -> str | None:
        """The query's topic: its own, else the catalog's for its text, else none."""
        query = as_query(query)
        topic = query.topic if query.topic is not None else self._query_topics.get(query.text)
        require(
            topic is None or topic in self._topic_mask,
            f"query topic {topic!r} is not a topic of the synthetic engine's catalog "
            f"({', '.join(self.topics) or 'none'}): add a query or brand of that topic to the "
            "Catalog",
        )
        return topic

    def relevance(self, brand: Brand | str, query: Query | str) -> float:
        """rel(b, x) ∈ {0, 1}: `market.prompts.is_relevant` on the brand's and query's topics."""
        return 1.0 if is_relevant(self.brand_topics(brand), self.query_topic(query)) else 0.0

    # ----------------------------------------------------------------------------- the model

    def query_logits(self, query: Query) -> np.ndarray:
        """π_ref's logits (max_len + 1, V) for query x; row t is the position after t segments."""
        topic = self.query_topic(query)
        key = (query.text, topic)
        cached = self._query_logits_cache.get(key)
        if cached is not None:
            return cached
        p, V, L = self._p, self.vocab_size, self.max_len
        content = np.full(V, p["off_topic_logit"])
        content[self._generic_mask] = p["generic_logit"]
        if topic is not None:
            content[self._topic_mask[topic]] = p["on_topic_logit"]
        for brand, token in self.brand_id.items():
            relevant = is_relevant(self._brand_topics[brand], topic)
            content[token] = p["brand_logit"] + p["relevance_bonus"] * float(relevant)
        logits = np.tile(content, (L + 1, 1))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _query_key(query.text)]))
        logits[:L, : self.n_content] += p["content_noise"] * rng.standard_normal(
            (L, self.n_content)
        )
        logits[:, self.eos] = p["eos_logit"] + p["eos_growth"] * (np.arange(L + 1) - 1)
        logits[0, self.eos] = -np.inf
        logits[L, :] = -np.inf
        logits[L, self.eos] = 0.0
        logits.setflags(write=False)
        return self._query_logits_cache.put(key, logits)

    def advertiser_steer(self, brand: str, topic: str | None, base: np.ndarray) -> np.ndarray:
        """What "advertise ``brand``" adds to π_ref's content logits ``base`` (L, V) for a query of
        ``topic`` (module docstring). Shoehorning moves, at each position, the mass the query topic
        loses to the brand's own topics, so generic content and EOS keep their probability."""
        return self.advertiser_steers([brand], topic, base)[0]

    def advertiser_steers(
        self, brands: Sequence[str], topic: str | None, base: np.ndarray
    ) -> np.ndarray:
        """`advertiser_steer` of each brand for one query, (K, L, V): the mass the query topic
        loses is computed once for all of them."""
        p = self._p
        rows = [self._steer_row(brand) for brand in brands]  # (steer, own-topic mask) each
        delta = np.repeat(np.stack([steer for steer, _ in rows])[:, None, :], len(base), axis=1)
        if topic is None:
            return delta
        on_query = self._topic_mask[topic]
        lost = None
        for k, (brand, (_, own)) in enumerate(zip(brands, rows, strict=True)):
            if is_relevant(self._brand_topics[brand], topic) or not own.any():
                continue
            if lost is None:
                lost = np.exp(base[:, on_query]).sum(axis=1) * -np.expm1(-p["shoehorn"])
            gained = np.exp(base[:, own] + delta[k][:, own]).sum(axis=1)
            delta[k][:, on_query] -= p["shoehorn"]
            delta[k][:, own] += np.log1p(lost / gained)[:, None]
        return delta

    def _steer_row(self, brand: str) -> tuple[np.ndarray, np.ndarray]:
        """What "advertise ``brand``" adds at every position before any shoehorning (V,):
        ``ad_boost`` on its mention, ``topic_pull`` on its own topics' segments, ``−
        rival_penalty`` on its competitors' mentions (catalog brands sharing one of its topics);
        and the mask (V,) of its own topics' segments. Built once per brand."""
        cached = self._steer_rows.get(brand)
        if cached is None:
            p = self._p
            own_topics = set(self._brand_topics[brand])
            steer = np.zeros(self.vocab_size)
            for rival, token in self.brand_id.items():
                if rival != brand and own_topics & set(self._brand_topics[rival]):
                    steer[token] -= p["rival_penalty"]
            steer[self.brand_id[brand]] = p["ad_boost"]
            own = np.zeros(self.vocab_size, dtype=bool)
            for own_topic in own_topics:
                own |= self._topic_mask[own_topic]
            steer[own] += p["topic_pull"]
            cached = self._steer_rows[brand] = (steer, own)
        return cached

    def prompt_logits(self, prompt: Prompt) -> np.ndarray:
        """The logits (max_len + 1, V) of a structured prompt: π_ref's plus its role's steer."""
        return self._prompts_logits([prompt])[0]

    def _prompts_logits(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Each prompt's `prompt_logits`, stacked (K, max_len + 1, V); the advertiser prompts of
        one query are steered together (`advertiser_steers`)."""
        L = self.max_len
        logits = np.empty((len(prompts), L + 1, self.vocab_size))
        advertising: dict[tuple[str, str | None], list[int]] = {}  # query -> its prompts' rows
        for k, prompt in enumerate(prompts):
            for brand in prompt.brands:
                self.brand_topics(brand, f"{prompt.role} prompt")
            if prompt.role == "advertiser":
                advertising.setdefault((prompt.query.text, prompt.query.topic), []).append(k)
            else:
                logits[k] = self._listing_logits(prompt)
        for ks in advertising.values():
            query = prompts[ks[0]].query
            base = self.query_logits(query)
            logits[ks] = base
            brands = [prompts[k].brands[0].name for k in ks]
            logits[ks, :L] += self.advertiser_steers(brands, self.query_topic(query), base[:L])
        return logits

    def _listing_logits(self, prompt: Prompt) -> np.ndarray:
        """A reference or context prompt's logits: π_ref's, plus π_con's diluted boost on every
        brand the context prompt lists (module docstring)."""
        logits = self.query_logits(prompt.query).copy()
        if prompt.role != "context":
            return logits
        p = self._p
        names = [b.name for b in prompt.brands]
        require(
            len(set(names)) == len(names),
            f"the context prompt lists a brand twice ({names}); list each entrant once",
        )
        topic = self.query_topic(prompt.query)
        k = len(names)
        for name in names:
            rel = float(is_relevant(self._brand_topics[name], topic))
            weight = (p["rel_floor"] + (1 - p["rel_floor"]) * rel) / k ** p["dilution"]
            logits[: self.max_len, self.brand_id[name]] += weight * p["con_boost"]
        return logits

    def chain(self, prompt: Prompt) -> np.ndarray:
        """The prompt's next-token model in compact form, (max_len + 1, 2V + 1): row t holds the
        logits of position t (columns :V) and, for every previous token (start = V), the log of
        the normaliser of its next-token distribution (columns V:).

        Log-prob of token y after ``prev`` at position t (`table`, `expand`):
        ``logits[t, y] − repeat_penalty·[y = prev] − lse[t, prev]``, −inf after EOS. A (V + 1)-fold
        smaller table than `table`, so many prompts' models fit in one gather.
        """
        return self.chains([prompt])[0]

    def chains(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        """Each prompt's `chain`, computed together: the advertiser prompts of one query get their
        steers in one call (`advertiser_steers`) and every row's normaliser comes from one
        `repeat_normalisers` call. The same numbers as one prompt at a time."""
        V, rows = self.vocab_size, self.max_len + 1
        logits = self._prompts_logits(prompts)
        lse = repeat_normalisers(logits.reshape(-1, V), self._p["repeat_penalty"], self.eos)
        stacked = np.concatenate([logits, lse.reshape(len(prompts), rows, V + 1)], axis=2)
        chains = [chain.copy() for chain in stacked]  # a cached chain holds no other's memory
        for chain in chains:
            chain.setflags(write=False)
        return chains

    def expand(self, chain: np.ndarray) -> np.ndarray:
        """The full table (max_len + 1, V + 1, V) of a compact `chain`: exactly `table`'s numbers."""
        V = self.vocab_size
        logits, lse = chain[:, :V], chain[:, V:, None]
        z = np.repeat(logits[:, None, :], V + 1, axis=1)
        diagonal = np.arange(V)
        z[:, diagonal, diagonal] -= self._p["repeat_penalty"]
        z[:, self.eos, :] = -np.inf
        finite = np.isfinite(lse)
        table = np.where(finite, z - np.where(finite, lse, 0.0), -np.inf)
        table.setflags(write=False)
        return table

    def table(self, prompt: Prompt) -> np.ndarray:
        """Exact next-token log-probs (max_len + 1, V + 1, V): [position, previous token, token].

        Previous index V is the start of the reply; the EOS row is all −inf (nothing follows it):
        ``log softmax`` over tokens of ``logits_t − repeat_penalty·[token = prev]``.
        """
        return self.expand(self.chain(prompt))

    @staticmethod
    def table_key(prompt: Prompt) -> tuple:
        """What the table of a prompt depends on (descriptions and style do not matter)."""
        query = prompt.query
        return (prompt.role, query.text, query.topic, *[(b.name, b.topics) for b in prompt.brands])
