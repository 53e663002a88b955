"""Market runs and seed sweeps as a study: each (variant, seed) replicate is one `MarketModel`.

Variants of one seed share the root seed (common random numbers). Resuming reloads the scenario
from the folder, rebuilds every advertiser's history from the ``advertisers`` table and replays
the entry policies (`MarketModel.restore`); every other random stream is addressed by round, so
a resumed replicate writes exactly the rows an uninterrupted one writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import pyarrow as pa

from agents.records import RoundRecord
from market.columns import RUN_TABLES, TableSpec
from market.engines.pool import EnginePool
from market.model import MarketModel
from market.runfolder import RunError, RunFolder
from scenarios.loader import expand_variants

_RECORD_FIELDS = tuple(f.name for f in fields(RoundRecord))


class MarketReplicate:
    """One variant of the scenario under one root seed: a `MarketModel` stepped round by round."""

    def __init__(self, model: MarketModel) -> None:
        self.model = model
        self.variant = model.variant
        self.seed = model.root_seed
        self.engine = model.engine
        self.engine_seconds = 0.0

    @property
    def round(self) -> int:
        return self.model.round

    def restore(self, folder: RunFolder, done: int) -> None:
        try:
            self.model.restore(histories(folder, self.variant, self.seed, done))
        except (RuntimeError, ValueError) as err:
            raise RunError(
                f"{folder.path}: cannot resume {self.variant}, seed {self.seed}: {err}"
            ) from err

    def step(self) -> None:
        self.model.step()
        self.engine_seconds += self.model.outcome.engine_seconds

    def drain(self) -> Mapping[str, pa.Table]:
        return self.model.drain_rows().tables()

    def close(self) -> None:
        self.model.close()


def histories(folder: RunFolder, variant: str, seed: int, done: int) -> dict[str, list]:
    """Every advertiser's recorded rounds 0..``done``−1 of one replicate, oldest first."""
    frame = folder.read_rows("advertisers", variant, seed, before=done)
    if frame.empty:
        return {}
    frame = frame.sort_values(["advertiser", "round"], kind="stable")
    if "topic" not in frame.columns:  # written before advertisers rows had a topic
        frame["topic"] = ""
    result: dict[str, list[RoundRecord]] = {}
    for name, rows in frame.groupby("advertiser", sort=False):
        records = [RoundRecord(**row) for row in rows[list(_RECORD_FIELDS)].to_dict("records")]
        if [r.round for r in records] != list(range(done)):
            raise RunError(
                f"{folder.path / 'advertisers'} lacks rounds of {name} ({variant}, seed {seed}): "
                f"meta.json says {done} completed; the folder is damaged, start a new run"
            )
        result[str(name)] = records
    return result


@dataclass(frozen=True)
class MarketStudy:
    """Every variant of a scenario for ``scenario.rounds`` rounds (docs/data.md's three tables)."""

    scenario: Any
    kind: ClassVar[str] = "market"
    tables: ClassVar[Mapping[str, TableSpec]] = RUN_TABLES

    @classmethod
    def from_scenario(cls, scenario: Any, options: Mapping[str, Any] | None = None) -> MarketStudy:
        if options:
            raise ValueError(f"a market run takes no study options, got {sorted(options)}")
        return cls(scenario)

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(expand_variants(self.scenario))

    @property
    def rounds(self) -> int:
        return int(self.scenario.rounds)

    def options(self) -> dict[str, Any]:
        return {}

    def facts(self) -> dict[str, Any]:
        return {}

    def model(self, variant: str, seed: int, engines: EnginePool) -> MarketModel:
        """The model of one replicate: the variant's scenario with its seed set to ``seed``."""
        scenario = expand_variants(self.scenario)[variant].model_copy(update={"seed": int(seed)})
        engine = engines.get(scenario.engine, catalog=scenario.catalog())
        return MarketModel(scenario, engine, variant=variant)

    def check(self, engines: EnginePool, seed: int) -> None:
        for variant in self.variants:
            try:
                self.model(variant, seed, engines).close()
            except (ValueError, TypeError, KeyError) as err:
                raise ValueError(
                    f"variant {variant!r} of scenario {self.scenario.name!r}: {err}"
                ) from err

    def replicate(self, variant: str, seed: int, engines: EnginePool) -> MarketReplicate:
        return MarketReplicate(self.model(variant, seed, engines))
