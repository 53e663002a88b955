"""One auction: prompts -> engine -> rewards -> mechanism -> outcome (DESIGN.md, "One round").

This is the only place that turns prompts into an outcome. MOSAIC makes exactly one ``generate``
call (M candidates from π_gen) and one ``score`` call (every prompt × every candidate); the token
auction makes one ``next_token_logprobs`` call per generated token and one ``score`` call for the
realized reply. Rewards follow the paper's implicit-reward mapping (App. B.2):

    r_i(x, y) = v_i · (log π_i(y|x) − log π_ref(y|x)),

and the mechanism sees the advertisers' *reported* rewards while every number recorded about an
advertiser (expected and realized reward, utility) uses her *true* rewards.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from market.engines.base import Candidate, Engine, SamplingParams, prompt_style
from market.engines.timing import EngineClock
from market.lru import LRU
from market.mechanisms import MosaicMechanism, TokenAuctionMechanism, sample_reply, stable_sample
from market.mechanisms.mosaic import expectation
from market.prompts import (
    Brand,
    Prompt,
    Query,
    advertiser_prompt,
    as_query,
    context_prompt,
    listing_order,
    reference_prompt,
)

_LISTING_STREAM = 0x4C495354  # "LIST": the spawn key of the listing order's random stream


@dataclasses.dataclass(frozen=True)
class Bidder:
    """An advertiser as the auction sees her: brand, value scale v_i, and report strategy.

    ``strategy`` has ``report(true_rewards) -> reported`` (MOSAIC) and ``bid(value) -> float``
    (token auction); ``None`` means truthful. Observers (absent advertisers whose reward for the
    returned reply is recorded) are Bidders too; their strategy is never asked.
    """

    brand: Brand
    value: float
    strategy: Any = None

    @property
    def truthful(self) -> bool:
        """Whether her report is her true reward (no strategy, or one that says it is truthful)."""
        return self.strategy is None or getattr(self.strategy, "truthful", False)

    def report(self, true_rewards: np.ndarray) -> np.ndarray:
        if self.strategy is None:
            return true_rewards
        reported = np.asarray(self.strategy.report(true_rewards), dtype=float)
        if reported.shape != true_rewards.shape:
            raise ValueError(
                f"strategy of {self.brand.name} reported shape {reported.shape}, expected "
                f"{true_rewards.shape} (one reward per candidate)"
            )
        return reported

    def bid(self) -> float:
        return self.value if self.strategy is None else float(self.strategy.bid(self.value))


@dataclasses.dataclass(frozen=True, eq=False)
class RoundOutcome:
    """Everything one auction produced; arrays are indexed [entrant] and/or [candidate].

    For the token auction there is one candidate (the generated reply) with allocation 1;
    ``expected_rewards_without`` and ``offsets`` are NaN there (docs/data.md).
    """

    mechanism: str  # "mosaic" | "token_auction"
    generator: str  # "context" | "reference" | "token"
    query: str
    entrants: tuple[str, ...]
    observers: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    log_ref: np.ndarray  # (M,) log π_ref(y_j | x)
    log_gen: np.ndarray  # (M,) exact proposal log-probability under the sampler used
    allocation: np.ndarray  # (M,)
    rewards: np.ndarray  # (n, M) true rewards r_i(x, y_j)
    reported: np.ndarray  # (n, M) what the mechanism saw
    returned: int
    payments: np.ndarray  # (n,)
    expected_rewards: np.ndarray  # (n,) allocation · true r_i
    expected_rewards_without: np.ndarray  # (n,) softmax(β_{-i}) · true r_i
    offsets: np.ndarray  # (n,) C_i
    outside_rewards: np.ndarray  # (k,) observers' true reward for the returned reply
    engine_seconds: float

    @property
    def reply(self) -> Candidate:
        return self.candidates[self.returned]

    @property
    def utilities(self) -> np.ndarray:
        """Ex-interim expected utility with true rewards: expected reward − payment."""
        return self.expected_rewards - self.payments

    @property
    def realized_rewards(self) -> np.ndarray:
        """True reward of every entrant for the returned reply."""
        return self.rewards[:, self.returned]

    @property
    def revenue(self) -> float:
        return float(self.payments.sum())

    @property
    def welfare(self) -> float:
        return float(self.realized_rewards.sum())

    @property
    def expected_welfare(self) -> float:
        return float(self.expected_rewards.sum())

    @property
    def reply_tokens(self) -> int:
        return len(self.reply.token_ids)

    @property
    def reply_logprob_ref(self) -> float:
        return float(self.log_ref[self.returned])

    @property
    def usefulness(self) -> float:
        """log π_ref(reply | x) per token: the user's usefulness (App. C.3)."""
        return self.reply_logprob_ref / max(self.reply_tokens, 1)

    @property
    def ess(self) -> float:
        """Effective sample size of the allocation, 1 / Σ allocation²."""
        return float(1.0 / np.square(self.allocation).sum())

    @property
    def mentioned(self) -> tuple[str, ...]:
        """Entrants whose name appears in the returned reply."""
        return tuple(name for name in self.entrants if mentions(self.reply.text, name))


def mentions(text: str, name: str) -> bool:
    """Whether ``name`` appears in ``text`` as a word, ignoring case."""
    return _mention_pattern(name).search(text) is not None


def mentioned_names(text: str, names: Sequence[str]) -> list[str]:
    """The ``names`` that ``text`` `mentions`, in their order.

    An ASCII name can appear in an ASCII text, ignoring case, only as a substring of its lower
    case: names that are not are skipped without running their pattern.
    """
    if not text.isascii():
        return [name for name in names if mentions(text, name)]
    lower = text.lower()
    return [
        name
        for name, folded in _folded_names(tuple(names))
        if (folded is None or folded in lower) and mentions(text, name)
    ]


@functools.lru_cache(maxsize=64)
def _folded_names(names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """Each name with its lower case, or None for a name that is not ASCII."""
    return tuple((name, name.lower() if name.isascii() else None) for name in names)


@functools.lru_cache(maxsize=4096)
def _mention_pattern(name: str) -> re.Pattern[str]:
    """The word pattern of one brand name, compiled once."""
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", flags=re.IGNORECASE)


def rewards_from_scores(
    values: np.ndarray, log_advertisers: np.ndarray, log_ref: np.ndarray
) -> np.ndarray:
    """r_i(x, y_j) = v_i · (log π_i(y_j|x) − log π_ref(y_j|x)) for every advertiser and reply.

    A reply the reference LLM cannot produce (log π_ref = −inf) lies outside the KL-regularized
    objective (eq. 1) and is never returned by MOSAIC; its reward is recorded as 0 rather than
    +inf or NaN. A reply advertiser i's LLM cannot produce gets −inf (a veto).
    """
    values = np.asarray(values, dtype=float)
    possible = np.isfinite(log_ref)
    if possible.all():
        return values[:, None] * (log_advertisers - log_ref)
    with np.errstate(invalid="ignore"):
        diff = np.where(possible, log_advertisers - np.where(possible, log_ref, 0.0), 0.0)
    return values[:, None] * diff


def run_round(
    engine: Engine,
    mechanism: MosaicMechanism | TokenAuctionMechanism,
    query: Query | str,
    bidders: Sequence[Bidder],
    sampling: SamplingParams,
    *,
    seed: int,
    rng: np.random.Generator,
    observers: Sequence[Bidder] = (),
) -> RoundOutcome:
    """Run one auction for ``query`` among ``bidders`` and draw the returned reply.

    ``query``: a `Query` (text and topic) or a bare text. Prompts are built in the engine's prompt
    style (`market.engines.base.prompt_style`). ``seed`` drives the engine's sampling; ``rng`` draws the reply from the allocation (MOSAIC)
    or the shared uniform of every token position (token auction). ``observers`` are absent
    advertisers whose true reward for the returned reply is recorded (the outside option).
    """
    query = as_query(query)
    run = ROUNDS.get(getattr(mechanism, "name", None))
    if run is None:
        raise TypeError(
            f"mechanism must be one of the registered mechanisms ({', '.join(ROUNDS)}; build it "
            f"with build_mechanism), got {type(mechanism).__name__}"
        )
    return run(engine, mechanism, query, bidders, sampling, seed, rng, observers)


class _Cast:
    """What a round's query, prompt style, entrants and observers alone decide: the score prompts
    (the reference prompt first, then every entrant's and every observer's advertiser prompt),
    their value scales v_i and names in the same order, and π_con's prompt listing the entrants
    in entry order.

    These depend on each Bidder's brand and value only, never on her strategy, so a cast is kept
    by the query's and the brands' identities and the values (`_cast`, holding the query and
    the brands, so the identities stay theirs): rounds whose Bidder objects are new but whose
    brands and values are not (a strategy drawn anew each round) find their cast, and nothing
    keeps a round's Bidders alive.
    """

    def __init__(
        self, query: Query, bidders: Sequence[Bidder], observers: Sequence[Bidder], style: str
    ) -> None:
        self.query = query
        self.style = style
        everyone = (*bidders, *observers)
        self.prompts = [_reference_prompt(query, style)] + [
            _advertiser_prompt(query, b.brand, style) for b in everyone
        ]
        self.values = np.array([b.value for b in everyone], dtype=float)
        self.values.setflags(write=False)
        self.brands = tuple(b.brand for b in bidders)
        self.observer_brands = tuple(b.brand for b in observers)
        self.entrants = tuple(brand.name for brand in self.brands)
        self.observers = tuple(brand.name for brand in self.observer_brands)

    @functools.cached_property
    def entry_context_prompt(self) -> Prompt:
        """π_con's prompt with the entrants listed in entry order (listing "entry")."""
        return _context_prompt(self.query, self.brands, self.style)


def _cast(
    query: Query, bidders: Sequence[Bidder], observers: Sequence[Bidder], style: str
) -> _Cast:
    """The `_Cast` of a query, style, entrant and observer set, kept by the query's and the
    brands' identities and the values."""
    everyone = (*bidders, *observers)
    key = (
        id(query),
        style,
        len(bidders),
        *[id(b.brand) for b in everyone],
        *[b.value for b in everyone],
    )
    known = _CASTS.get(key)
    if known is not None:
        return known
    return _CASTS.put(key, _Cast(query, bidders, observers, style))


CASTS_KEPT = 1024  # entrant sets x queries whose `_Cast` (score prompts, values, names) is kept
_CASTS = LRU(CASTS_KEPT)


# The same prompt objects round after round: prompts are immutable values, and an engine may
# recognise the objects it has seen (the synthetic engine caches its tables by them).
_reference_prompt = functools.lru_cache(maxsize=1024)(reference_prompt)
_advertiser_prompt = functools.lru_cache(maxsize=16384)(advertiser_prompt)
_context_prompt = functools.lru_cache(maxsize=4096)(context_prompt)


def _generator_prompt(
    query: Query, cast: _Cast, mechanism: MosaicMechanism, seed: int, style: str
) -> Prompt:
    """The prompt of π_gen (Sec. 4.1): π_con's, listing the entrants in the mechanism's listing
    order, or the reference prompt."""
    if mechanism.generator != "context":
        return _reference_prompt(query, style)
    if mechanism.listing == "entry":
        return cast.entry_context_prompt
    return _context_prompt(query, _listed(query, cast.brands, mechanism.listing, seed), style)


def _listed(query: Query, brands: tuple[Brand, ...], listing: str, seed: int) -> tuple[Brand, ...]:
    """The entrants in π_con's listing order; a shuffled order is drawn from a stream of the
    round's engine seed of its own, so the round's other draws are unchanged and every variant of
    a scenario lists a round's entrants alike."""
    if listing == "entry":
        return brands
    stream = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_LISTING_STREAM,)))
    return listing_order(brands, query, listing, stream.permutation(len(brands)).tolist())


def _run_mosaic(
    engine: Engine,
    mechanism: MosaicMechanism,
    query: Query,
    bidders: Sequence[Bidder],
    sampling: SamplingParams,
    seed: int,
    rng: np.random.Generator,
    observers: Sequence[Bidder],
) -> RoundOutcome:
    """Algorithm 1 with the payments of Eq. (13) (and the offset of Sec. 5.3 when configured)."""
    clock = EngineClock()
    style = prompt_style(engine)
    cast = _cast(query, bidders, observers, style)
    generator_prompt = _generator_prompt(query, cast, mechanism, seed, style)
    [candidates] = clock.call(
        engine.generate, [generator_prompt], mechanism.candidates, sampling, seed
    )
    scores = np.asarray(clock.call(engine.score, cast.prompts, candidates), dtype=float)
    n = len(bidders)
    log_ref = scores[0]
    # The importance weight uses the probability under the sampler actually used (Alg. 1, l. 3).
    log_gen = np.array([c.proposal_logprob for c in candidates], dtype=float)
    # entrants' rows, then observers'
    rewards = rewards_from_scores(cast.values, scores[1:], log_ref)
    true_rewards, observer_rewards = rewards[:n], rewards[n:]
    if all(b.truthful for b in bidders):
        reported = true_rewards
    else:
        reported = np.array(
            [b.report(true_rewards[i]) for i, b in enumerate(bidders)], dtype=float
        ).reshape(n, len(candidates))
    outcome = mechanism.outcome(reported, log_ref, log_gen)
    returned = int(sample_reply(outcome, rng))
    if reported is true_rewards or np.array_equal(reported, true_rewards):
        expected, without = outcome.expected_rewards, outcome.expected_rewards_without
    else:  # the mechanism saw reports; what she gets is measured with her true rewards
        expected = expectation(outcome.allocation, true_rewards)
        without = _expected_rewards_without(mechanism, reported, true_rewards, log_ref, log_gen)
    return RoundOutcome(
        mechanism="mosaic",
        generator=mechanism.generator,
        query=query.text,
        entrants=cast.entrants,
        observers=cast.observers,
        candidates=tuple(candidates),
        log_ref=log_ref,
        log_gen=log_gen,
        allocation=np.asarray(outcome.allocation, dtype=float),
        rewards=true_rewards,
        reported=reported,
        returned=returned,
        payments=np.asarray(outcome.payments, dtype=float),
        expected_rewards=expected,
        expected_rewards_without=without,
        offsets=np.asarray(outcome.offsets, dtype=float),
        outside_rewards=observer_rewards[:, returned],
        engine_seconds=clock.seconds,
    )


def _expected_rewards_without(
    mechanism: MosaicMechanism,
    reported: np.ndarray,
    true_rewards: np.ndarray,
    log_ref: np.ndarray,
    log_gen: np.ndarray,
) -> np.ndarray:
    """softmax(β_{-i}) · true r_i: the allocation she would face with her report zeroed.

    Zeroing row i of the reports leaves exactly the logits β_{-i} (Lemma 5.2), so the
    mechanism's own allocation gives the counterfactual without duplicating its math.
    """
    without = np.empty(len(reported))
    for i in range(len(reported)):
        others = reported.copy()
        others[i] = 0.0
        allocation = mechanism.outcome(others, log_ref, log_gen).allocation
        without[i] = expectation(allocation, true_rewards[i])
    return without


def _run_token_auction(
    engine: Engine,
    mechanism: TokenAuctionMechanism,
    query: Query,
    bidders: Sequence[Bidder],
    sampling: SamplingParams,
    seed: int,
    rng: np.random.Generator,
    observers: Sequence[Bidder],
) -> RoundOutcome:
    """Token-by-token auction (Duetting et al.): stable sampling, critical-bid payments.

    Every token is drawn with ``rng``'s uniforms; the engine's sampling ``seed`` is not used."""
    clock = EngineClock()
    style = prompt_style(engine)
    n = len(bidders)
    step_prompts = _cast(query, bidders, (), style).prompts
    bids = np.array([b.bid() for b in bidders], dtype=float)
    use_reference = mechanism.reference_weight > 0
    max_tokens = mechanism.max_tokens or sampling.max_new_tokens
    eos = engine.eos_token_id
    tokens: list[int] = []
    payments = np.zeros(n)
    proposal_logprob = 0.0
    for _ in range(max_tokens):
        logprobs = np.asarray(
            clock.call(engine.next_token_logprobs, step_prompts, [tokens] * len(step_prompts)),
            dtype=float,
        )
        probs = np.exp(logprobs)
        u = float(rng.random())
        if use_reference or np.any(bids > 0):
            step = mechanism.step(probs[1:], bids, u, reference=probs[0] if use_reference else None)
            token, q = int(step.token), step.q
            payments += np.asarray(step.payments, dtype=float)
        else:  # nobody bids and the reference has no weight: the reference LLM answers alone
            token, q = stable_sample(probs[0], u), probs[0]
        proposal_logprob += math.log(float(q[token]))
        tokens.append(token)
        if eos is not None and token == eos:
            break
    reply = Candidate(  # its model log-probability is the reference's, known after scoring
        text=clock.call(engine.decode, tokens),
        token_ids=tuple(tokens),
        proposal_logprob=proposal_logprob,
        model_logprob=math.nan,
    )
    cast = _cast(query, bidders, observers, style)
    scores = np.asarray(clock.call(engine.score, cast.prompts, [reply]), dtype=float)
    log_ref = scores[0]
    rewards = rewards_from_scores(cast.values, scores[1:], log_ref)  # entrants, then observers
    true_rewards, observer_rewards = rewards[:n], rewards[n:]
    reply = dataclasses.replace(reply, model_logprob=float(log_ref[0]))
    return RoundOutcome(
        mechanism="token_auction",
        generator="token",
        query=query.text,
        entrants=cast.entrants,
        observers=cast.observers,
        candidates=(reply,),
        log_ref=log_ref,
        log_gen=np.array([proposal_logprob]),
        allocation=np.ones(1),
        rewards=true_rewards,
        reported=true_rewards,
        returned=0,
        payments=payments,
        expected_rewards=true_rewards[:, 0],
        expected_rewards_without=np.full(n, np.nan),
        offsets=np.full(n, np.nan),
        outside_rewards=observer_rewards[:, 0],
        engine_seconds=clock.seconds,
    )


# The round of each registered mechanism, by its name (``MECHANISMS``).
ROUNDS: dict[str, Callable[..., RoundOutcome]] = {
    MosaicMechanism.name: _run_mosaic,
    TokenAuctionMechanism.name: _run_token_auction,
}
