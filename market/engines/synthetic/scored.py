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

SCORED_REPLIES = 128  # replies whose scores a stack keeps (the first scored)


class ScoredStack:
    """The compact models of a score call's prompts stacked (``chains``, K x (L + 1) x (2V + 1))
    and the scores of up to `SCORED_REPLIES` replies, column by column in ``columns`` (K x
    `SCORED_REPLIES`), found by token ids in ``index``. Holds the prompts: their ids key it."""

    def __init__(self, prompts: Sequence, chains: np.ndarray) -> None:
        self.prompts = tuple(prompts)
        self.chains = chains
        self.columns = np.empty((len(chains), SCORED_REPLIES))
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
            if len(index) == SCORED_REPLIES:
                return
            if ids not in index:
                self.columns[:, len(index)] = column
                index[ids] = len(index)
