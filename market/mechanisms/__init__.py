"""Auction mechanisms (pure numpy), picked by name from a scenario's ``{type, kwargs}`` block.

``build_mechanism({"type": "mosaic", "kwargs": {"tau": 1.0, "offset": False}})`` returns a frozen
``MosaicMechanism``; ``{"type": "token_auction", ...}`` a ``TokenAuctionMechanism``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
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

__all__ = [
    "GENERATORS",
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


@dataclass(frozen=True)
class MosaicMechanism:
    """MOSAIC with reference weight ``tau`` (eq. 1), the payment ``offset`` of Sec. 5.3 on or off,
    candidates drawn from the context-aware LLM π_con or the reference π_ref (``generator``,
    Sec. 4.1), and ``candidates`` = M replies per auction."""

    name: ClassVar[str] = "mosaic"

    tau: float = 1.0
    offset: bool = True
    generator: str = "context"
    candidates: int = 8

    def __post_init__(self) -> None:
        if not _is_real(self.tau) or not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"mosaic tau must be a positive finite number, got {self.tau!r}")
        if not isinstance(self.offset, (bool, np.bool_)):
            raise ValueError(f"mosaic offset must be true or false, got {self.offset!r}")
        if self.generator not in GENERATORS:
            raise ValueError(
                f"mosaic generator must be one of {GENERATORS}, got {self.generator!r}"
            )
        if not _is_int(self.candidates) or self.candidates < 1:
            raise ValueError(f"mosaic candidates must be an integer >= 1, got {self.candidates!r}")

    def outcome(
        self, rewards: np.ndarray, log_ref: np.ndarray, log_gen: np.ndarray
    ) -> MosaicOutcome:
        """Allocation, payments and utilities for one candidate set (see ``mosaic_outcome``)."""
        return mosaic_outcome(rewards, log_ref, log_gen, tau=self.tau, offset=bool(self.offset))


@dataclass(frozen=True)
class TokenAuctionMechanism:
    """Duetting et al. token auction: ``rule`` "linear" or "loglinear" aggregation, the reference
    LLM joining with fixed ``reference_weight``, and replies of at most ``max_tokens`` tokens
    (None: the sampling parameters' max_new_tokens)."""

    name: ClassVar[str] = "token_auction"

    rule: str = "linear"
    reference_weight: float = 1.0
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"token_auction rule must be one of {RULES}, got {self.rule!r}")
        weight = self.reference_weight
        if not _is_real(weight) or not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"token_auction reference_weight must be a finite number >= 0, got {weight!r}"
            )
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise ValueError(
                f"token_auction max_tokens must be None or an integer >= 1, got {self.max_tokens!r}"
            )

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


MECHANISMS: dict[str, type] = {
    "mosaic": MosaicMechanism,
    "token_auction": TokenAuctionMechanism,
}


def build_mechanism(spec: Mapping[str, Any] | Any) -> MosaicMechanism | TokenAuctionMechanism:
    """Build a mechanism from ``{"type": name, "kwargs": {...}}`` (a mapping, or an object with
    ``.type`` and ``.kwargs``). Unknown names or keyword arguments raise ValueError listing the
    known ones."""
    if isinstance(spec, Mapping):
        if "type" not in spec:
            raise ValueError(f"mechanism spec needs a 'type' (one of {sorted(MECHANISMS)})")
        unknown_keys = set(spec) - {"type", "kwargs"}
        if unknown_keys:
            raise ValueError(
                f"mechanism spec has unknown keys {sorted(unknown_keys)}; "
                "use {'type': ..., 'kwargs': {...}}"
            )
        kind, kwargs = spec["type"], spec.get("kwargs")
    elif hasattr(spec, "type"):
        kind, kwargs = spec.type, getattr(spec, "kwargs", None)
    else:
        raise ValueError(
            f"mechanism spec must be {{'type': ..., 'kwargs': {{...}}}}, got {type(spec).__name__}"
        )
    if kind not in MECHANISMS:
        raise ValueError(f"unknown mechanism type {kind!r}; known types: {sorted(MECHANISMS)}")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"mechanism kwargs must be a mapping, got {type(kwargs).__name__}")
    cls = MECHANISMS[kind]
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind} kwargs {unknown}; known kwargs: {known}")
    return cls(**kwargs)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
