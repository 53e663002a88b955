"""Engine wall time: a wrapper that adds up the seconds spent inside engine calls.

clock = EngineClock()
[candidates] = clock.call(engine.generate, [prompt], m, params, seed)
clock.seconds  # time inside the engine, recorded per round as ``engine_seconds``
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class EngineClock:
    """Calls an engine method and adds up the wall time spent inside it."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - start
