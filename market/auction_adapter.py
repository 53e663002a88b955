"""The token-auction-vs-MOSAIC study's one contact with the auction, prompt and engine APIs.

Everything the study (`market.token_vs_mosaic`) needs from `market.auction.run_round`, the engines
and the mechanism registry goes through `Arena.play`: one auction of either mechanism, for one
query, with every advertiser taking a given `Action`, on common random numbers (`RoundSpec`: the
engine's sampling seed and the seed of the reply draw / the token auction's per-position
uniforms). It returns the round in reward units (`RoundPlay`).

Rewards, for both mechanisms, are the paper's implicit rewards of the *returned* reply
(App. B.2, eq. 14 with Z = 1): r_i(y) = v_i · (log π_i(y|x) − log π_ref(y|x)), computed by
`run_round` from one scoring call.

Payments in reward units. MOSAIC charges in reward units already (eq. 13: p_i = E[r_i] − U_i). The
token auction (Duetting et al.) charges each advertiser her critical bid c_{i,t} at every token t,
in the units of her bid; the bid b_i is read as a price per token and ``bid_unit`` (κ) converts one
bid unit per token into reward units, so her payment is κ · Σ_t c_{i,t} reward units and her
utility r_i(y) − κ · Σ_t c_{i,t}. With κ = 1 (the default) a bid of b buys steering of one token
at up to b reward units, and the bid b_i = v_i that the rest of admarket uses as "truthful" prices
a token at her value per nat of log-likelihood ratio (v_i). Spend is a sum over tokens, so it grows
with the reply's length; MOSAIC's payment does not depend on the returned reply's length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from market.auction import Bidder, run_round
from market.engines import Catalog, SamplingParams, create_engine
from market.mechanisms import build_mechanism
from market.prompts import Brand, advertiser_prompt, reference_prompt

__all__ = ["Action", "Advertiser", "Arena", "RoundPlay", "RoundSpec"]


@dataclass(frozen=True)
class Advertiser:
    """An advertiser of the study: brand name, description, topics and value scale v_i."""

    name: str
    description: str
    topics: tuple[str, ...]
    value: float


@dataclass(frozen=True)
class Action:
    """What one advertiser does in one auction.

    MOSAIC: she reports ``scale`` · r_i (scale 1 is truthful). Token auction: she bids
    ``bid_amount`` (bid units per token, ≥ 0). `run_round` asks ``report`` or ``bid``.
    """

    scale: float = 1.0
    bid_amount: float = 0.0

    def report(self, true_rewards: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(true_rewards, dtype=float)

    def bid(self, value: float) -> float:
        return float(self.bid_amount)


@dataclass(frozen=True)
class RoundSpec:
    """One auction's common random numbers: the query, the engine's sampling seed (MOSAIC's
    candidates) and the entropy of the draw generator (MOSAIC's returned reply, the token
    auction's per-position uniforms)."""

    query: str
    engine_seed: int
    draw_entropy: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class RoundPlay:
    """One auction in reward units, every array indexed like the arena's advertisers.

    ``rewards``: r_i(y) of the returned reply; ``payments``: reward units (token auction: κ · Σ_t
    critical bids); ``utilities``: rewards − payments (realized); ``expected_utilities``: what the
    advertiser expects before the reply is drawn (MOSAIC: E_alloc[r_i] − p_i with her true
    rewards, eq. 13; token auction: equal to the realized utility, the draw being part of the
    auction). ``reply_tokens``: tokens of the returned reply (EOS included);
    ``usefulness``: log π_ref(y|x) per token (App. C.3); ``reply_token_ids``: its token ids.
    """

    rewards: np.ndarray
    payments: np.ndarray
    expected_utilities: np.ndarray
    reply_token_ids: tuple[int, ...]
    reply_tokens: int
    reply_logprob_ref: float
    usefulness: float
    reply_text: str

    @property
    def utilities(self) -> np.ndarray:
        return self.rewards - self.payments

    @property
    def welfare(self) -> float:
        return float(self.rewards.sum())

    @property
    def revenue(self) -> float:
        return float(self.payments.sum())


@dataclass
class Arena:
    """The synthetic engine, the advertisers and the two mechanisms of the study.

    ``mechanisms`` maps a name to a ``{type, kwargs}`` spec (`market.mechanisms.build_mechanism`);
    ``sampling`` is (temperature, top_p, max_new_tokens) for MOSAIC's candidates (the token
    auction aggregates the models' own next-token distributions); ``queries`` maps each query to
    its topic; ``engine_kwargs`` go to the synthetic engine.
    """

    advertisers: Sequence[Advertiser]
    queries: Mapping[str, str]
    mechanisms: Mapping[str, Mapping[str, Any]]
    sampling: tuple[float, float, int] = (1.0, 1.0, 48)
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)
    bid_unit: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bid_unit) and self.bid_unit > 0):
            raise ValueError(f"bid_unit must be a finite number > 0, got {self.bid_unit!r}")
        catalog = Catalog(
            brand_topics={a.name: tuple(a.topics) for a in self.advertisers},
            query_topics=dict(self.queries),
        )
        self._engine = create_engine(
            {"type": "synthetic", "kwargs": dict(self.engine_kwargs)}, catalog=catalog
        )
        self._mechanisms = {name: build_mechanism(spec) for name, spec in self.mechanisms.items()}
        temperature, top_p, max_new_tokens = self.sampling
        self._sampling = SamplingParams(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self._brands = [Brand(a.name, a.description) for a in self.advertisers]

    def kind(self, mechanism: str) -> str:
        """The registered type of a mechanism: "mosaic" or "token_auction"."""
        return type(self._mechanisms[mechanism]).name

    def play(self, mechanism: str, spec: RoundSpec, actions: Sequence[Action]) -> RoundPlay:
        """One auction of ``mechanism`` for ``spec`` with every advertiser playing ``actions``."""
        if len(actions) != len(self.advertisers):
            raise ValueError(f"need one action per advertiser ({len(self.advertisers)})")
        bidders = [
            Bidder(brand, a.value, action)
            for brand, a, action in zip(self._brands, self.advertisers, actions, strict=True)
        ]
        outcome = run_round(
            self._engine,
            self._mechanisms[mechanism],
            spec.query,
            bidders,
            self._sampling,
            seed=spec.engine_seed,
            rng=np.random.default_rng(np.random.SeedSequence(spec.draw_entropy)),
        )
        token = outcome.mechanism == "token_auction"
        payments = np.asarray(outcome.payments, dtype=float) * (self.bid_unit if token else 1.0)
        rewards = np.asarray(outcome.realized_rewards, dtype=float)
        expected = (
            rewards - payments
            if token
            else np.asarray(outcome.expected_rewards, dtype=float) - payments
        )
        return RoundPlay(
            rewards=rewards,
            payments=payments,
            expected_utilities=expected,
            reply_token_ids=tuple(outcome.reply.token_ids),
            reply_tokens=int(outcome.reply_tokens),
            reply_logprob_ref=float(outcome.reply_logprob_ref),
            usefulness=float(outcome.usefulness),
            reply_text=outcome.reply.text,
        )

    @property
    def engine(self):
        """The synthetic engine (for direct checks in tests)."""
        return self._engine

    def score_prompts(self, query: str) -> list:
        """The prompts `run_round` scores a reply under: π_ref's, then each advertiser's π_i (in
        the arena's order). For direct checks of a round's rewards and token distributions."""
        return [reference_prompt(query)] + [advertiser_prompt(query, b) for b in self._brands]
