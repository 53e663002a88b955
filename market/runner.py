"""A run folder (docs/data.md): the resolved scenario, parquet parts flushed as rounds complete,
``meta.json`` with the completed rounds, and resuming a run that was stopped.

Writes are crash-safe in order: each flush writes one part per table (to a hidden temporary file,
then renamed into place), then rewrites ``meta.json`` — the commit point — with the number of
committed parts and the rounds each (variant, seed) has completed. Opening a folder to resume
deletes parts beyond that count (a flush cut short), so the tables and ``meta.json`` agree.

Resuming reloads the scenario from the folder, rebuilds every advertiser's history from
``advertisers`` and replays the entry policies (`MarketModel.restore`); every other random
stream is addressed by round, so the resumed run writes exactly the rows an uninterrupted run
writes (only the part boundaries and the two timing columns differ).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from agents.records import RoundRecord
from market.columns import RUN_TABLES, SCHEMAS
from market.engines.base import Engine, EngineInfo
from market.model import MarketModel, TableRows
from scenarios.loader import dump_scenario, expand_variants, load_scenario

TABLES = tuple(RUN_TABLES)
SCENARIO_FILE = "scenario.yaml"
META_FILE = "meta.json"
FLUSH_SECONDS = 2.0
TIMING_COLUMNS = ("engine_seconds", "round_seconds")

_RECORD_FIELDS = tuple(f.name for f in fields(RoundRecord))


class RunError(Exception):
    """A run that cannot start or continue; the message is one line saying what to do."""


class RunInterrupted(Exception):
    """The user stopped the run (Ctrl-C); every completed round up to the last flush is saved."""

    def __init__(self, run_dir: Path, completed: int) -> None:
        self.run_dir = run_dir
        self.completed = completed
        super().__init__(f"interrupted after {completed} completed rounds in {run_dir}")


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<timestamp>``."""
    return Path(root) / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version() -> str:
    try:
        return metadata.version("admarket")
    except metadata.PackageNotFoundError:
        return "unknown"


def _engine_json(info: EngineInfo) -> dict[str, Any]:
    return {
        "engine": info.engine,
        "model": info.model,
        "device": info.device,
        "dtype": info.dtype,
        "extra": {str(k): str(v) for k, v in dict(info.extra).items()},
    }


@dataclass
class RunFolder:
    """One run folder on disk and its ``meta.json`` (kept in memory, rewritten on commit)."""

    path: Path
    meta: dict[str, Any]
    scenario: Any = None

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.meta["seeds"])

    @property
    def rounds(self) -> int:
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
    def create(cls, path: Path, scenario: Any, seeds: Sequence[int]) -> RunFolder:
        """Start a new run folder: write the resolved scenario and an empty ``meta.json``."""
        path = Path(path)
        if (path / META_FILE).exists():
            raise RunError(
                f"{path} already holds a run; continue it with `admarket run --resume {path}` "
                "or pick another --out"
            )
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / SCENARIO_FILE, dump_scenario(scenario))
        variants = list(expand_variants(scenario))
        meta = {
            "admarket_version": _version(),
            "scenario": scenario.name,
            "variants": variants,
            "seeds": [int(s) for s in seeds],
            "rounds": int(scenario.rounds),
            "completed": {v: {str(s): 0 for s in seeds} for v in variants},
            "parts": 0,
            "status": "created",
            "engines": {},
            "created": _now(),
            "updated": _now(),
            "wall_seconds": 0.0,
        }
        folder = cls(path, meta)
        folder.commit()
        # Run from the scenario as written, so that a resumed run starts from the same one.
        folder.scenario = load_scenario(path / SCENARIO_FILE)
        return folder

    @classmethod
    def open(cls, path: Path, rounds: int | None = None) -> RunFolder:
        """Reopen a run folder to continue it (``rounds`` may extend the run)."""
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
        folder = cls(path, meta, load_scenario(path / SCENARIO_FILE))
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
        for table in TABLES:
            folder = self.path / table
            if not folder.is_dir():
                continue
            for part in folder.iterdir():
                index = _part_index(part.name)
                if part.name.startswith(".") or (index is not None and index >= committed):
                    part.unlink()

    def histories(self, variant: str, seed: int) -> dict[str, list[RoundRecord]]:
        """Every advertiser's recorded rounds of one replicate, oldest first."""
        done = self.completed(variant, seed)
        folder = self.path / "advertisers"
        if done == 0:
            return {}
        frame = pd.read_parquet(
            folder, filters=[("variant", "==", variant), ("seed", "==", int(seed))]
        )
        frame = frame[frame["round"] < done].sort_values(["advertiser", "round"], kind="stable")
        if "topic" not in frame.columns:  # written before advertisers rows had a topic
            frame["topic"] = ""
        histories: dict[str, list[RoundRecord]] = {}
        for name, rows in frame.groupby("advertiser", sort=False):
            records = [RoundRecord(**row) for row in rows[list(_RECORD_FIELDS)].to_dict("records")]
            if [r.round for r in records] != list(range(done)):
                raise RunError(
                    f"{folder} lacks rounds of {name} ({variant}, seed {seed}): meta.json says "
                    f"{done} completed; the folder is damaged, start a new run"
                )
            histories[str(name)] = records
        return histories

    def write(self, rows: TableRows, variant: str, seed: int, completed: int) -> None:
        """Write one replicate's new rows as one new part per table, then commit ``meta.json``
        with the rounds it has completed."""
        if len(rows.rounds):
            name = f"part-{int(self.meta['parts']):05d}.parquet"
            for table in TABLES:
                folder = self.path / table
                folder.mkdir(exist_ok=True)
                data = pa.Table.from_pandas(
                    getattr(rows, table), schema=SCHEMAS[table], preserve_index=False
                )
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


class EnginePool:
    """One engine per distinct engine spec, shared by every variant and seed of a run.

    Real LLMs go behind the persistent call cache when ``cache`` is on; the synthetic engine is
    exact and faster than any cache, so it never is.
    """

    UNCACHED = frozenset({"synthetic"})

    def __init__(self, catalog: Any, *, cache: bool) -> None:
        self.catalog = catalog
        self.cache = cache
        self._engines: dict[str, Engine] = {}

    def get(self, spec: Any) -> Engine:
        key = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
        if key not in self._engines:
            from market.engines import create_engine  # loads an LLM stack only when a run needs it

            cache = self.cache and spec.type not in self.UNCACHED
            self._engines[key] = create_engine(spec, catalog=self.catalog, cache=cache)
        return self._engines[key]


def build_models(
    scenario: Any, engines: EnginePool, seed: int
) -> dict[str, Callable[[], MarketModel]]:
    """Per variant, a builder of that replicate's model (the scenario's seed set to ``seed``)."""
    builders = {}
    for name, variant in expand_variants(scenario).items():
        replicate = variant.model_copy(update={"seed": int(seed)})

        def build(replicate: Any = replicate, name: str = name) -> MarketModel:
            return MarketModel(replicate, engines.get(replicate.engine), variant=name)

        builders[name] = build
    return builders


def check_buildable(scenario: Any, engines: EnginePool, seed: int) -> None:
    """Build every variant's model once (engines load here) so bad settings fail before running."""
    for name, build in build_models(scenario, engines, seed).items():
        try:
            build().close()
        except (ValueError, TypeError, KeyError) as err:
            raise RunError(f"variant {name!r} of scenario {scenario.name!r}: {err}") from err


def execute(
    folder: RunFolder,
    engines: EnginePool,
    *,
    on_round: Callable[[], None] = lambda: None,
    flush_seconds: float = FLUSH_SECONDS,
) -> None:
    """Run every (seed, variant) of the folder up to its rounds, flushing as rounds complete.

    Variants of one seed share the root seed (common random numbers). Rows are flushed when
    ``flush_seconds`` have passed since the last flush (0: after every round), at the end of
    each replicate, and when the run stops early: on Ctrl-C, which then raises `RunInterrupted`,
    and on an error, which is re-raised; either way the folder can be resumed.
    """
    started = time.perf_counter()
    model: MarketModel | None = None
    flushing = False
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal flushing, last_flush
        flushing = True
        folder.write(model.drain_rows(), model.variant, model.root_seed, model.round)
        flushing = False
        last_flush = time.monotonic()

    folder.commit(status="running")
    try:
        for seed in folder.seeds:
            for name, build in build_models(folder.scenario, engines, seed).items():
                done = folder.completed(name, seed)
                if done >= folder.rounds:
                    continue
                model = build()
                folder.meta["engines"][name] = _engine_json(model.engine.info)
                if done:
                    model.restore(folder.histories(name, seed))
                while model.round < folder.rounds:
                    model.step()
                    on_round()
                    if time.monotonic() - last_flush >= flush_seconds:
                        flush()
                flush()
                model.close()
                model = None
    except BaseException as error:  # keep every completed round, whatever stopped the run
        interrupted = isinstance(error, KeyboardInterrupt)
        try:
            if model is not None and not flushing:  # a flush cut short is dropped on resume
                flush()
        finally:
            if model is not None:
                model.close()
            status = "interrupted" if interrupted else "failed"
            folder.commit(status=status, wall_seconds=time.perf_counter() - started)
        if interrupted:
            raise RunInterrupted(folder.path, folder.completed_rounds) from None
        raise
    folder.commit(status="finished", wall_seconds=time.perf_counter() - started)


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """One table of a run folder as a frame sorted by (variant, seed, round)."""
    frame = pd.read_parquet(Path(run_dir) / table)
    return frame.sort_values(["variant", "seed", "round"], kind="stable").reset_index(drop=True)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """A table without its timing columns: what two runs with the same seed must agree on."""
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
