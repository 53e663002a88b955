"""Token auction (Duetting et al. 2023): per-token aggregation, stable sampling, critical bids.

At each position every advertiser i reports her LLM's next-token distribution p_i over the
vocabulary (a row of ``dists``: probabilities, shape (n, V), each row summing to 1) and a scalar
bid b_i ≥ 0. The platform's reference distribution may join as one more participant whose weight
is fixed (``reference_weight``). With weights w (bids, then the reference weight) and W = Σ w:

- linear:      q = Σ_k w_k p_k / W;
- log-linear:  q ∝ exp(Σ_k w_k log p_k / W), in log space; a token that some participant with
  w_k > 0 gives probability 0 gets q = 0 (a participant with w_k = 0 vetoes nothing).

Stable sampling: one shared uniform u per position, inverse CDF over the fixed token order; the
drawn token is the smallest k with cumsum(q)[k] > u.

Payment: advertiser i pays her critical bid
    c_i = inf{b' ∈ [0, b_i] : token(b'') = token(b_i) for every b'' ∈ [b', b_i]},
with everyone else's weight and u held fixed — the lowest bid down to which the same token stays
drawn without interruption (0 if it is drawn all the way down to bid 0). With nobody else holding
weight, q = p_i for every b_i > 0 and c_i = 0.

Linear rule, exactly: with S = Σ_{k≠i} w_k p_k and W_{-i} = Σ_{k≠i} w_k, cumsum(q)[k] > u is
b·(P_i[k] − u) + (S[k] − u·W_{-i}) > 0 (P_i, S cumulative sums), a half-line in b, so the set of
bids drawing a given token is an interval and c_i is its left end, solved in closed form.
Log-linear rule: q_λ ∝ p_i^λ · m^{1−λ} with λ = b/(b + W_{-i}) and m the others' geometric mixture;
that set need not be an interval, so c_i is found by scanning a grid of ``SCAN_POINTS`` bids down
from b_i and bisecting (to ``BID_TOLERANCE``) the first cell whose lower end draws another token.
An excursion to another token and back inside one grid cell is below that resolution. q jumps at
b_i = 0 (a zero bid vetoes nothing, any positive bid vetoes the tokens p_i rules out), so the
scan starts just right of 0: what bid 0 itself draws never lowers the infimum.

Monotonicity (what raising b_i does, everything else fixed):
- linear: q − p_i = W_{-i}/(b_i + W_{-i}) · (m − p_i) with m = S/W_{-i}, so q moves along the
  segment from m to p_i; |q − p_i|_TV and KL(p_i‖q) are non-increasing in b_i;
- log-linear: q_λ is an exponential family in λ with statistic s = log p_i − log m, so
  E_q[log p_i − log m] (d/dλ = Var_q s ≥ 0) is non-decreasing and KL(q‖p_i)
  (d/dλ = −(1−λ)·Var_q s ≤ 0) is non-increasing. E_q[log p_i] alone is NOT monotone in general
  (it falls when the others are sharper than p_i in the same direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BID_TOLERANCE",
    "RULES",
    "SCAN_POINTS",
    "TokenStep",
    "aggregate",
    "critical_bids",
    "stable_sample",
    "token_step",
]

RULES = ("linear", "loglinear")
BID_TOLERANCE = 1e-9
SCAN_POINTS = 32
_RIGHT_OF_ZERO = 1e-12
_ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class TokenStep:
    """One position of the token auction: the drawn token, the aggregate q (V,) it was drawn
    from, and each advertiser's payment (n,) for this token (her critical bid)."""

    token: int
    q: np.ndarray
    payments: np.ndarray


class _Market:
    """Validated participants: rows of ``probs`` (K, V) are the advertisers, then the reference
    when it has weight; ``weights`` (K,) are the bids, then the reference weight."""

    def __init__(self, probs: np.ndarray, weights: np.ndarray, rule: str, n_advertisers: int):
        self.probs = probs
        self.weights = weights
        self.rule = rule
        self.n_advertisers = n_advertisers
        impossible = probs == 0
        self._impossible = impossible.astype(float)
        with np.errstate(divide="ignore"):
            self._log_probs = np.where(impossible, 0.0, np.log(probs))

    def q(self, weights: np.ndarray) -> np.ndarray:
        """Aggregate distributions for each row of ``weights`` (G, K) -> (G, V).

        einsum (not BLAS, whose kernels differ with G) keeps each row's result independent of
        how many rows are evaluated together: the scan and the final draw agree to the last bit.
        """
        total = weights.sum(axis=1)[:, None]
        if self.rule == "linear":
            return np.einsum("gk,kv->gv", weights, self.probs) / total
        vetoed = np.einsum("gk,kv->gv", (weights > 0).astype(float), self._impossible) > 0
        if np.any(np.all(vetoed, axis=1)):
            raise ValueError(
                "log-linear aggregation is undefined: no token has positive probability under "
                "every participant with a positive weight; use rule='linear' or smooth the dists"
            )
        mixed = np.einsum("gk,kv->gv", weights, self._log_probs) / total
        logits = np.where(vetoed, -np.inf, mixed)
        unnormalised = np.exp(logits - np.max(logits, axis=1, keepdims=True))
        return unnormalised / unnormalised.sum(axis=1, keepdims=True)

    def tokens(self, weights: np.ndarray, u: float) -> np.ndarray:
        return _inverse_cdf(self.q(weights), u)


def aggregate(
    dists: np.ndarray,
    bids: np.ndarray,
    rule: str = "linear",
    reference: np.ndarray | None = None,
    reference_weight: float = 0.0,
) -> np.ndarray:
    """The aggregate next-token distribution q (V,) (linear or log-linear, see the module doc).

    ``dists`` (n, V) are probabilities (rows are renormalised; a row summing to 1 ± 1e-3 is
    accepted), ``bids`` (n,) are ≥ 0, ``reference`` (V,) joins with weight ``reference_weight``.
    """
    market = _market(dists, bids, rule, reference, reference_weight)
    return market.q(market.weights[None])[0]


def stable_sample(q: np.ndarray, u: float) -> int:
    """Inverse-CDF draw over the fixed token order: the smallest k with cumsum(q)[k] > u.

    ``q`` (V,) is a probability vector (sum 1 ± 1e-3, e.g. np.exp of float32 log-probs; the
    comparison is with u·Σq), ``u`` ∈ [0, 1) the position's shared uniform. A token with q = 0
    is never drawn.
    """
    q = _as_float_array(q, "q")
    if q.ndim != 1 or q.shape[0] == 0:
        raise ValueError(f"q must be a non-empty 1-D probability vector, got shape {q.shape}")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ValueError("q must contain finite, non-negative probabilities")
    if abs(q.sum() - 1.0) > _ROW_SUM_TOLERANCE:
        raise ValueError(f"q must sum to 1 (within {_ROW_SUM_TOLERANCE}), got sum {q.sum()!r}")
    return int(_inverse_cdf(q[None], _check_uniform(u))[0])


def critical_bids(
    dists: np.ndarray,
    bids: np.ndarray,
    u: float,
    *,
    rule: str,
    reference: np.ndarray | None = None,
    reference_weight: float = 0.0,
) -> np.ndarray:
    """Each advertiser's critical bid (n,) for the token drawn with uniform ``u`` (module doc)."""
    return token_step(
        dists, bids, u, rule=rule, reference=reference, reference_weight=reference_weight
    ).payments


def token_step(
    dists: np.ndarray,
    bids: np.ndarray,
    u: float,
    *,
    rule: str,
    reference: np.ndarray | None = None,
    reference_weight: float = 0.0,
) -> TokenStep:
    """Aggregate, draw one token by stable sampling with ``u``, and charge every critical bid."""
    u = _check_uniform(u)
    market = _market(dists, bids, rule, reference, reference_weight)
    q = market.q(market.weights[None])[0]
    token = int(_inverse_cdf(q[None], u)[0])
    payments = np.array(
        [_critical_bid(market, i, token, u) for i in range(market.n_advertisers)], dtype=float
    )
    q.setflags(write=False)
    payments.setflags(write=False)
    return TokenStep(token=token, q=q, payments=payments)


def _critical_bid(market: _Market, i: int, token: int, u: float) -> float:
    bid = float(market.weights[i])
    others = float(np.sum(np.delete(market.weights, i)))
    if bid == 0.0 or others == 0.0:
        return 0.0
    if market.rule == "linear":
        return _linear_critical_bid(market, i, token, u, bid, others)
    return _scanned_critical_bid(market, i, token, u, bid)


def _with_bid(market: _Market, i: int, bids: np.ndarray) -> np.ndarray:
    weights = np.repeat(market.weights[None], len(bids), axis=0)
    weights[:, i] = bids
    return weights


def _draws(market: _Market, i: int, bids: np.ndarray, u: float) -> np.ndarray:
    return market.tokens(_with_bid(market, i, np.asarray(bids, dtype=float)), u)


def _linear_critical_bid(
    market: _Market, i: int, token: int, u: float, bid: float, others: float
) -> float:
    """Left end of the interval of bids drawing ``token`` (module doc), then a consistency check."""
    weights = market.weights.copy()
    weights[i] = 0.0
    own_cdf = np.cumsum(market.probs[i])
    others_cdf = np.cumsum(weights @ market.probs)
    lower = 0.0
    slope, intercept = own_cdf[token] - u, others_cdf[token] - u * others
    if slope > 0:
        lower = max(lower, -intercept / slope)
    if token > 0:
        slope, intercept = own_cdf[token - 1] - u, others_cdf[token - 1] - u * others
        if slope < 0:
            lower = max(lower, -intercept / slope)
    lower = min(lower, bid)
    probe = min(bid, lower + BID_TOLERANCE)
    if lower == 0.0 and _draws(market, i, [0.0], u)[0] == token:
        return 0.0
    if _draws(market, i, [probe], u)[0] == token:
        return lower
    return _bisect(market, i, token, u, lower, bid)


def _scanned_critical_bid(market: _Market, i: int, token: int, u: float, bid: float) -> float:
    grid = np.linspace(0.0, bid, SCAN_POINTS + 1)
    # A positive bid vetoes the tokens p_i rules out, a zero bid does not: q jumps at 0, and only
    # the limit from the right matters for the infimum.
    grid[0], grid[-1] = bid * _RIGHT_OF_ZERO, bid
    same = _draws(market, i, grid, u) == token
    if np.all(same):
        return 0.0
    first_below = int(np.flatnonzero(~same)[-1])
    return _bisect(market, i, token, u, grid[first_below], grid[first_below + 1])


def _bisect(market: _Market, i: int, token: int, u: float, low: float, high: float) -> float:
    """Shrink [low, high] (``high`` draws ``token``, ``low`` does not) to BID_TOLERANCE."""
    tolerance = max(BID_TOLERANCE, 4 * np.finfo(float).eps * high)
    while high - low > tolerance:
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if _draws(market, i, [middle], u)[0] == token:
            high = middle
        else:
            low = middle
    return float(high)


def _inverse_cdf(q: np.ndarray, u: float) -> np.ndarray:
    """Row-wise smallest k with cumsum(q)[k] > u·Σq (u·Σq guards against Σq = 1 − ε)."""
    cdf = np.cumsum(q, axis=1)
    above = cdf > u * cdf[:, -1:]
    last_positive = q.shape[1] - 1 - np.argmax(q[:, ::-1] > 0, axis=1)
    return np.where(np.any(above, axis=1), np.argmax(above, axis=1), last_positive)


def _market(
    dists: np.ndarray,
    bids: np.ndarray,
    rule: str,
    reference: np.ndarray | None,
    reference_weight: float,
) -> _Market:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    probs = _check_distributions(_as_float_array(dists, "dists"), "dists")
    bids = _as_float_array(bids, "bids")
    if bids.shape != (probs.shape[0],):
        raise ValueError(
            f"bids must have shape ({probs.shape[0]},), one per row of dists, got {bids.shape}"
        )
    if not np.all(np.isfinite(bids)) or np.any(bids < 0):
        raise ValueError(f"bids must be finite and >= 0, got {bids.tolist()}")
    n_advertisers = probs.shape[0]
    reference_weight = _check_reference_weight(reference_weight)
    if reference is not None:
        reference = _check_distributions(_as_float_array(reference, "reference")[None], "reference")
        if reference.shape[1] != probs.shape[1]:
            raise ValueError(
                f"reference has {reference.shape[1]} tokens but dists have {probs.shape[1]}; "
                "both must be over the same vocabulary"
            )
    if reference_weight > 0:
        if reference is None:
            raise ValueError(
                f"reference_weight={reference_weight} needs a reference distribution; pass "
                "reference=(V,) probabilities or set reference_weight=0"
            )
        probs = np.concatenate([probs, reference])
        bids = np.append(bids, reference_weight)
    if not np.any(bids > 0):
        raise ValueError(
            "all bids are zero and there is no weighted reference, so the aggregate distribution "
            "is undefined; give some bid > 0 or a reference with reference_weight > 0"
        )
    return _Market(probs=probs, weights=bids, rule=rule, n_advertisers=n_advertisers)


def _check_distributions(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be probabilities of shape (n, V) with V >= 1 (reference: (V,)), "
            f"got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite, non-negative probabilities (not log-probs)")
    sums = array.sum(axis=1)
    bad = np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE
    if np.any(bad):
        row = int(np.argmax(bad))
        raise ValueError(
            f"{name} row {row} sums to {sums[row]!r}, not 1; pass probabilities "
            "(np.exp of log-probs), one distribution per row"
        )
    return array / sums[:, None]


def _check_reference_weight(reference_weight: float) -> float:
    weight = _as_float_array(reference_weight, "reference_weight")
    if weight.ndim != 0 or not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"reference_weight must be finite and >= 0, got {reference_weight!r}")
    return float(weight)


def _check_uniform(u: float) -> float:
    value = _as_float_array(u, "u")
    if value.ndim != 0 or not 0.0 <= value < 1.0:
        raise ValueError(f"u must be a uniform draw in [0, 1), got {u!r}")
    return float(value)


def _as_float_array(values: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of real numbers: {error}") from error
