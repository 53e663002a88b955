"""A sweep folder on disk and its jobs.

    DIR/sweep.json         what the sweep is (scenario, --set, grid, root seed, seeds) and its status
    DIR/scenario.yaml      the base scenario, resolved (before the grid)
    DIR/cells/c0003.yaml   each cell's resolved scenario (a job's run starts from it)
    DIR/cells.parquet      cell id -> every grid key (and a label)
    DIR/runs/c0003-s001/   each job's own run folder (docs/data.md), resumable on its own
    DIR/summary.parquet    one row per cell × seed × variant: grid keys and headline metrics
    DIR/sweep.html         the sweep report (`reports.sweep_report`)

``sweep.json`` is written last when a sweep is created, so a folder that has it holds a complete
plan; a job is finished when its run folder's ``meta.json`` says so.

Seeds: job (cell, k) runs with seed ``root + k`` for k = 0..N−1 (`job_seed`), the seeds
``admarket sweep --seeds N`` has always used; the run's random streams are spawned from
``SeedSequence(root + k)`` (`market.model.RandomStreams`). A job's seed therefore depends on the
root seed and its seed index only, not on the grid, the order of execution or the number of
workers, and its rows equal those of ``admarket run SCENARIO --set <cell> --seed <root + k>``.
Every cell sees the same seeds (common random numbers across the grid).
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

from scenarios.loader import dump_scenario

from .errors import SweepError
from .grid import Cell, Grid, format_value
from .metrics import METRICS

SWEEP_FILE = "sweep.json"
SCENARIO_FILE = "scenario.yaml"
CELLS_FILE = "cells.parquet"
SUMMARY_FILE = "summary.parquet"
CELLS_DIR = "cells"
RUNS_DIR = "runs"
KIND = "admarket sweep"


def job_seed(root_seed: int, index: int) -> int:
    """The seed of the ``index``-th replicate: ``root + index`` (see the module docstring)."""
    return int(root_seed) + int(index)


@dataclass(frozen=True)
class Job:
    """One run of a sweep: a cell and a seed index."""

    cell: int
    seed_index: int
    seed: int

    @property
    def name(self) -> str:
        return f"c{self.cell:04d}-s{self.seed_index:03d}"


def is_sweep_folder(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version() -> str:
    try:
        return metadata.version("admarket")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_atomic(path: Path, data: str | bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    if isinstance(data, bytes):
        temporary.write_bytes(data)
    else:
        temporary.write_text(data, encoding="utf-8")
    os.replace(temporary, path)


@dataclass
class SweepFolder:
    """A sweep folder and its ``sweep.json`` (kept in memory, rewritten on commit)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def grid(self) -> Grid:
        return Grid.from_json(self.manifest["grid"])

    @property
    def jobs(self) -> tuple[Job, ...]:
        """Every job, cell by cell, seed index within a cell."""
        root, seeds = int(self.manifest["root_seed"]), int(self.manifest["seeds"])
        return tuple(
            Job(cell, k, job_seed(root, k))
            for cell in range(int(self.manifest["cells"]))
            for k in range(seeds)
        )

    def cell_file(self, cell: int) -> Path:
        return self.path / CELLS_DIR / f"c{cell:04d}.yaml"

    def run_dir(self, job: Job) -> Path:
        return self.path / RUNS_DIR / job.name

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        base: Any,
        origin: str,
        overrides: Sequence[str],
        grid: Grid,
        resolved: Sequence[Any],
        seeds: int,
    ) -> SweepFolder:
        """Write the plan: the base and every cell's scenario, ``cells.parquet``, then
        ``sweep.json``. ``resolved`` holds each cell's scenario, in cell order."""
        path = Path(path)
        check_new_folder(path)
        (path / CELLS_DIR).mkdir(parents=True, exist_ok=True)
        _write_atomic(path / SCENARIO_FILE, dump_scenario(base))
        cells = grid.cells()
        for cell, scenario in zip(cells, resolved, strict=True):
            _write_atomic(path / CELLS_DIR / f"c{cell.index:04d}.yaml", dump_scenario(scenario))
        _write_atomic(path / CELLS_FILE, _parquet_bytes(cells_frame(grid, cells)))
        manifest = {
            "kind": KIND,
            "admarket_version": _version(),
            "scenario": base.name,
            "origin": origin,
            "overrides": [str(o) for o in overrides],
            "grid": grid.to_json(),
            "root_seed": int(base.seed),
            "seeds": int(seeds),
            "rounds": int(base.rounds),
            "cells": len(cells),
            "jobs": len(cells) * int(seeds),
            "status": "created",
            "finished_jobs": 0,
            "failed": None,
            "created": _now(),
            "updated": _now(),
        }
        folder = cls(path, manifest)
        folder.commit()
        return folder

    @classmethod
    def open(cls, path: Path) -> SweepFolder:
        path = Path(path)
        if not path.is_dir():
            raise SweepError(
                f"--resume {path}: no such folder — pass the --out DIR of an earlier sweep"
            )
        if not (path / SWEEP_FILE).is_file():
            hint = (
                "it is a run folder: continue it with `admarket run --resume DIR`"
                if (path / "meta.json").is_file()
                else "pass the --out DIR of an earlier `admarket sweep --grid ...`"
            )
            raise SweepError(f"--resume {path}: no {SWEEP_FILE} — {hint}")
        try:
            manifest = json.loads((path / SWEEP_FILE).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise SweepError(
                f"{path / SWEEP_FILE}: not valid JSON — the folder is damaged; start a new sweep"
            ) from err
        if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
            raise SweepError(
                f"{path / SWEEP_FILE}: not written by admarket sweep — pass a sweep's --out DIR"
            )
        return cls(path, manifest)

    def commit(self, status: str | None = None, **fields: Any) -> None:
        if status is not None:
            self.manifest["status"] = status
        self.manifest.update(fields)
        self.manifest["updated"] = _now()
        _write_atomic(self.path / SWEEP_FILE, json.dumps(self.manifest, indent=2) + "\n")

    def write_summary(self, rows: Mapping[Job, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
        """``summary.parquet`` from the finished jobs' metric rows, with every grid key."""
        frame = summary_frame(self.grid, rows)
        _write_atomic(self.path / SUMMARY_FILE, _parquet_bytes(frame))
        return frame


def check_new_folder(path: Path) -> None:
    """A new sweep goes into a folder that does not exist yet or is empty."""
    if (path / SWEEP_FILE).is_file():
        raise SweepError(
            f"--out {path}: already holds a sweep — continue it with "
            f"`admarket sweep --resume {path}` or pick another --out"
        )
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SweepError(f"--out {path}: exists and is not an empty folder — pick another --out")


def key_column(values: Sequence[Any]) -> list[Any]:
    """One grid key's values as a parquet-friendly column: booleans, numbers or text stay as
    they are; anything else (lists, mappings, mixed kinds) becomes its YAML text."""
    kinds = {bool if isinstance(v, bool) else (float if isinstance(v, int | float) else type(v))
             for v in values}  # fmt: skip
    if len(kinds) == 1 and kinds <= {bool, float, str}:
        return list(values)
    return [format_value(v) for v in values]


def cells_frame(grid: Grid, cells: Sequence[Cell]) -> pd.DataFrame:
    """One row per cell: ``cell``, ``label`` and one column per grid key."""
    frame = pd.DataFrame({"cell": [c.index for c in cells], "label": [c.label for c in cells]})
    for key in grid.keys:
        frame[key] = key_column([c.values[key] for c in cells])
    return frame


def summary_frame(grid: Grid, rows: Mapping[Job, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """One row per job × variant, in job order: job keys, grid keys, ``rounds``, metrics."""
    cells = cells_frame(grid, grid.cells()).set_index("cell")
    records = [
        {"cell": job.cell, "job": job.name, "seed_index": job.seed_index, "seed": job.seed}
        | dict(row)
        for job in sorted(rows, key=lambda j: (j.cell, j.seed_index))
        for row in rows[job]
    ]
    columns = ["cell", "job", "seed_index", "seed", "variant", *grid.keys, "rounds", *METRICS]
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame = pd.DataFrame.from_records(records)
    for key in grid.keys:
        frame[key] = cells.loc[frame["cell"], key].to_numpy()
    return frame[columns]


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
