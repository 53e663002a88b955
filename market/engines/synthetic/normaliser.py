"""The normalisers of the synthetic model's next-token distributions, without its full table.

Row (t, prev) of a prompt's model is log softmax over tokens y of ``logits[t, y] −
repeat_penalty·[y = prev]`` (`world` docstring); `World.chain` keeps each row's normaliser, its
logsumexp. The direct way is one exp for every entry of a (rows, V + 1, V) array and a logsumexp
over its last axis. But the rows of one position t differ only on their diagonal: where the row's
peak is the position's largest logit, exp(entry − peak) is the same number in every row but one.
`repeat_normalisers` exponentiates each position's logits once and copies them, then only the
diagonal and the few rows with another peak (prev is the unique argmax, pushed down by the
penalty) on their own, and sums with the same reduction over the same layout. Same exp of the same
differences, same sums: its numbers are the direct way's, bit for bit
(tests/test_synthetic_normaliser.py holds the direct way).
"""

from __future__ import annotations

import numpy as np


def repeat_normalisers(logits: np.ndarray, repeat_penalty: float, eos: int) -> np.ndarray:
    """(N, V + 1): entry [r, prev] = log Σ_y exp(logits[r, y] − repeat_penalty·[y = prev]) for
    ``logits`` (N, V), finite or −inf. Column V is the start of a reply (no token to repeat);
    column ``eos`` and rows that are all −inf give −inf (nothing follows EOS). Equal, bit for bit,
    to the direct way (module docstring)."""
    n, V = logits.shape
    diagonal = np.arange(V)
    penalised = logits - repeat_penalty  # the rows' diagonals, [r, prev]
    top = np.maximum.reduce(logits, axis=1)
    # each row's peak: the largest of the others (the top unless prev is the unique argmax) and
    # its own penalised diagonal
    peaks = np.empty((n, V + 1))
    others = peaks[:, :V]
    others[:] = top[:, None]
    if V > 1:
        second, first = np.partition(logits, V - 2, axis=1)[:, V - 2 :].T
        unique = np.flatnonzero(second < first)
        others[unique, np.argmax(logits[unique], axis=1)] = second[unique]
    else:
        others[:] = -np.inf
    np.maximum(others, penalised, out=others)
    peaks[:, V] = top
    peaks[:, eos] = -np.inf
    finite = np.isfinite(top)
    shift = np.where(finite, top, 0.0)[:, None]  # an all −inf row: exp(−inf − 0) = 0
    exps = np.empty((n, V + 1, V))
    exps[:] = np.exp(logits - shift)[:, None, :]
    exps[:, diagonal, diagonal] = np.exp(penalised - shift)
    exps[:, eos, :] = 0.0
    own = (peaks != top[:, None]) & np.isfinite(peaks)  # rows whose peak is not the top
    rows, prev = np.nonzero(own)
    if len(rows):
        entries = logits[rows]
        on = prev < V  # the start column's entries are the logits
        entries[on, prev[on]] = penalised[rows[on], prev[on]]
        exps[rows, prev] = np.exp(entries - peaks[rows, prev][:, None])
    total = np.add.reduce(exps, axis=-1)
    normalisers = np.full((n, V + 1), -np.inf)
    np.log(total, out=normalisers, where=total > 0.0)
    normalisers += np.where(own, peaks, shift)
    return normalisers
