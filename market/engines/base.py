"""The LLM engine protocol: the one interface between auctions and language models.

An engine does three things, each as one batched call (vLLM offline style: build the whole batch,
make one call, read the results):

- ``generate(prompts, n, params, seed)``: n sampled replies per prompt, each with the exact
  log-probability under the sampler actually used (``proposal_logprob``: after temperature and
  top-p) and the untempered model log-probability (``model_logprob``) under its own prompt;
- ``score(prompts, replies)``: the matrix log π(reply | prompt), reply tokens only;
- ``next_token_logprobs(prompts, prefixes)``: next-token log-distributions, for the token auction.

Engines never import mesa; the market never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class EngineError(RuntimeError):
    """An engine cannot do what was asked (a model that will not load, a bad argument).

    The message is one line a user can act on: what failed and how to fix it.
    """


@dataclass(frozen=True)
class Prompt:
    """A chat prompt: an optional system instruction and the user's query."""

    system: str | None
    user: str


@dataclass(frozen=True)
class SamplingParams:
    """How candidates are sampled. The paper samples with temperature 0.8 and top-p 0.95."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 48

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Candidate:
    """One sampled reply. It is scored by its token ids, not by re-tokenizing its text."""

    text: str
    token_ids: tuple[int, ...]
    proposal_logprob: float
    model_logprob: float


@dataclass(frozen=True)
class EngineInfo:
    """What produced the numbers: recorded with every run and part of every cache key."""

    engine: str
    model: str
    device: str = "cpu"
    dtype: str = "float32"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """World knowledge a synthetic engine needs and a real LLM already has.

    ``brand_topics``: brand name -> the topics it is relevant to;
    ``query_topics``: query text -> its topic. Real engines ignore it.
    """

    brand_topics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    query_topics: Mapping[str, str] = field(default_factory=dict)


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
