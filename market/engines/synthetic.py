"""An exact synthetic LLM: enumerable replies with known log-probabilities, for ground truth.

It reads the same `Prompt`s the hf engine gets (through `market.prompts.parse_prompt`) and answers
with short replies whose probability under every prompt is known exactly, so that tests can check
mechanisms against closed forms and large studies run thousands of rounds per second.

Tokens. A reply is a sequence of *segments*, each one token of a small fixed vocabulary built from
the `Catalog` at construction (ids in this order):

- generic content: a bank of sentences that fit any question ("Set a clear goal first.");
- topic content: ``phrases_per_topic`` sentences for each topic of the catalog ("Play along with
  a metronome."), from a small bank per topic or a template naming the topic;
- one brand mention per catalog brand, "<Brand> can help with <its first topic>." — the text holds
  the brand name exactly, since the market detects mentions by name;
- EOS, the end of the reply (rendered as nothing).

A reply has 1 to ``max_len`` segments followed by EOS; ``SamplingParams.max_new_tokens`` caps the
number of segments a sampler may produce (a reply cut by that cap ends without EOS, as an hf reply
cut by ``max_new_tokens`` does). A brand missing from the catalog raises `EngineError`: the
vocabulary never depends on the prompts seen, so a reply's log-probability never depends on the
order of calls.

Model. Given the prompt, the next segment at position t (segments already emitted) with previous
token ``prev`` has log-probability ``log softmax(logits_t − repeat_penalty·[v = prev])``:

- reference π_ref(·|x): a query x with topic T (``Catalog.query_topics``; an unknown query has no
  topic) favours its own topic's segments (``on_topic_logit``) over generic ones
  (``generic_logit``) and other topics' (``off_topic_logit``); each content logit carries a fixed
  per-query, per-position perturbation ``content_noise · N(0, 1)`` drawn from a SeedSequence keyed
  by (``seed``, blake2b(x)); brand mentions are rare, ``brand_logit + relevance_bonus · rel(b, x)``
  with rel(b, x) = 1 when T is one of b's topics (``Catalog.brand_topics``), else 0; EOS has logit
  −inf at t = 0, ``eos_logit + eos_growth · (t − 1)`` for 1 ≤ t < ``max_len``, and is certain at
  t = ``max_len``.
- advertiser π_i (prompt "Answer the question advertising b, ..."): π_ref's logits plus, at every
  content position, ``ad_boost`` on b's mention, ``topic_pull`` on b's own topics' segments, and
  ``− rival_penalty`` on the mentions of b's competitors (brands sharing one of b's topics: an LLM
  told to advertise b does not promote them; brands of other topics are left alone). When b has
  nothing to do with the question (rel(b, x) = 0, T known, b has topics) it *shoehorns*: T's
  segments lose ``shoehorn`` in logit and b's own topics gain, at each position, exactly the
  probability mass T lost (computed on π_ref's logits plus the pull), so generic content, EOS and
  other topics keep their probability and the shoehorning reads as "on-topic replies are unlikely"
  rather than as "short or generic replies are likely" (lowering T alone would raise every other
  segment and EOS through the normaliser). Rewards r_i = log π_i(y|x) − log π_ref(y|x) (App. C.1)
  are therefore large for replies naming b, a little negative for replies that do not (the
  normaliser grows by b's boost), lower for replies naming a competitor, and, for an irrelevant b,
  negative by about ``shoehorn`` per on-topic segment.
- context-aware π_con (prompt listing k brands, footnote 3, App. B.4): π_ref's logits plus, for
  every listed brand b, ``con_boost · w_k(b)`` on b's mention with the diluted weight
  ``w_k(b) = (rel_floor + (1 − rel_floor) · rel(b, x)) / k ** dilution``: it answers the question
  (no topic drift) and names the listed brands, relevant ones far more often, and every brand's
  boost shrinks as more brands are listed, on top of the mass the normalisation spreads among them.
  On π_con's replies a relevant advertiser therefore expects a clearly positive reward and an
  irrelevant one a negative reward (App. B.4, Sec. 5.3.2).

With the defaults, a brand relevant to the query is rarely named by π_ref (under 1% of replies),
about half the time by its advertiser's LLM, and most often by π_con listing it alone; every listed
brand is named less often as more brands are listed (dilution), and an irrelevant listed brand far
less often than a relevant one. On π_con's replies a relevant entrant's expected reward is positive
and an irrelevant one's negative. tests/test_engine_synthetic.py checks each of these statements.
Replies have 1 to ``max_len`` segments.

Sampling. `generate` applies temperature and top-p per position as the hf engine does (tempered
softmax; keep the smallest set of tokens, in descending probability, whose mass reaches top_p;
renormalise) and reports the exact log-probability of each reply under that sampler
(``proposal_logprob``) and under the untempered model (``model_logprob``).

Exact support. `enumerate_support` lists every reply with its log-probability (about V ** max_len
replies: 170k for V = 21, max_len = 4); `score_support` and `support_logprobs` score the whole
support under several prompts in one vectorised call, e.g. to compute the optimal policy π_r of
equation (17) exactly; `geometric_mixture` gives π_r's normaliser log Z(x) and expectations under
π_r by a forward recursion, without enumerating, for catalogs too large to enumerate. Tables of
next-token log-probs are cached per prompt (pure functions of the prompt, so the cache never changes
a result).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from market.engines.base import (
    Candidate,
    Catalog,
    EngineError,
    EngineInfo,
    Prompt,
    SamplingParams,
)
from market.prompts import ParsedPrompt, parse_prompt

MODEL_NAME = "synthetic-v1"

GENERIC_PHRASES: tuple[str, ...] = (
    "Here is a short answer.",
    "Set a clear goal first.",
    "Start small and stay consistent.",
    "Track your progress as you go.",
    "Ask for feedback when you get stuck.",
    "Be patient with yourself.",
)

TOPIC_PHRASES: dict[str, tuple[str, ...]] = {
    "music": (
        "Practice scales slowly every day.",
        "Learn a song you love by ear.",
        "Play along with a metronome.",
        "Record yourself and listen back.",
    ),
    "cooking": (
        "Read the whole recipe before you start.",
        "Prepare every ingredient in advance.",
        "Taste as you cook and adjust the seasoning.",
        "Keep your knives sharp.",
    ),
    "fitness": (
        "Warm up for ten minutes first.",
        "Mix strength and cardio during the week.",
        "Rest well between hard workouts.",
        "Drink water before and after exercise.",
    ),
    "travel": (
        "Book flights a few weeks ahead.",
        "Pack light and bring layers.",
        "Keep copies of your documents.",
        "Learn a few local phrases.",
    ),
    "finance": (
        "Write down a monthly budget.",
        "Build an emergency fund first.",
        "Pay off high-interest debt early.",
        "Invest regularly in low-cost funds.",
    ),
    "technology": (
        "Keep your software up to date.",
        "Back up your files regularly.",
        "Use a password manager.",
        "Restart the device before deeper fixes.",
    ),
    "language": (
        "Learn the most common words first.",
        "Speak with native speakers often.",
        "Review vocabulary with flashcards.",
        "Watch shows with subtitles.",
    ),
    "privacy": (
        "Turn on two-factor authentication.",
        "Use a different password for every account.",
        "Review the privacy settings of your apps.",
        "Avoid logging in on public networks.",
    ),
    "pets": (
        "Keep a regular feeding schedule.",
        "Reward good behaviour right away.",
        "Take your pet for yearly checkups.",
        "Give your pet daily exercise.",
    ),
    "education": (
        "Study in short focused sessions.",
        "Explain the idea in your own words.",
        "Work through practice problems.",
        "Review your notes the next day.",
    ),
    "home": (
        "Fix small problems before they grow.",
        "Keep a basic toolkit at hand.",
        "Declutter one room at a time.",
        "Check the smoke alarms twice a year.",
    ),
    "gardening": (
        "Check how much sun each spot gets.",
        "Water deeply but not too often.",
        "Improve the soil with compost.",
        "Start with easy plants.",
    ),
}

TOPIC_TEMPLATES: tuple[str, ...] = (
    "Learn the basics of {topic} first.",
    "Practice {topic} a little every day.",
    "Follow one good {topic} guide.",
    "Try a simple {topic} example today.",
)

MAX_SUPPORT = 5_000_000


@dataclass(frozen=True, eq=False)
class Support:
    """Every reply a prompt can produce, with its exact log-probability.

    ``token_ids[s]`` is reply s (ending with EOS unless it is cut at a ``max_len`` below the
    engine's); ``logprobs[s]`` its log-probability (``exp(logprobs).sum() == 1``). Replies are
    ordered by length, then lexicographically. ``padded_ids`` (S, max_len + 1) holds the same ids,
    padded with -1 beyond ``lengths``, for vectorised scoring (`SyntheticEngine.score_support`).
    """

    token_ids: tuple[tuple[int, ...], ...]
    logprobs: np.ndarray
    padded_ids: np.ndarray
    lengths: np.ndarray


@dataclass(frozen=True, eq=False)
class GeometricMixture:
    """The distribution q(y) ∝ Π_k π_k(y | x) ** weights[k] over every reply, summarised exactly.

    With prompts (π_ref, π_1, ..., π_n) and weights (1 − Σ_i v_i / τ, v_1 / τ, ..., v_n / τ), q is
    the optimal LLM π_r of equation (2) for rewards r_i = v_i (log π_i − log π_ref) (equation (17)
    for v_i = τ = 1). ``log_normaliser`` is log Σ_y Π_k π_k(y) ** w_k (log Z(x));
    ``expected_logprobs[k]`` is E_{y∼q}[log π_k(y | x)].
    """

    weights: np.ndarray
    log_normaliser: float
    expected_logprobs: np.ndarray

    def logprob(self, logprobs: np.ndarray) -> np.ndarray:
        """log q(y) from the (K, R) matrix of log π_k(y) (e.g. `SyntheticEngine.score`)."""
        return self.weights @ np.asarray(logprobs) - self.log_normaliser

    @property
    def entropy(self) -> float:
        """H(q) = −E_q[log q(y)]."""
        return float(self.log_normaliser - self.weights @ self.expected_logprobs)


def _logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """log Σ exp(z) along ``axis``, keeping the axis; rows that are all −inf give −inf."""
    m = np.max(z, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m_safe + np.log(np.sum(np.exp(z - m_safe), axis=axis, keepdims=True))


def _log_normalise(z: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis; a row that is all −inf stays all −inf (no NaN)."""
    lse = _logsumexp(z)
    return np.where(np.isfinite(lse), z - np.where(np.isfinite(lse), lse, 0.0), -np.inf)


def sampler_logprobs(logprobs: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """The next-token log-distribution a temperature / top-p sampler draws from.

    ``logprobs`` (..., V) are the model's exact next-token log-probabilities. Temperature: softmax
    of logprobs / temperature. Top-p: sort tokens by descending probability (ties by token id) and
    keep each token whose preceding mass is < top_p — the smallest prefix whose mass reaches top_p,
    as the hf sampler does — then renormalise. Impossible tokens stay −inf; rows that are all −inf
    stay so.
    """
    tempered = _log_normalise(logprobs / temperature)
    if top_p >= 1.0:
        return tempered
    probs = np.exp(tempered)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = (mass_before < top_p) & (sorted_probs > 0)
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return _log_normalise(np.where(keep, tempered, -np.inf))


def _query_key(query: str) -> int:
    """A stable 64-bit key of the query text (never Python's salted hash())."""
    digest = hashlib.blake2b(query.encode("utf-8"), digest_size=8, person=b"admarket-q").digest()
    return int.from_bytes(digest, "little")


def _topic_label(topic: str) -> str:
    return topic.replace("_", " ").strip()


class _LRU:
    """A small least-recently-used cache of pure-function results."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> Any:
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise EngineError(message)


class SyntheticEngine:
    """The exact synthetic engine (see the module docstring for the model).

    Parameters (all keyword): ``catalog`` (brands' and queries' topics; brands named in prompts must
    be in it), ``max_len`` (most segments in a reply, default 4), ``seed`` (the per-query content
    perturbations), the logits ``generic_logit`` (0), ``on_topic_logit`` (2), ``off_topic_logit``
    (−3), ``brand_logit`` (−4), ``relevance_bonus`` (1.5), ``eos_logit`` (1.5), ``eos_growth`` (1),
    ``content_noise`` (0.5), ``repeat_penalty`` (3), the instructions' ``ad_boost`` (5),
    ``con_boost`` (5), ``topic_pull`` (0.5), ``shoehorn`` (0.5), ``rival_penalty`` (1),
    ``rel_floor`` (0.15), ``dilution`` (0.25), and ``phrases_per_topic`` (3, at most 4).
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
    ) -> None:
        catalog = Catalog() if catalog is None else catalog
        _require(
            isinstance(catalog, Catalog),
            f"catalog must be a market.engines.base.Catalog, got {type(catalog).__name__}",
        )
        for name, value in (("max_len", max_len), ("phrases_per_topic", phrases_per_topic)):
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be an integer >= 1, got {value!r}",
            )
        _require(
            phrases_per_topic <= len(TOPIC_TEMPLATES),
            f"phrases_per_topic must be <= {len(TOPIC_TEMPLATES)}, got {phrases_per_topic}",
        )
        _require(
            isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
            f"seed must be an integer >= 0, got {seed!r}",
        )
        _require(
            isinstance(cache_size, int) and cache_size >= 1,
            f"cache_size must be an integer >= 1, got {cache_size!r}",
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
            _require(
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value),
                f"{name} must be a finite number, got {value!r}",
            )
        for name in ("content_noise", "repeat_penalty", "dilution"):
            _require(params[name] >= 0, f"{name} must be >= 0, got {params[name]}")
        _require(0 <= rel_floor <= 1, f"rel_floor must be in [0, 1], got {rel_floor}")

        self.max_len = max_len
        self.seed = seed
        self.catalog = catalog
        self._p = {k: float(v) for k, v in params.items()}
        self._build_vocabulary(catalog, phrases_per_topic)
        self._tables = _LRU(cache_size)
        self._query_logits_cache = _LRU(cache_size)
        self.info = EngineInfo(
            engine="synthetic",
            model=MODEL_NAME,
            extra={
                **self._p,
                "max_len": max_len,
                "seed": seed,
                "phrases_per_topic": phrases_per_topic,
                "vocab_size": self.vocab_size,
                "catalog_digest": self._catalog_digest(catalog),
            },
        )

    # ----------------------------------------------------------------------------- vocabulary

    def _build_vocabulary(self, catalog: Catalog, per_topic: int) -> None:
        for brand, own in catalog.brand_topics.items():
            _require(
                not isinstance(own, str) and all(isinstance(t, str) and t for t in own),
                f"Catalog.brand_topics[{brand!r}] must be a tuple of topic names, got {own!r}",
            )
        for query, topic in catalog.query_topics.items():
            _require(
                isinstance(topic, str) and topic,
                f"Catalog.query_topics[{query!r}] must be a topic name, got {topic!r}",
            )
        brand_topics = {str(b): tuple(ts) for b, ts in catalog.brand_topics.items()}
        self._query_topics = dict(catalog.query_topics)
        for brand in brand_topics:
            _require(
                brand.strip() != "" and " " not in brand and "," not in brand,
                f"catalog brand {brand!r}: brand names must be single words without spaces or "
                "commas (the prompt templates rely on it)",
            )
        topics = sorted(
            {t for ts in brand_topics.values() for t in ts} | set(self._query_topics.values())
        )
        texts: list[str] = list(GENERIC_PHRASES)
        segment_topic: list[int] = [-1] * len(GENERIC_PHRASES)
        for index, topic in enumerate(topics):
            bank = TOPIC_PHRASES.get(topic) or tuple(
                t.format(topic=_topic_label(topic)) for t in TOPIC_TEMPLATES
            )
            texts.extend(bank[:per_topic])
            segment_topic.extend([index] * per_topic)
        self.brands: tuple[str, ...] = tuple(sorted(brand_topics))
        first_brand = len(texts)
        for brand in self.brands:
            own = brand_topics[brand]
            texts.append(
                f"{brand} can help with {_topic_label(own[0])}." if own else f"{brand} can help."
            )
            segment_topic.append(-1)
        texts.append("")  # EOS
        duplicates = sorted({t for t in texts if texts.count(t) > 1})
        _require(
            not duplicates,
            f"catalog topics render to the same segment text {duplicates}; rename the topics so "
            "their labels differ",
        )
        self.topics: tuple[str, ...] = tuple(topics)
        self.segment_texts: tuple[str, ...] = tuple(texts)
        self.vocab_size = len(texts)
        self._eos = self.vocab_size - 1
        self._n_content = first_brand
        self._brand_id = {b: first_brand + i for i, b in enumerate(self.brands)}
        self._brand_topics = brand_topics
        topic_index = {t: i for i, t in enumerate(topics)}
        segment_topic_arr = np.asarray(segment_topic + [-1], dtype=np.int64)
        self._topic_mask = {
            t: segment_topic_arr == topic_index[t] for t in topics
        }  # topic -> (V,) bool, that topic's content segments
        self._generic_mask = np.zeros(self.vocab_size, dtype=bool)
        self._generic_mask[: len(GENERIC_PHRASES)] = True
        self._brand_mask = np.zeros(self.vocab_size, dtype=bool)
        self._brand_mask[list(self._brand_id.values())] = True
        self._text_to_id = {t: i for i, t in enumerate(texts[:-1])}

    @staticmethod
    def _catalog_digest(catalog: Catalog) -> str:
        canonical = repr(
            (
                sorted((str(b), tuple(map(str, ts))) for b, ts in catalog.brand_topics.items()),
                sorted((str(q), str(t)) for q, t in catalog.query_topics.items()),
            )
        )
        return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()

    @property
    def eos_token_id(self) -> int:
        """EOS: the last id of the vocabulary."""
        return self._eos

    def brand_token_id(self, brand: str) -> int:
        """The id of the segment that mentions ``brand``."""
        self._check_brand(brand, "brand_token_id")
        return self._brand_id[brand]

    def decode(self, token_ids: Sequence[int]) -> str:
        """The reply's text: its segments' sentences joined by spaces (EOS renders as nothing)."""
        ids = self._as_ids(token_ids, "token_ids")
        return " ".join(self.segment_texts[i] for i in ids if i != self._eos)

    def parse_text(self, text: str) -> tuple[int, ...]:
        """Token ids of a complete reply's text (segments then EOS); the inverse of `decode`."""
        _require(isinstance(text, str), f"reply text must be a str, got {type(text).__name__}")
        body = text.strip()
        parses = self._parses(body, 0, {})
        _require(
            len(parses) == 1,
            f"reply text {text[:80]!r} is not a sequence of this engine's segments"
            if not parses
            else f"reply text {text[:80]!r} splits into segments in more than one way",
        )
        return (*parses[0], self._eos)

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

    # ----------------------------------------------------------------------------- the model

    def _check_brand(self, brand: str, where: str) -> None:
        _require(
            brand in self._brand_id,
            f"brand {brand!r} in the {where} is not in the synthetic engine's catalog; add it to "
            f"Catalog.brand_topics (catalog brands: {', '.join(self.brands) or 'none'})",
        )

    def relevance(self, brand: str, query: str) -> float:
        """rel(b, x): 1 when the query's topic is one of the brand's topics, else 0."""
        self._check_brand(brand, "relevance query")
        topic = self._query_topics.get(query)
        return 1.0 if topic is not None and topic in self._brand_topics[brand] else 0.0

    def _query_logits(self, query: str) -> np.ndarray:
        """π_ref's logits (max_len + 1, V) for query x; row t is the position after t segments."""
        cached = self._query_logits_cache.get(query)
        if cached is not None:
            return cached
        p, V, L = self._p, self.vocab_size, self.max_len
        topic = self._query_topics.get(query)
        content = np.full(V, p["off_topic_logit"])
        content[self._generic_mask] = p["generic_logit"]
        if topic is not None:
            content[self._topic_mask[topic]] = p["on_topic_logit"]
        for brand, token in self._brand_id.items():
            content[token] = p["brand_logit"] + p["relevance_bonus"] * self.relevance(brand, query)
        logits = np.tile(content, (L + 1, 1))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _query_key(query)]))
        logits[:L, : self._n_content] += p["content_noise"] * rng.standard_normal(
            (L, self._n_content)
        )
        logits[:, self._eos] = p["eos_logit"] + p["eos_growth"] * (np.arange(L + 1) - 1)
        logits[0, self._eos] = -np.inf
        logits[L, :] = -np.inf
        logits[L, self._eos] = 0.0
        logits.setflags(write=False)
        return self._query_logits_cache.put(query, logits)

    def _advertiser_steer(self, brand: str, query: str, base: np.ndarray) -> np.ndarray:
        """What "advertise ``brand``" adds to π_ref's content logits ``base`` (L, V): see the module
        docstring. Shoehorning moves, at each position, the mass the query topic loses to the
        brand's own topics, so generic content and EOS keep their probability."""
        p = self._p
        delta = np.zeros_like(base)
        own_topics = set(self._brand_topics[brand])
        for rival, token in self._brand_id.items():
            if rival != brand and own_topics & set(self._brand_topics[rival]):
                delta[:, token] -= p["rival_penalty"]
        delta[:, self._brand_id[brand]] = p["ad_boost"]
        own = np.zeros(self.vocab_size, dtype=bool)
        for topic in own_topics:
            own |= self._topic_mask[topic]
        delta[:, own] += p["topic_pull"]
        query_topic = self._query_topics.get(query)
        if query_topic is None or self.relevance(brand, query) or not own.any():
            return delta
        on_query = self._topic_mask[query_topic]
        lost = np.exp(base[:, on_query]).sum(axis=1) * -np.expm1(-p["shoehorn"])
        gained = np.exp(base[:, own] + delta[:, own]).sum(axis=1)
        delta[:, on_query] -= p["shoehorn"]
        delta[:, own] += np.log1p(lost / gained)[:, None]
        return delta

    def _prompt_logits(self, parsed: ParsedPrompt) -> np.ndarray:
        logits = self._query_logits(parsed.query).copy()
        p = self._p
        names = [b.name for b in parsed.brands]
        for name in names:
            self._check_brand(name, f"{parsed.role} prompt")
        if parsed.role == "advertiser":
            logits[: self.max_len] += self._advertiser_steer(
                names[0], parsed.query, logits[: self.max_len]
            )
        elif parsed.role == "context":
            _require(
                len(set(names)) == len(names),
                f"the context prompt lists a brand twice ({names}); list each entrant once",
            )
            k = len(names)
            for name in names:
                rel = self.relevance(name, parsed.query)
                weight = (p["rel_floor"] + (1 - p["rel_floor"]) * rel) / k ** p["dilution"]
                logits[: self.max_len, self._brand_id[name]] += weight * p["con_boost"]
        return logits

    def _table(self, prompt: Prompt) -> np.ndarray:
        """Exact next-token log-probs (max_len + 1, V + 1, V): [position, previous token, token].

        Previous index V is the start of the reply; the EOS row is all −inf (nothing follows it).
        """
        _require(
            isinstance(prompt, Prompt),
            f"prompts must be market.engines.base.Prompt, got {type(prompt).__name__}",
        )
        cached = self._tables.get(prompt)
        if cached is not None:
            return cached
        logits = self._prompt_logits(parse_prompt(prompt))
        V = self.vocab_size
        z = np.repeat(logits[:, None, :], V + 1, axis=1)
        diagonal = np.arange(V)
        z[:, diagonal, diagonal] -= self._p["repeat_penalty"]
        z[:, self._eos, :] = -np.inf
        table = _log_normalise(z)
        table.setflags(write=False)
        return self._tables.put(prompt, table)

    def _sampler_tables(
        self, prompt: Prompt, params: SamplingParams
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sampler's next-token log-probs and their CDFs (rows ending at exactly 1)."""
        key = (prompt, params.temperature, params.top_p)
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

    # ----------------------------------------------------------------------------- engine calls

    def _as_ids(self, token_ids: Sequence[int], what: str) -> tuple[int, ...]:
        try:
            ids = tuple(int(t) for t in token_ids)
        except (TypeError, ValueError) as error:
            raise EngineError(f"{what} must be a sequence of integer token ids ({error})") from None
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        _require(
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
        _require(
            len(prompts) == len(prefixes),
            f"next_token_logprobs needs one prefix per prompt, got {len(prompts)} prompts and "
            f"{len(prefixes)} prefixes",
        )
        rows = np.empty((len(prompts), self.vocab_size))
        for row, (prompt, prefix) in enumerate(zip(prompts, prefixes, strict=True)):
            ids = self._as_ids(prefix, "prefix")
            _require(
                self._eos not in ids,
                f"prefix {ids} contains EOS ({self._eos}): a finished reply has no next token",
            )
            _require(
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
        _require(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1,
            f"n must be an integer >= 1, got {n!r}",
        )
        _require(
            isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0,
            f"seed must be an integer >= 0, got {seed!r}",
        )
        _require(
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

    # ----------------------------------------------------------------------------- exact support

    def _support_size(self, max_len: int) -> int:
        k = self._n_content + len(self.brands)
        return sum(k**length for length in range(1, max_len + 1))

    def _check_support_len(self, max_len: int | None) -> int:
        max_len = self.max_len if max_len is None else max_len
        _require(
            isinstance(max_len, int) and 1 <= max_len <= self.max_len,
            f"max_len must be an integer in [1, {self.max_len}] (the engine's max_len), "
            f"got {max_len!r}",
        )
        size = self._support_size(max_len)
        _require(
            size <= MAX_SUPPORT,
            f"the support has {size} replies (> {MAX_SUPPORT}); use a smaller catalog or "
            "max_len, or geometric_mixture for π_r's normaliser and expectations",
        )
        return max_len

    def support_logprobs(self, prompts: Sequence[Prompt], max_len: int | None = None) -> np.ndarray:
        """log π(y | prompt) for every reply y of the support, (len(prompts), S), in the order of
        `enumerate_support` (by length, then lexicographic), by a prefix recursion: O(S) each."""
        cap = self._check_support_len(max_len)
        k = self._n_content + len(self.brands)
        out = []
        for prompt in prompts:
            table = self._table(prompt)
            pieces = []
            prefix = table[0, self.vocab_size, :k]  # log-prob of each 1-segment prefix
            for length in range(1, cap + 1):
                last = np.tile(np.arange(k), k ** (length - 1))
                if length < cap or cap == self.max_len:
                    pieces.append(prefix + table[length, last, self._eos])
                else:
                    pieces.append(prefix)  # cut at cap < max_len: no EOS
                if length < cap:
                    prefix = (prefix[:, None] + table[length, last, :k]).reshape(-1)
            out.append(np.concatenate(pieces))
        return np.stack(out) if out else np.zeros((0, self._support_size(cap)))

    def enumerate_support(self, prompt: Prompt, max_len: int | None = None) -> Support:
        """Every reply of up to ``max_len`` segments (default: the engine's) with its exact
        log-probability. Below the engine's max_len, replies reaching the cap end without EOS,
        matching `generate` with ``max_new_tokens=max_len`` at temperature 1 and top-p 1."""
        cap = self._check_support_len(max_len)
        k = self._n_content + len(self.brands)
        blocks = []
        for length in range(1, cap + 1):
            ids = np.indices((k,) * length).reshape(length, -1).T
            if length < cap or cap == self.max_len:
                ids = np.concatenate([ids, np.full((len(ids), 1), self._eos)], axis=1)
            blocks.append(ids)
        width = max(b.shape[1] for b in blocks)
        padded = np.concatenate(
            [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1) for b in blocks]
        )
        lengths = np.concatenate([np.full(len(b), b.shape[1]) for b in blocks])
        token_ids = tuple(tuple(row) for b in blocks for row in b.tolist())
        padded.setflags(write=False)
        lengths.setflags(write=False)
        logprobs = self.support_logprobs([prompt], cap)[0]
        logprobs.setflags(write=False)
        return Support(token_ids=token_ids, logprobs=logprobs, padded_ids=padded, lengths=lengths)

    def score_support(self, prompts: Sequence[Prompt], support: Support) -> np.ndarray:
        """log π(y | prompt) of every reply of ``support`` under every prompt: (len(prompts), S)."""
        _require(isinstance(support, Support), "support must come from enumerate_support")
        if support.padded_ids.size:
            _require(
                int(support.padded_ids.max()) < self.vocab_size,
                "support holds ids outside this engine's vocabulary; enumerate it with this engine",
            )
        rows = [
            self._sequence_logprobs(self._table(p), support.padded_ids, support.lengths)
            for p in prompts
        ]
        return np.stack(rows) if rows else np.zeros((0, len(support.lengths)))

    def geometric_mixture(
        self, prompts: Sequence[Prompt], weights: Sequence[float]
    ) -> GeometricMixture:
        """q(y) ∝ Π_k π_k(y | prompts[k]) ** weights[k], exactly, without enumerating the support.

        Every π_k is a chain over (position, previous token), so q is one too, with log-potentials
        Σ_k w_k log π_k(token | position, previous); a forward recursion over positions sums them
        (log Z) and carries the expected log π_k of the paths: O(max_len · V²) per prompt. Use it
        for π_r (equations 2 and 17) when the catalog is too large for `enumerate_support`.
        """
        _require(
            len(prompts) == len(weights) >= 1,
            f"geometric_mixture needs one weight per prompt (at least one), got {len(prompts)} "
            f"prompts and {len(weights)} weights",
        )
        w = np.asarray(weights, dtype=float)
        _require(bool(np.all(np.isfinite(w))), f"weights must be finite numbers, got {weights}")
        tables = np.stack([self._table(p) for p in prompts])  # (K, L + 1, V + 1, V)
        possible = np.isfinite(tables[0])  # the same structural zeros under every prompt
        features = np.where(possible, tables, 0.0)
        potential = np.where(possible, np.tensordot(w, features, axes=1), -np.inf)
        eos, start = self._eos, self.vocab_size
        log_alpha = potential[0, start, :eos]  # paths of one segment, by their last token
        expected = features[:, 0, start, :eos]  # (K, C): E[log π_k of the path | last token]
        end_logs, end_expected = [], []
        for t in range(1, self.max_len + 1):
            end_logs.append(log_alpha + potential[t, :eos, eos])
            end_expected.append(expected + features[:, t, :eos, eos])
            if t == self.max_len:
                break
            step = log_alpha[:, None] + potential[t, :eos, :eos]  # (previous, next)
            next_log_alpha = _logsumexp(step, axis=0)[0]
            came_from = np.exp(step - next_log_alpha[None, :])  # P(previous | next)
            expected = np.einsum(
                "uv,kuv->kv", came_from, expected[:, :, None] + features[:, t, :eos, :eos]
            )
            log_alpha = next_log_alpha
        ends = np.concatenate(end_logs)
        log_z = float(_logsumexp(ends)[0])
        end_probability = np.exp(ends - log_z)
        expectations = np.concatenate(end_expected, axis=1) @ end_probability
        return GeometricMixture(weights=w, log_normaliser=log_z, expected_logprobs=expectations)
