"""A prompt's temperature / top-p sampler on the synthetic engine: its tables and its draws.

`sampler_logprobs` is the distribution a temperature / top-p sampler draws from, as the hf engine
samples (tempered softmax; keep the smallest set of tokens, in descending probability, whose mass
reaches top_p; renormalise). `Sampler` holds that distribution for every position and previous
token of one prompt, its CDFs, and draws replies from them by inverse CDF, one uniform per step.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from market.engines.base import Candidate
from market.engines.synthetic.world import log_normalise

KNOWN_REPLIES = 256  # replies a sampler (and a score stack) keeps to reuse: the first drawn


def sampler_logprobs(logprobs: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """The next-token log-distribution a temperature / top-p sampler draws from.

    ``logprobs`` (..., V) are the model's exact next-token log-probabilities. Temperature: softmax
    of logprobs / temperature. Top-p: sort tokens by descending probability (ties by token id) and
    keep each token whose preceding mass is < top_p — the smallest prefix whose mass reaches top_p,
    as the hf sampler does — then renormalise. Impossible tokens stay −inf; rows that are all −inf
    stay so.
    """
    tempered = log_normalise(logprobs / temperature)
    if top_p >= 1.0:
        return tempered
    probs = np.exp(tempered)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = (mass_before < top_p) & (sorted_probs > 0)
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return log_normalise(np.where(keep, tempered, -np.inf))


@dataclass(eq=False)
class Sampler:
    """A prompt's temperature / top-p sampler.

    ``tables`` (2, max_len + 1, V + 1, V): the sampler's next-token log-probs stacked on the
    model's; ``cdfs``: the sampler's CDFs (rows ending at exactly 1); ``rows[t][prev]``: a CDF
    row as a list for `bisect` (`CdfRows`); ``replies``: candidates drawn before, by token ids
    (immutable, so reused; their log-probs depend on the ids only), the first `KNOWN_REPLIES`
    of them.
    """

    tables: np.ndarray
    cdfs: np.ndarray
    rows: list[CdfRows]
    replies: dict[tuple[int, ...], Candidate] = field(default_factory=dict)

    @classmethod
    def of(cls, full: np.ndarray, temperature: float, top_p: float) -> Sampler:
        """The sampler of a prompt whose exact next-token log-probs are ``full``."""
        table = sampler_logprobs(full, temperature, top_p)
        cdf = np.cumsum(np.exp(table), axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cdf /= cdf[..., -1:]  # the EOS row (all −inf) becomes NaN and is never drawn from
        tables = np.stack([table, full])
        tables.setflags(write=False)
        cdf.setflags(write=False)
        return cls(tables, cdf, [CdfRows(rows) for rows in cdf])

    def draw(self, uniforms: Sequence[Sequence[float]], eos: int) -> list[tuple[int, ...]]:
        """Replies' token ids by inverse CDF, one uniform per step: the token is the number of
        entries of its CDF row at or below the uniform; a reply ends at ``eos`` or when its
        uniforms do. The first step reads the start row (previous token V, the vocabulary size).
        """
        V, positions, bisect_right = self.cdfs.shape[-1], self.rows, bisect.bisect_right
        drawn = []
        for reply in uniforms:
            ids, prev = [], V
            for rows, u in zip(positions, reply, strict=False):  # steps <= max_len + 1 rows
                prev = bisect_right(rows[prev], u)
                if prev >= eos:  # EOS, or V from a row that is never drawn from (not a CDF)
                    ids.append(eos)
                    break
                ids.append(prev)
            drawn.append(tuple(ids))
        return drawn

    def logprobs(self, replies: Sequence[tuple[int, ...]]) -> tuple[list[float], list[float]]:
        """Σ_t log p(y_t | t, y_{t−1}) of drawn replies under the sampler and under the model,
        summed in step order, as `SyntheticEngine.score` sums: two lists, one entry a reply."""
        read, start = self.tables.item, self.cdfs.shape[-1]
        proposal, model = [], []
        for ids in replies:
            sampled = exact = 0.0
            prev = start
            for t, token in enumerate(ids):
                sampled += read(0, t, prev, token)
                exact += read(1, t, prev, token)
                prev = token
            proposal.append(sampled)
            model.append(exact)
        return proposal, model

    def remember(self, ids: tuple[int, ...], candidate: Candidate) -> None:
        """Keep a drawn candidate for reuse, up to `KNOWN_REPLIES`."""
        if len(self.replies) < KNOWN_REPLIES:
            self.replies[ids] = candidate


class CdfRows(dict):
    """The CDF rows of one position by previous token, each a list for `bisect`, made when first
    read (most rows never are)."""

    def __init__(self, cdfs: np.ndarray) -> None:
        super().__init__()
        self.cdfs = cdfs

    def __missing__(self, prev: int) -> list[float]:
        row = self[prev] = self.cdfs[prev].tolist()
        return row
