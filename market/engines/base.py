"""The LLM engine protocol: the one interface between auctions and language models.

An engine does three things, each as one batched call (vLLM offline style: build the whole batch,
make one call, read the results):

- ``generate(prompts, n, params, seed)``: n sampled replies per prompt, each with the exact
  log-probability under the sampler actually used (``proposal_logprob``: after temperature and
  top-p) and the untempered model log-probability (``model_logprob``) under its own prompt;
- ``score(prompts, replies)``: the matrix log π(reply | prompt), reply tokens only;
- ``next_token_logprobs(prompts, prefixes)``: next-token log-distributions, for the token auction.

Prompts are structured (`market.prompts.Prompt`: role, query, brands, style); an engine renders
or reads them, and never parses text back. Engines never import mesa; the market never imports
torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from market.prompts import Prompt

__all__ = [
    "Candidate",
    "Catalog",
    "Engine",
    "EngineError",
    "EngineInfo",
    "Prompt",
    "SamplingParams",
    "prompt_style",
]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class EngineError(RuntimeError):
    """An engine cannot do what was asked (a model that will not load, a bad argument).

    The message is one line a user can act on: what failed and how to fix it. ``field`` names the
    engine kwarg at fault, when one is (``create_engine`` then reports it as
    ``engine.kwargs.<field>``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SamplingParams:
    """How candidates are sampled. The paper samples with temperature 0.8 and top-p 0.95."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 48

    def __post_init__(self) -> None:
        if not _is_real(self.temperature) or not 0 < self.temperature < math.inf:
            raise ValueError(
                f"temperature must be a finite number > 0, got {self.temperature!r} — the paper "
                "samples at 0.8"
            )
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(
                f"top_p must be a number in (0, 1], got {self.top_p!r} — use 1 to keep every "
                "token, or e.g. 0.95 (the paper)"
            )
        if (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int | np.integer)
            or self.max_new_tokens < 1
        ):
            raise ValueError(
                f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r} — e.g. 48"
            )


@dataclass(frozen=True)
class Candidate:
    """One sampled reply. It is scored by its token ids, not by re-tokenizing its text."""

    text: str
    token_ids: tuple[int, ...]
    proposal_logprob: float
    model_logprob: float


@dataclass(frozen=True)
class EngineInfo:
    """What produced the numbers: recorded with every run and part of every cache key.

    ``extra["prompt_style"]`` is the style the auction builds this engine's prompts in (see
    `prompt_style`); engines that take ``prompt_style`` record it there.
    """

    engine: str
    model: str
    device: str = "cpu"
    dtype: str = "float32"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """World knowledge a synthetic engine needs and a real LLM already has.

    ``brand_topics``: brand name -> the topics it is relevant to (the synthetic engine's brands);
    ``query_topics``: query text -> its topic (topics the engine must know, and the topic of a
    prompt whose `Query` carries none). Real engines ignore it.
    """

    brand_topics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    query_topics: Mapping[str, str] = field(default_factory=dict)


def prompt_style(engine: Any) -> str:
    """The prompt style an engine's prompts are built in: ``info.extra["prompt_style"]``, or
    "system" (the paper's placement) for an engine that does not say."""
    return str(engine.info.extra.get("prompt_style", "system"))


@runtime_checkable
class Engine(Protocol):
    """Any LLM engine. See the module docstring for the contract of each call."""

    info: EngineInfo

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]: ...

    def score(
        self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str]
    ) -> np.ndarray: ...

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    @property
    def eos_token_id(self) -> int | None: ...
