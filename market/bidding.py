"""Empirical best-response search on a grid: iterate best responses until nobody gains by deviating.

A *game* here is a payoff function ``payoff(profile) -> (n,)`` giving every player's average
utility when player i plays ``profile[i]`` (e.g. a bid or a report scaling), estimated on a fixed
set of rounds with common random numbers, so that two profiles are compared on the same draws.
Each player i has her own finite grid of actions.

Search (iterated best response, Gauss–Seidel order): starting from ``start``, each player in turn
evaluates every action of her grid with the others held at their current actions and switches to
the best one when it beats her current action by more than ``tolerance`` (ties keep the current
action; among equally good alternatives the first in grid order wins). A full pass in which nobody
switches ends the search: every player was checked at the same profile, so no player gains more
than ``tolerance`` by any unilateral deviation on her grid — a pure Nash equilibrium of the
grid game. The search stops after ``max_passes`` passes otherwise, and reports that it did not
converge (best-response dynamics can cycle, e.g. in matching pennies); it then returns, among the
profiles its passes ended at, the one whose largest unilateral gain (regret) is smallest: an
ε-equilibrium of the grid game with ε = max(regrets), reported beside it. Payoffs are cached per
profile, so re-checking a profile costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SearchResult", "best_response_search"]


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The profile the search stopped at and how it got there.

    ``profile``: each player's action (a value of her grid); ``indices``: their grid positions;
    ``converged``: whether the last pass changed nothing (``profile`` is then a grid Nash
    equilibrium; otherwise it is the path's profile with the smallest largest regret);
    ``passes``: passes made; ``payoffs`` (n,): utilities at ``profile``; ``regrets`` (n,): each
    player's largest gain from a unilateral deviation on her grid at ``profile`` (≤ tolerance when
    converged); ``path``: the profile after every pass, starting with ``start``;
    ``evaluations``: distinct profiles evaluated.
    """

    profile: tuple[float, ...]
    indices: tuple[int, ...]
    converged: bool
    passes: int
    payoffs: np.ndarray
    regrets: np.ndarray
    path: tuple[tuple[float, ...], ...]
    evaluations: int


def best_response_search(
    payoff: Callable[[tuple[float, ...]], np.ndarray],
    grids: Sequence[Sequence[float]],
    start: Sequence[float],
    *,
    max_passes: int = 10,
    tolerance: float = 1e-9,
) -> SearchResult:
    """Iterated best response over ``grids`` from ``start`` (see the module docstring).

    ``start[i]`` must be a value of ``grids[i]``. Raises ValueError on empty grids, a start off
    the grid, ``max_passes`` < 1 or a negative tolerance.
    """
    grids = [tuple(float(g) for g in grid) for grid in grids]
    n = len(grids)
    if n == 0 or any(len(g) == 0 for g in grids):
        raise ValueError("every player needs a non-empty grid of actions")
    if len(start) != n:
        raise ValueError(f"start has {len(start)} actions for {n} players")
    if not (isinstance(max_passes, int) and max_passes >= 1):
        raise ValueError(f"max_passes must be an integer >= 1, got {max_passes!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    indices = []
    for i, (grid, action) in enumerate(zip(grids, start, strict=True)):
        if float(action) not in grid:
            raise ValueError(f"start[{i}] = {action!r} is not on player {i}'s grid {grid}")
        indices.append(grid.index(float(action)))

    cache: dict[tuple[int, ...], np.ndarray] = {}

    def value(where: tuple[int, ...]) -> np.ndarray:
        if where not in cache:
            profile = tuple(grids[i][k] for i, k in enumerate(where))
            result = np.asarray(payoff(profile), dtype=float)
            if result.shape != (n,):
                raise ValueError(
                    f"payoff must return one utility per player ({n}), got {result.shape}"
                )
            cache[where] = result
        return cache[where]

    def deviations(where: tuple[int, ...], i: int) -> np.ndarray:
        return np.array([value(where[:i] + (k,) + where[i + 1 :])[i] for k in range(len(grids[i]))])

    def regrets_at(where: tuple[int, ...]) -> np.ndarray:
        gains = [deviations(where, i).max() - value(where)[i] for i in range(n)]
        return np.maximum(np.array(gains, dtype=float), 0.0)

    current = tuple(indices)
    visited = [current]
    converged, passes = False, 0
    while passes < max_passes:
        passes += 1
        moved = False
        for i in range(n):
            utilities = deviations(current, i)
            best = int(np.argmax(utilities))
            if utilities[best] > utilities[current[i]] + tolerance:
                current = current[:i] + (best,) + current[i + 1 :]
                moved = True
        visited.append(current)
        if not moved:
            converged = True
            break
    if converged:
        chosen = current
    else:  # the visited profile closest to an equilibrium; ties go to the latest
        worst = {where: regrets_at(where).max() for where in dict.fromkeys(reversed(visited))}
        chosen = min(worst, key=worst.get)
    return SearchResult(
        profile=tuple(grids[i][k] for i, k in enumerate(chosen)),
        indices=chosen,
        converged=converged,
        passes=passes,
        payoffs=value(chosen).copy(),
        regrets=regrets_at(chosen),
        path=tuple(tuple(grids[i][k] for i, k in enumerate(w)) for w in visited),
        evaluations=len(cache),
    )
