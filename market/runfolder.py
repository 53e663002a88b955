"""A run folder on disk (docs/data.md): the resolved scenario, ``meta.json`` and the study's tables.

Every study (a market run, a seed sweep, the paper's replication) writes the same layout:
``scenario.yaml`` (the scenario as run), ``meta.json`` (the study, its variants, seeds and rounds,
the rounds each replicate has completed, status, engines) and one folder of parquet parts per
table, flushed as rounds complete.

Writes are crash-safe in order: each flush writes one part per table (to a hidden temporary file,
then renamed into place), then rewrites ``meta.json`` — the commit point — with the number of
committed parts and the rounds each (variant, seed) has completed. Opening a folder to resume
deletes parts beyond that count (a flush cut short), so the tables and ``meta.json`` agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market.columns import TableSpec
from scenarios.loader import dump_scenario, load_scenario

SCENARIO_FILE = "scenario.yaml"
META_FILE = "meta.json"
TIMING_COLUMNS = ("engine_seconds", "round_seconds")


class RunError(Exception):
    """A run that cannot start or continue; the message is one line saying what to do."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version() -> str:
    try:
        return metadata.version("admarket")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class RunFolder:
    """One run folder and its ``meta.json`` (kept in memory, rewritten on commit).

    ``tables`` are the specs of the study's tables (their parquet schemas); ``scenario`` is the
    scenario as written in the folder.
    """

    path: Path
    meta: dict[str, Any]
    scenario: Any
    tables: Mapping[str, TableSpec]

    @property
    def study(self) -> str:
        """The study's kind (``market``, ``replication``; folders without one are markets)."""
        return str(self.meta.get("study", {}).get("kind", "market"))

    @property
    def options(self) -> dict[str, Any]:
        """What, besides the scenario, the study was built from (e.g. the replication's M grid)."""
        return dict(self.meta.get("study", {}).get("options", {}))

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.meta["seeds"])

    @property
    def rounds(self) -> int:
        """Rounds of each replicate (for the replication: candidate pools)."""
        return int(self.meta["rounds"])

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.meta["variants"])

    @property
    def total_rounds(self) -> int:
        return self.rounds * len(self.seeds) * len(self.variants)

    @property
    def completed_rounds(self) -> int:
        return sum(
            min(done, self.rounds)
            for per_seed in self.meta["completed"].values()
            for done in per_seed.values()
        )

    def completed(self, variant: str, seed: int) -> int:
        return int(self.meta["completed"][variant].get(str(seed), 0))

    @classmethod
    def create(
        cls,
        path: Path,
        scenario: Any,
        seeds: Sequence[int],
        *,
        study: str,
        options: Mapping[str, Any],
        variants: Sequence[str],
        rounds: int,
        tables: Mapping[str, TableSpec],
        facts: Mapping[str, Any] | None = None,
    ) -> RunFolder:
        """Start a new run folder: write the resolved scenario and an empty ``meta.json``.

        ``facts`` are study-specific numbers readers need (the replication's τ and M grid).
        """
        path = Path(path)
        if (path / META_FILE).exists():
            raise RunError(
                f"{path} already holds a run; continue it with `admarket run --resume {path}` "
                "or pick another --out"
            )
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / SCENARIO_FILE, dump_scenario(scenario))
        meta = {
            "admarket_version": _version(),
            "study": {"kind": study, "options": dict(options), "facts": dict(facts or {})},
            "scenario": scenario.name,
            "variants": list(variants),
            "seeds": [int(s) for s in seeds],
            "rounds": int(rounds),
            "tables": list(tables),
            "completed": {v: {str(s): 0 for s in seeds} for v in variants},
            "parts": 0,
            "status": "created",
            "engines": {},
            "engine_seconds": 0.0,
            "created": _now(),
            "updated": _now(),
            "wall_seconds": 0.0,
        }
        # Run from the scenario as written, so that a resumed run starts from the same one.
        folder = cls(path, meta, load_scenario(path / SCENARIO_FILE), dict(tables))
        folder.commit()
        return folder

    @classmethod
    def open(
        cls,
        path: Path,
        tables: Mapping[str, Mapping[str, TableSpec]],
        rounds: int | None = None,
    ) -> RunFolder:
        """Reopen a run folder to continue it (``rounds`` may extend a market run).

        ``tables`` maps each study kind to its table specs.
        """
        path = Path(path)
        if not path.is_dir():
            raise RunError(
                f"run folder {path} does not exist; pass the --out DIR of an earlier run"
            )
        for name in (SCENARIO_FILE, META_FILE):
            if not (path / name).is_file():
                raise RunError(
                    f"{path} has no {name}: it is not a run folder written by admarket run"
                )
        try:
            meta = json.loads((path / META_FILE).read_text())
        except json.JSONDecodeError as err:
            raise RunError(
                f"{path / META_FILE} is not valid JSON ({err.msg}); the folder is damaged"
            ) from err
        kind = str(meta.get("study", {}).get("kind", "market"))
        folder = cls(path, meta, load_scenario(path / SCENARIO_FILE), dict(tables.get(kind, {})))
        if rounds is not None:
            if rounds < folder.rounds:
                raise RunError(
                    f"--rounds {rounds} is fewer than the {folder.rounds} rounds of the run in "
                    f"{path}; leave --rounds out or give a larger number"
                )
            folder.meta["rounds"] = int(rounds)
        folder._drop_uncommitted_parts()
        return folder

    def _drop_uncommitted_parts(self) -> None:
        committed = int(self.meta["parts"])
        for table in self.tables:
            folder = self.path / table
            if not folder.is_dir():
                continue
            for part in folder.iterdir():
                index = _part_index(part.name)
                if part.name.startswith(".") or (index is not None and index >= committed):
                    part.unlink()

    def read_rows(self, table: str, variant: str, seed: int, before: int) -> pd.DataFrame:
        """One replicate's rows of ``table`` for rounds 0..``before``−1, in written order."""
        folder = self.path / table
        if before == 0 or not folder.is_dir():
            return pd.DataFrame(columns=list(self.tables[table].names))
        frame = pd.read_parquet(
            folder, filters=[("variant", "==", variant), ("seed", "==", int(seed))]
        )
        return frame[frame["round"] < before]

    def write(
        self, frames: Mapping[str, pd.DataFrame], variant: str, seed: int, completed: int
    ) -> None:
        """Write one replicate's new rows as one new part per table, then commit ``meta.json``
        with the rounds it has completed."""
        if any(len(frame) for frame in frames.values()):
            name = f"part-{int(self.meta['parts']):05d}.parquet"
            for table, spec in self.tables.items():
                folder = self.path / table
                folder.mkdir(exist_ok=True)
                frame = frames.get(table, pd.DataFrame(columns=list(spec.names)))
                data = pa.Table.from_pandas(frame, schema=spec.schema, preserve_index=False)
                temporary = folder / f".{name}.tmp"
                pq.write_table(data, temporary)
                os.replace(temporary, folder / name)
            self.meta["parts"] = int(self.meta["parts"]) + 1
        self.meta["completed"][variant][str(seed)] = int(completed)
        self.commit()

    def commit(self, status: str | None = None, wall_seconds: float = 0.0) -> None:
        if status is not None:
            self.meta["status"] = status
        self.meta["wall_seconds"] = round(float(self.meta["wall_seconds"]) + wall_seconds, 3)
        self.meta["updated"] = _now()
        _write_atomic(self.path / META_FILE, json.dumps(self.meta, indent=2) + "\n")


def _part_index(name: str) -> int | None:
    stem = name.removesuffix(".parquet")
    if name.endswith(".parquet") and stem.startswith("part-") and stem[5:].isdigit():
        return int(stem[5:])
    return None


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """One table of a run folder (its parts, or its single compacted file); a market table is
    sorted by (variant, seed, round), rows of one round in written order."""
    parts = Path(run_dir) / table
    frame = pd.read_parquet(parts if parts.is_dir() else Path(run_dir) / f"{table}.parquet")
    keys = ["variant", "seed", "round"]
    if set(keys) <= set(frame.columns):
        frame = frame.sort_values(keys, kind="stable")
    return frame.reset_index(drop=True)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """A table without its timing columns: what two runs with the same seed must agree on."""
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
