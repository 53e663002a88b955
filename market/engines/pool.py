"""Engines shared across the replicates of a run (or the jobs of a sweep worker).

A wrapper beside the engine protocol: it builds each distinct engine once and hands the same
instance to every caller, so variants and seeds share loaded weights and the call cache.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from market.engines.base import Catalog, Engine


def _spec_key(spec: Any) -> str:
    data = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)
    return json.dumps(data, sort_keys=True, default=str)


def _spec_type(spec: Any) -> str:
    return spec["type"] if isinstance(spec, dict) else spec.type


class EnginePool:
    """One engine per distinct engine spec, built on first use and shared afterwards.

    ``catalog`` is the world an engine knows when a caller names none (a scenario's brands and
    queries). Engines that read the catalog (`WORLD_AWARE`: the synthetic engine) are built per
    (spec, catalog) — a sweep's cells or the paper's per-query instances are different worlds —
    and only the ``worlds`` most recently used of them are kept; real LLMs ignore the catalog,
    so one is built per spec and kept, sharing loaded weights between every caller. Real LLMs go
    behind the persistent call cache when ``cache`` is on; the synthetic engine is exact and
    faster than any cache, so it never is.
    """

    UNCACHED = frozenset({"synthetic"})
    WORLD_AWARE = frozenset({"synthetic"})

    def __init__(self, catalog: Catalog | None = None, *, cache: bool, worlds: int = 4) -> None:
        if worlds < 1:
            raise ValueError(f"worlds must be >= 1, got {worlds}")
        self.catalog = catalog
        self.cache = cache
        self.worlds = worlds
        self._engines: dict[str, Engine] = {}
        self._per_world: OrderedDict[tuple[str, str], Engine] = OrderedDict()

    def get(self, spec: Any, catalog: Catalog | None = None) -> Engine:
        """The engine ``spec`` names (``{type, kwargs}`` or a scenario's engine spec) for the
        world ``catalog`` (default: the pool's)."""
        key = _spec_key(spec)
        world = self.catalog if catalog is None else catalog
        if _spec_type(spec) not in self.WORLD_AWARE:
            if key not in self._engines:
                self._engines[key] = self._create(spec, world)
            return self._engines[key]
        slot = (key, repr(world))
        if slot in self._per_world:
            self._per_world.move_to_end(slot)
        else:
            self._per_world[slot] = self._create(spec, world)
            while len(self._per_world) > self.worlds:
                self._per_world.popitem(last=False)
        return self._per_world[slot]

    def _create(self, spec: Any, catalog: Catalog | None) -> Engine:
        from market.engines import create_engine  # loads an LLM stack only when a run needs it

        cache = self.cache and _spec_type(spec) not in self.UNCACHED
        return create_engine(spec, catalog=catalog, cache=cache)
