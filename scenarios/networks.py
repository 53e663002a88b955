"""Observation graphs: whose histories an advertiser's entry policy may look at (``network``).

Each graph type is registered in ``NETWORKS`` and built from ``{type, kwargs}``; random graphs draw
from the generator they are given (the scenario seeds it, see ``Scenario.observation_graph``).
Settings are checked without building (``check_settings``); the checks that need the number of
advertisers are ``check_nodes``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from market.registry import CheckedSettings, Registry, SettingError, integer, probability

NETWORKS = Registry("network")


class Network(CheckedSettings, ABC):
    """A graph type over ``n`` advertisers (nodes 0..n-1)."""

    def __post_init__(self) -> None:
        self.check_settings({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def check_nodes(cls, settings: dict[str, Any], n: int) -> None:
        """Raise SettingError when the settings do not fit ``n`` advertisers (default: they do)."""

    @abstractmethod
    def graph(self, n: int, rng: np.random.Generator) -> nx.Graph:
        """The graph over nodes 0..n-1 (random ones draw from ``rng``)."""


_P = probability(fix="e.g. p: 0.3")


@NETWORKS.register("complete")
@dataclass(frozen=True)
class Complete(Network):
    """Everyone observes everyone."""

    def graph(self, n: int, rng: np.random.Generator) -> nx.Graph:
        return nx.complete_graph(n)


@NETWORKS.register("ring")
@dataclass(frozen=True)
class Ring(Network):
    """Each advertiser observes the one before and after it, in scenario order."""

    def graph(self, n: int, rng: np.random.Generator) -> nx.Graph:
        return nx.cycle_graph(n)


@NETWORKS.register("watts_strogatz")
@dataclass(frozen=True)
class WattsStrogatz(Network):
    """Small world (Watts & Strogatz 1998): a ring where each advertiser observes its ``k``
    nearest neighbors, each edge rewired with probability ``p``."""

    k: int = 2
    p: float = 0.1

    checks = {"k": integer(2, fix="k is the number of neighbors per node, e.g. k: 4"), "p": _P}

    @classmethod
    def check_nodes(cls, settings: dict[str, Any], n: int) -> None:
        k = settings.get("k", 2)
        if n < 3:
            raise SettingError(
                "k",
                f"a Watts–Strogatz graph needs at least 3 advertisers (2 <= k < n), this "
                f"scenario has {n}",
                "use network type complete or ring",
            )
        if not (isinstance(k, int) and not isinstance(k, bool) and 2 <= k < n):
            allowed = "2" if n == 3 else f"an integer in [2, {n - 1}]"
            raise SettingError(
                "k",
                f"k (neighbors per node) must be {allowed} for {n} advertisers, got {k!r}",
                "lower k or use network type complete",
            )

    def graph(self, n: int, rng: np.random.Generator) -> nx.Graph:
        return nx.watts_strogatz_graph(n, self.k, self.p, seed=rng)


@NETWORKS.register("erdos_renyi")
@dataclass(frozen=True)
class ErdosRenyi(Network):
    """Random graph G(n, p): each pair of advertisers observes each other with probability p."""

    p: float = 0.5

    checks = {"p": _P}

    def graph(self, n: int, rng: np.random.Generator) -> nx.Graph:
        return nx.gnp_random_graph(n, self.p, seed=rng)


@NETWORKS.register("none")
@dataclass(frozen=True)
class Isolated(Network):
    """Nobody observes anybody."""

    def graph(self, n: int, rng: np.random.Generator) -> nx.Graph:
        return nx.empty_graph(n)
