"""The scores a stack of prompts gave replies before, kept for reuse.

A score call asks the same prompts (the round's reference and advertiser prompts) about replies
that recur round after round: log π_k(reply) depends on the prompt and the reply's token ids only,
so each reply's column of scores is computed once (`SyntheticEngine._chain_logprobs`, whose sum
over a reply's steps runs in step order whatever the batch, so a kept column is the number a fresh
computation gives) and read back by its ids afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from market.engines.base import Candidate
from market.engines.synthetic.sampler import KNOWN_REPLIES

FIRST_COLUMNS = 32  # columns made at first; doubled as replies come, up to KNOWN_REPLIES


class ScoredStack:
    """The compact models of a score call's prompts stacked (``chains``, K x (L + 1) x (2V + 1))
    and the scores of the first `KNOWN_REPLIES` replies scored, column by column in ``columns``
    (K rows), found by token ids in ``index``. Holds the prompts: their ids key it."""

    def __init__(self, prompts: Sequence, chains: np.ndarray) -> None:
        self.prompts = tuple(prompts)
        self.chains = chains
        self.columns = np.empty((len(chains), FIRST_COLUMNS))
        self.index: dict[tuple, int] = {}

    def find(self, replies: Sequence) -> list[int | None]:
        """Each reply's column, None for a reply not scored before (a Candidate is found by its
        token ids, a tuple as ids; text and unhashable replies are never found)."""
        index = self.index
        try:
            return [index.get(r.token_ids if type(r) is Candidate else r) for r in replies]
        except TypeError:
            return [None] * len(replies)

    def take(self, found: Sequence[int]) -> np.ndarray:
        """The kept scores of the replies in columns ``found``: (K, len(found)), row-major."""
        return np.take(self.columns, found, axis=1)

    def remember(self, replies: Sequence[tuple[int, ...]], scores: np.ndarray) -> None:
        """Keep the scores (K, R) of replies given by their checked token ids."""
        index = self.index
        for ids, column in zip(replies, scores.T, strict=True):
            if ids in index:
                continue
            n = len(index)
            if n == KNOWN_REPLIES:
                return
            if n == self.columns.shape[1]:
                self.columns = np.concatenate([self.columns, np.empty_like(self.columns)], axis=1)
            self.columns[:, n] = column
            index[ids] = n
