"""Auction mechanisms (pure numpy), picked by name from a scenario's ``{type, kwargs}`` block.

``build_mechanism({"type": "mosaic", "kwargs": {"tau": 1.0, "offset": False}})`` returns a frozen
``MosaicMechanism``; ``{"type": "token_auction", ...}`` a ``TokenAuctionMechanism``. Each class is
registered under its ``name`` in ``MECHANISMS`` (a ``market.registry.Registry``), validates its
settings with ``check_settings`` (pure: a scenario is checked without building anything), and
``market.auction`` runs its round by that name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from market.mechanisms.mosaic import (
    MosaicOutcome,
    mosaic_outcome,
    optimal_distribution,
    sample_reply,
)
from market.mechanisms.token_auction import RULES, TokenStep, aggregate, stable_sample, token_step
from market.registry import (
    CheckedSettings,
    Registry,
    SettingError,
    integer,
    nonnegative,
    one_of,
    positive,
)

__all__ = [
    "GENERATORS",
    "MAX_CANDIDATES",
    "MAX_TOKENS",
    "MECHANISMS",
    "RULES",
    "MosaicMechanism",
    "MosaicOutcome",
    "TokenAuctionMechanism",
    "TokenStep",
    "aggregate",
    "build_mechanism",
    "mosaic_outcome",
    "optimal_distribution",
    "sample_reply",
    "stable_sample",
    "token_step",
]

GENERATORS = ("context", "reference")
# The order in which the context-aware prompt lists the entrants (`market.prompts.LISTINGS`).
LISTINGS = ("entry", "shuffled", "relevance")
# M, the candidates per auction: the paper uses M <= 20 and the importance-sampling error of the
# allocation falls like 1/sqrt(M) (eq. 10), so 1024 leaves room for convergence studies while a
# million (13 s a round, 3.5 GB to report) is refused.
MAX_CANDIDATES = 1024
# Reply length in tokens (sampling.max_new_tokens, token_auction max_tokens): ad replies are tens
# to hundreds of tokens; 4096 stays inside the embedded SmolLM2's 8192-token context with the
# prompt, and each token is one engine call per round in the token auction.
MAX_TOKENS = 4096

MECHANISMS = Registry("mechanism")


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise SettingError(name, f"{name} must be true or false, got {value!r}")
    return bool(value)


class _Settings(CheckedSettings):
    """A frozen dataclass whose fields are checked on construction by ``checks``."""

    def __post_init__(self) -> None:
        self.check_settings({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@MECHANISMS.register("mosaic")
@dataclass(frozen=True)
class MosaicMechanism(_Settings):
    """MOSAIC with reference weight ``tau`` (eq. 1), the payment ``offset`` of Sec. 5.3 on or off,
    candidates drawn from the context-aware LLM π_con or the reference π_ref (``generator``,
    Sec. 4.1), ``candidates`` = M replies per auction, and the order in which π_con's prompt
    lists the entrants (``listing``: "entry", the advertisers' order; "shuffled" anew each round;
    "relevance", brands relevant to the query first, each group shuffled). The paper leaves the
    order open; small LLMs favour the first-listed brand (docs/prompts.md)."""

    name: ClassVar[str] = "mosaic"

    tau: float = 1.0
    offset: bool = True
    generator: str = "context"
    candidates: int = 8
    listing: str = "entry"

    checks = {
        "tau": positive(fix="tau weighs the reference LLM (eq. 1); use e.g. tau: 1.0"),
        "offset": _flag,
        "generator": one_of(
            GENERATORS, fix="context: candidates from π_con, reference: from π_ref (Sec. 4.1)"
        ),
        "candidates": integer(
            1,
            MAX_CANDIDATES,
            fix="the paper uses M <= 20; the allocation's error falls like 1/sqrt(M) (eq. 10)",
        ),
        "listing": one_of(
            LISTINGS,
            fix="entry: advertisers' order, shuffled: a new order each round, relevance: relevant "
            "brands first",
        ),
    }

    def outcome(
        self, rewards: np.ndarray, log_ref: np.ndarray, log_gen: np.ndarray
    ) -> MosaicOutcome:
        """Allocation, payments and utilities for one candidate set (see ``mosaic_outcome``)."""
        return mosaic_outcome(rewards, log_ref, log_gen, tau=self.tau, offset=bool(self.offset))


@MECHANISMS.register("token_auction")
@dataclass(frozen=True)
class TokenAuctionMechanism(_Settings):
    """Duetting et al. token auction: ``rule`` "linear" or "loglinear" aggregation, the reference
    LLM joining with fixed ``reference_weight``, and replies of at most ``max_tokens`` tokens
    (None: the sampling parameters' max_new_tokens)."""

    name: ClassVar[str] = "token_auction"

    rule: str = "linear"
    reference_weight: float = 1.0
    max_tokens: int | None = None

    checks = {
        "rule": one_of(RULES),
        "reference_weight": nonnegative(),
        "max_tokens": integer(
            1,
            MAX_TOKENS,
            allow_none=True,
            fix="null uses sampling.max_new_tokens; each token is one engine call",
        ),
    }

    def step(
        self, dists: np.ndarray, bids: np.ndarray, u: float, reference: np.ndarray | None = None
    ) -> TokenStep:
        """One token: aggregate ``dists`` ((n, V) probabilities), draw with ``u``, charge critical
        bids (see ``token_step``)."""
        return token_step(
            dists,
            bids,
            u,
            rule=self.rule,
            reference=reference,
            reference_weight=float(self.reference_weight),
        )


def build_mechanism(spec: Mapping[str, Any] | Any) -> MosaicMechanism | TokenAuctionMechanism:
    """Build a mechanism from ``{"type": name, "kwargs": {...}}`` (a mapping, or an object with
    ``.type`` and ``.kwargs``). Unknown names or keyword arguments raise ``SpecError`` (a
    ValueError) naming the known ones."""
    return MECHANISMS.build(spec)
