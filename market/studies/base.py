"""What the study runner (`market.runner`) runs: a study, split into replicates.

A *study* is everything one run folder holds: a scenario, its variants, the root seeds, how many
rounds each (variant, seed) *replicate* runs and which tables it writes. A *replicate* steps
through its rounds, hands over the rows collected since it was last asked, and can continue a
replicate the folder holds part of. Market runs and seed sweeps (`market.studies.market`) and the
paper's replication (`market.studies.replication`) are studies; the runner gives them one
seeding rule (each replicate gets its root seed; every random stream inside it is a
``SeedSequence`` child of that seed), one writer and one run-folder layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pandas as pd
import pyarrow as pa

from market.columns import TableSpec
from market.engines.base import Engine
from market.engines.pool import EnginePool

if TYPE_CHECKING:
    from market.runfolder import RunFolder


class Replicate(Protocol):
    """One (variant, root seed) of a study, run round by round."""

    variant: str
    seed: int
    round: int  # rounds completed
    engine: Engine  # what the run folder records about the engine
    engine_seconds: float  # time spent inside engine calls so far

    def restore(self, folder: RunFolder, done: int) -> None:
        """Continue from the ``done`` rounds the folder holds (a fresh replicate only)."""

    def step(self) -> None:
        """Run one round and collect its rows."""

    def drain(self) -> Mapping[str, pd.DataFrame | pa.Table]:
        """The rows of the rounds completed since the last drain, one frame (or Arrow table, in
        the table's schema) per table."""

    def close(self) -> None:
        """Release what the replicate holds (it is not used afterwards)."""


class Study(Protocol):
    """A scenario run as one run folder: variants × seeds replicates of ``rounds`` rounds."""

    kind: ClassVar[str]
    tables: ClassVar[Mapping[str, TableSpec]]
    scenario: Any

    @property
    def variants(self) -> tuple[str, ...]: ...

    @property
    def rounds(self) -> int: ...

    def options(self) -> dict[str, Any]:
        """JSON: with the scenario, what rebuilds this study (`from_scenario`)."""

    def facts(self) -> dict[str, Any]:
        """JSON: numbers readers of the folder need besides the scenario (e.g. τ, the M grid)."""

    def check(self, engines: EnginePool, seed: int) -> None:
        """Build what a replicate needs once, so bad settings fail before anything is written
        (ValueError, TypeError or KeyError naming the setting)."""

    def replicate(self, variant: str, seed: int, engines: EnginePool) -> Replicate: ...
