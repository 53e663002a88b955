"""Fig. 1a measured exactly: the distribution of MOSAIC's returned reply against π_r.

MOSAIC draws M candidates y_1..y_M i.i.d. from the sampler q (π_gen under temperature / top-p) and
returns y_j with probability w_j / Σ_k w_k, w = π_ref·exp(Σ_i r_i/τ) / q ∝ π_r / q (Algorithm 1,
eq. 11). The *induced* distribution of the returned reply is

    π_M(y) = M·q(y)·w(y)·E[1 / (w(y) + S_{M−1})],   S_{M−1} = sum of M − 1 i.i.d. weights under q,

and with 1/a = ∫_0^∞ e^{−ta} dt and independence,

    π_M(y) = M·π_r(y)·∫_0^∞ e^{−t·w(y)}·φ(t)^{M−1} dt,   φ(t) = Σ_{y ∈ S} q(y)·e^{−t·w(y)},

with w = π_r / q on the sampler's support S = {q > 0} and π_M = 0 off S. On the synthetic engine
π_r and q are known on the whole support, so π_M is exact up to a one-dimensional quadrature
(trapezoid in log t, whose error is far below double precision for this analytic integrand; the
returned ``mass_error`` = |Σ π_M − 1| shows it).

Theorem A.1 / Corollary 4.1: π_M → π_r as M → ∞ when π_ref is absolutely continuous w.r.t. q.
Under top-p < 1 it is not: π_M → π_r restricted to S and renormalised, and

    TV(π_r, π_M) ≥ π_r(outside S) = 1 − π_r(S)   for every M, with equality in the limit,

so the floor 1 − π_r(S) is reported beside TV. Convergence to 0 holds for top_p = 1 only. KL(π_r ‖
π_M) is infinite whenever the floor is positive, which is why TV is the distance used.

A reply drawn from π_r itself has E[log π_r] = −H(π_r): the level to compare the returned reply's
log π_r with. Higher is not better — π_r's mode scores above it — and under top-p < 1 the limit is
E_{π_r|S}[log π_r] (``logp_limit``), not −H(π_r).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market.mechanisms.mosaic import logsumexp

__all__ = ["InducedDistance", "induced_distribution", "induced_distances", "tv_floor"]

STEP = 0.4  # trapezoid step in log t
TAIL = 40.0  # nats of decay required at both ends of the t range
CHUNK = 4096
# Products below use einsum / multiply-sum, not BLAS: these are small, and a threaded BLAS on a
# busy machine spends 100× the arithmetic waiting for its threads.
UNDERFLOW = -700.0  # exponents below this are taken as exactly 0 (no subnormal arithmetic)


def _exp(x: np.ndarray) -> np.ndarray:
    """exp(x), with e^x for x < UNDERFLOW (< 1e-304) set to 0: subnormals are slow and carry
    nothing at the precision reported."""
    return np.exp(np.where(x < UNDERFLOW, -np.inf, x))


def tv_floor(log_pi_r: np.ndarray, log_q: np.ndarray) -> float:
    """1 − π_r(S), S = {y : q(y) > 0}: the least TV(π_r, π_M) any M reaches (the limit as M → ∞)."""
    log_pi_r, log_q = np.asarray(log_pi_r, float), np.asarray(log_q, float)
    inside = np.isfinite(log_q)
    if not inside.any():
        return 1.0
    return float(max(0.0, -np.expm1(logsumexp(log_pi_r[inside]))))


def induced_distribution(
    log_pi_r: np.ndarray, log_q: np.ndarray, m_values: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """π_M over the support for each M of ``m_values``: ((len(m_values), S), mass errors).

    ``log_pi_r`` and ``log_q`` are log π_r and log q on the same support (−inf where zero); π_r
    must sum to 1 over it, q too. M = 1 gives q itself. See the module docstring for the formula.
    """
    log_pi_r, log_q = np.asarray(log_pi_r, float), np.asarray(log_q, float)
    m_values = [int(m) for m in m_values]
    if any(m < 1 for m in m_values):
        raise ValueError(f"M must be >= 1, got {m_values}")
    inside = np.isfinite(log_q) & np.isfinite(log_pi_r)
    if not inside.any():
        raise ValueError(
            "π_r puts no mass where the sampler proposes: no candidate can be returned"
        )
    q, pi_r = _exp(log_q[inside]), _exp(log_pi_r[inside])
    log_w = log_pi_r[inside] - log_q[inside]
    w = _exp(log_w)
    out = np.zeros((len(m_values), log_q.size))
    many = [k for k, m in enumerate(m_values) if m > 1]
    for k, m in enumerate(m_values):
        if m == 1:
            out[k] = _exp(log_q)
    if many:
        m_big = max(m_values[k] for k in many)
        mass = pi_r.sum()
        w_max, w_min = float(w.max()), float(w[w > 0].min())
        t_low = np.exp(-TAIL) / (w_max + m_big * mass)
        t_high = (TAIL + np.log1p(m_big * mass / w_min)) / w_min
        log_t = np.arange(np.log(t_low), np.log(t_high) + STEP, STEP)
        t = np.exp(log_t)
        decay = np.empty((w.size, t.size))  # e^{−t·w(y)}
        for start in range(0, w.size, CHUNK):
            decay[start : start + CHUNK] = _exp(-np.outer(w[start : start + CHUNK], t))
        with np.errstate(divide="ignore"):
            log_phi = np.log(np.einsum("s,st->t", q, decay))
        powers = np.array([m_values[k] - 1 for k in many], dtype=float)
        kernel = _exp(powers[:, None] * log_phi[None, :] + log_t[None, :]) * STEP  # (K, T)
        integral = np.einsum("st,kt->sk", decay, kernel)  # (S_in, K)
        for column, k in enumerate(many):
            out[k, inside] = m_values[k] * pi_r * integral[:, column]
    out[out < 1e-300] = 0.0  # no subnormals downstream
    return out, np.abs(out.sum(axis=1) - 1.0)


@dataclass(frozen=True)
class InducedDistance:
    """Fig. 1a's quantities for one M (see the module docstring)."""

    m: int
    tv: float  # TV(π_r, π_M)
    tv_floor: float  # 1 − π_r(S)
    logp_induced: float  # E_{y~π_M}[log π_r(y)]: the returned reply's expected log π_r
    logp_optimal: float  # E_{y~π_r}[log π_r(y)] = −H(π_r)
    logp_limit: float  # E_{y~π_r|S}[log π_r(y)]: the M → ∞ limit under this sampler
    mass_error: float  # |Σ π_M − 1|, the quadrature's accuracy


def induced_distances(
    log_pi_r: np.ndarray, log_q: np.ndarray, m_values: Sequence[int]
) -> list[InducedDistance]:
    """TV(π_r, π_M), its floor and the log π_r levels for every M (exact π_r and q)."""
    log_pi_r, log_q = np.asarray(log_pi_r, float), np.asarray(log_q, float)
    induced, errors = induced_distribution(log_pi_r, log_q, m_values)
    pi_r = _exp(log_pi_r)
    finite = np.where(np.isfinite(log_pi_r), log_pi_r, 0.0)
    inside = np.isfinite(log_q)
    restricted = np.where(inside, pi_r, 0.0)
    floor = tv_floor(log_pi_r, log_q)
    return [
        InducedDistance(
            m=int(m),
            tv=float(0.5 * np.abs(pi_r - induced[k]).sum()),
            tv_floor=floor,
            logp_induced=float(np.sum(induced[k] * finite)),
            logp_optimal=float(np.sum(pi_r * finite)),
            logp_limit=float(np.sum(restricted * finite) / restricted.sum()),
            mass_error=float(errors[k]),
        )
        for k, m in enumerate(m_values)
    ]
