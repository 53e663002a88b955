"""Nested candidate sets: many M from one draw of M_max candidates (the paper's curves over M).

A wrapper beside the engine protocol. The replication study (`market.studies.replication`) runs
`market.auction.run_round` unchanged for every M of its grid; this engine serves the first M of
one M_max draw per (prompts, seed) and slices one score matrix, so a whole curve over M costs one
generate and one score call, and a smaller M's candidates are a subset of a larger M's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from market.engines.base import Candidate, Engine, Prompt, SamplingParams


class NestedCandidates:
    """An engine whose ``generate`` returns the first n of one M_max draw per (prompts, seed).

    ``score`` of a prefix of such a draw is computed once for the whole draw and sliced, so a
    sweep over M costs one generate and one score call. Anything else goes to the wrapped engine.
    """

    def __init__(self, engine: Engine, m_max: int) -> None:
        self._engine = engine
        self._m_max = m_max
        self._pools: dict[tuple, list[list[Candidate]]] = {}
        self._scores: dict[tuple, np.ndarray] = {}
        self.info = engine.info
        self.engine_seconds = 0.0

    def _timed(self, method: Callable, *args):
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.engine_seconds += time.perf_counter() - start

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]:
        if n > self._m_max:
            raise ValueError(f"n = {n} candidates asked, but the pool holds M_max = {self._m_max}")
        key = (tuple(prompts), params, int(seed))
        if key not in self._pools:
            self._pools[key] = self._timed(
                self._engine.generate, list(prompts), self._m_max, params, seed
            )
        return [pool[:n] for pool in self._pools[key]]

    def score(self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str]) -> np.ndarray:
        for pools in self._pools.values():
            for pool in pools:
                if _is_prefix(replies, pool):
                    key = (tuple(prompts), id(pool))
                    if key not in self._scores:
                        self._scores[key] = np.asarray(
                            self._timed(self._engine.score, list(prompts), pool), dtype=float
                        )
                    return self._scores[key][:, : len(replies)]
        return self._timed(self._engine.score, prompts, replies)

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        return self._engine.next_token_logprobs(prompts, prefixes)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._engine.decode(token_ids)

    @property
    def eos_token_id(self) -> int | None:
        return self._engine.eos_token_id


def _is_prefix(replies: Sequence, pool: Sequence[Candidate]) -> bool:
    return len(replies) <= len(pool) and all(a is b for a, b in zip(replies, pool, strict=False))
