"""The exact oracle of the synthetic engine: its whole support, and π_r without enumerating.

`enumerate_support` lists every reply with its log-probability (about V ** max_len replies: 170k
for V = 21, max_len = 4); `score_support` and `support_logprobs` score the whole support under
several prompts in one vectorised call, e.g. to compute the optimal policy π_r of equation (17)
exactly; `geometric_mixture` gives π_r's normaliser log Z(x) and expectations under π_r by a
forward recursion, without enumerating, for catalogs too large to enumerate.

`ExactOracle` is mixed into `SyntheticEngine`: it reads the engine's ``world``, ``max_len``,
``vocab_size``, ``_table`` and ``_sequence_logprobs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market.engines.synthetic.world import require
from market.mechanisms.mosaic import logsumexp
from market.prompts import Prompt

MAX_SUPPORT = 5_000_000


@dataclass(frozen=True, eq=False)
class Support:
    """Every reply a prompt can produce, with its exact log-probability.

    ``token_ids[s]`` is reply s (ending with EOS unless it is cut at a ``max_len`` below the
    engine's); ``logprobs[s]`` its log-probability (``exp(logprobs).sum() == 1``). Replies are
    ordered by length, then lexicographically. ``padded_ids`` (S, max_len + 1) holds the same ids,
    padded with -1 beyond ``lengths``, for vectorised scoring (`SyntheticEngine.score_support`).
    """

    token_ids: tuple[tuple[int, ...], ...]
    logprobs: np.ndarray
    padded_ids: np.ndarray
    lengths: np.ndarray


@dataclass(frozen=True, eq=False)
class GeometricMixture:
    """The distribution q(y) ∝ Π_k π_k(y | x) ** weights[k] over every reply, summarised exactly.

    With prompts (π_ref, π_1, ..., π_n) and weights (1 − Σ_i v_i / τ, v_1 / τ, ..., v_n / τ), q is
    the optimal LLM π_r of equation (2) for rewards r_i = v_i (log π_i − log π_ref) (equation (17)
    for v_i = τ = 1). ``log_normaliser`` is log Σ_y Π_k π_k(y) ** w_k (log Z(x));
    ``expected_logprobs[k]`` is E_{y∼q}[log π_k(y | x)].
    """

    weights: np.ndarray
    log_normaliser: float
    expected_logprobs: np.ndarray

    def logprob(self, logprobs: np.ndarray) -> np.ndarray:
        """log q(y) from the (K, R) matrix of log π_k(y) (e.g. `SyntheticEngine.score`)."""
        return self.weights @ np.asarray(logprobs) - self.log_normaliser

    @property
    def entropy(self) -> float:
        """H(q) = −E_q[log q(y)]."""
        return float(self.log_normaliser - self.weights @ self.expected_logprobs)


class ExactOracle:
    """Exact support enumeration and geometric mixtures (see the module docstring)."""

    def _support_size(self, max_len: int) -> int:
        k = self.world.n_content + len(self.world.brands)
        return sum(k**length for length in range(1, max_len + 1))

    def _check_support_len(self, max_len: int | None) -> int:
        max_len = self.max_len if max_len is None else max_len
        require(
            isinstance(max_len, int) and 1 <= max_len <= self.max_len,
            f"max_len must be an integer in [1, {self.max_len}] (the engine's max_len), "
            f"got {max_len!r}",
        )
        size = self._support_size(max_len)
        require(
            size <= MAX_SUPPORT,
            f"the support has {size} replies (> {MAX_SUPPORT}); use a smaller catalog or "
            "max_len, or geometric_mixture for π_r's normaliser and expectations",
        )
        return max_len

    def support_logprobs(
        self, prompts: Sequence[Prompt], max_len: int | None = None, sampling=None
    ) -> np.ndarray:
        """log π(y | prompt) for every reply y of the support, (len(prompts), S), in the order of
        `enumerate_support` (by length, then lexicographic), by a prefix recursion: O(S) each.

        With ``sampling`` (`SamplingParams`), the log-probability under that temperature / top-p
        sampler instead of the model — what `generate` reports as ``proposal_logprob``; −inf for
        the replies top-p never proposes. Needs ``sampling.max_new_tokens`` ≥ the support's
        max_len (shorter caps cut replies, which the support does not list).
        """
        cap = self._check_support_len(max_len)
        if sampling is not None:
            require(
                sampling.max_new_tokens >= cap,
                f"sampling.max_new_tokens = {sampling.max_new_tokens} cuts replies of the {cap}-"
                "segment support; score the sampler's support with max_new_tokens >= max_len",
            )
        k = self.world.n_content + len(self.world.brands)
        out = []
        for prompt in prompts:
            table = (
                self._table(prompt)
                if sampling is None
                else self._sampler_tables(prompt, sampling).tables[0]
            )
            pieces = []
            prefix = table[0, self.vocab_size, :k]  # log-prob of each 1-segment prefix
            for length in range(1, cap + 1):
                last = np.tile(np.arange(k), k ** (length - 1))
                if length < cap or cap == self.max_len:
                    pieces.append(prefix + table[length, last, self.world.eos])
                else:
                    pieces.append(prefix)  # cut at cap < max_len: no EOS
                if length < cap:
                    prefix = (prefix[:, None] + table[length, last, :k]).reshape(-1)
            out.append(np.concatenate(pieces))
        return np.stack(out) if out else np.zeros((0, self._support_size(cap)))

    def enumerate_support(self, prompt: Prompt, max_len: int | None = None) -> Support:
        """Every reply of up to ``max_len`` segments (default: the engine's) with its exact
        log-probability. Below the engine's max_len, replies reaching the cap end without EOS,
        matching `generate` with ``max_new_tokens=max_len`` at temperature 1 and top-p 1."""
        cap = self._check_support_len(max_len)
        k = self.world.n_content + len(self.world.brands)
        blocks = []
        for length in range(1, cap + 1):
            ids = np.indices((k,) * length).reshape(length, -1).T
            if length < cap or cap == self.max_len:
                ids = np.concatenate([ids, np.full((len(ids), 1), self.world.eos)], axis=1)
            blocks.append(ids)
        width = max(b.shape[1] for b in blocks)
        padded = np.concatenate(
            [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1) for b in blocks]
        )
        lengths = np.concatenate([np.full(len(b), b.shape[1]) for b in blocks])
        token_ids = tuple(tuple(row) for b in blocks for row in b.tolist())
        padded.setflags(write=False)
        lengths.setflags(write=False)
        logprobs = self.support_logprobs([prompt], cap)[0]
        logprobs.setflags(write=False)
        return Support(token_ids=token_ids, logprobs=logprobs, padded_ids=padded, lengths=lengths)

    def score_support(self, prompts: Sequence[Prompt], support: Support) -> np.ndarray:
        """log π(y | prompt) of every reply of ``support`` under every prompt: (len(prompts), S)."""
        require(isinstance(support, Support), "support must come from enumerate_support")
        if support.padded_ids.size:
            require(
                int(support.padded_ids.max()) < self.vocab_size,
                "support holds ids outside this engine's vocabulary; enumerate it with this engine",
            )
        rows = [
            self._sequence_logprobs(self._table(p), support.padded_ids, support.lengths)
            for p in prompts
        ]
        return np.stack(rows) if rows else np.zeros((0, len(support.lengths)))

    def geometric_mixture(
        self, prompts: Sequence[Prompt], weights: Sequence[float]
    ) -> GeometricMixture:
        """q(y) ∝ Π_k π_k(y | prompts[k]) ** weights[k], exactly, without enumerating the support.

        Every π_k is a chain over (position, previous token), so q is one too, with log-potentials
        Σ_k w_k log π_k(token | position, previous); a forward recursion over positions sums them
        (log Z) and carries the expected log π_k of the paths: O(max_len · V²) per prompt. Use it
        for π_r (equations 2 and 17) when the catalog is too large for `enumerate_support`.
        """
        require(
            len(prompts) == len(weights) >= 1,
            f"geometric_mixture needs one weight per prompt (at least one), got {len(prompts)} "
            f"prompts and {len(weights)} weights",
        )
        w = np.asarray(weights, dtype=float)
        require(bool(np.all(np.isfinite(w))), f"weights must be finite numbers, got {weights}")
        tables = np.stack([self._table(p) for p in prompts])  # (K, L + 1, V + 1, V)
        possible = np.isfinite(tables[0])  # the same structural zeros under every prompt
        features = np.where(possible, tables, 0.0)
        potential = np.where(possible, np.tensordot(w, features, axes=1), -np.inf)
        eos, start = self.world.eos, self.vocab_size
        log_alpha = potential[0, start, :eos]  # paths of one segment, by their last token
        expected = features[:, 0, start, :eos]  # (K, C): E[log π_k of the path | last token]
        end_logs, end_expected = [], []
        for t in range(1, self.max_len + 1):
            end_logs.append(log_alpha + potential[t, :eos, eos])
            end_expected.append(expected + features[:, t, :eos, eos])
            if t == self.max_len:
                break
            step = log_alpha[:, None] + potential[t, :eos, :eos]  # (previous, next)
            next_log_alpha = logsumexp(step, axis=0)
            came_from = np.exp(step - next_log_alpha[None, :])  # P(previous | next)
            expected = np.einsum(
                "uv,kuv->kv", came_from, expected[:, :, None] + features[:, t, :eos, :eos]
            )
            log_alpha = next_log_alpha
        ends = np.concatenate(end_logs)
        log_z = float(logsumexp(ends))
        end_probability = np.exp(ends - log_z)
        expectations = np.concatenate(end_expected, axis=1) @ end_probability
        return GeometricMixture(weights=w, log_normaliser=log_z, expected_logprobs=expectations)
