"""A run folder on disk (docs/data.md): the resolved scenario, ``meta.json`` and the study's tables.

Every study (a market run, a seed sweep, the paper's replication) writes the same layout:
``scenario.yaml`` (the scenario as run), ``meta.json`` (the study, its variants, seeds and rounds,
the rounds each replicate has completed, status, engines, and a checksum of every data file) and
its tables. While a run goes on, each flush adds one parquet *part* per table
(``rounds/part-00007.parquet``); when it finishes, the parts are compacted into one file per table
(``rounds.parquet``); a run extended later keeps that file and adds parts beside it.

One owner: a process holds an OS lock on ``.lock`` in the folder for the whole run or resume; a
second one gets a `RunError` naming the holder's pid.

Writes are crash-safe in order: each flush writes its parts (synced to disk, then renamed into
place), then rewrites ``meta.json`` — the commit point — with their checksums, row counts and
rounds, and the rounds each replicate has completed. ``completed`` is only ever raised, and only
after the parts holding those rounds are durable. Reopening a folder checks it against
``meta.json`` before writing anything (`market.integrity`): a part cut short by a crash is
dropped; anything else that disagrees is an error naming the repair (``--repair``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market.columns import TableSpec
from market.lock import FolderLock
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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_name(index: int) -> str:
    return f"part-{int(index):05d}.parquet"


def part_index(name: str) -> int | None:
    stem = name.removesuffix(".parquet")
    if name.endswith(".parquet") and stem.startswith("part-") and stem[5:].isdigit():
        return int(stem[5:])
    return None


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file: synced, renamed, and the
    folder's entry synced, so a crash leaves either the old file or the whole new one."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def parquet_bytes(frame: pd.DataFrame | pa.Table, spec: TableSpec) -> tuple[bytes, int]:
    """A frame (or an Arrow table) as parquet bytes in the spec's schema, and its row count."""
    if isinstance(frame, pa.Table):
        table = frame.select(list(spec.names)).cast(spec.schema)
    else:  # one thread: a part is small, and threads only wait on each other here
        table = pa.Table.from_pandas(frame, schema=spec.schema, preserve_index=False, nthreads=1)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes(), table.num_rows


@dataclass
class RunFolder:
    """One run folder and its ``meta.json`` (kept in memory, rewritten on commit).

    ``tables`` are the specs of the study's tables (their parquet schemas); ``scenario`` is the
    scenario as written in the folder. Opened for writing (`create`, `open`), it holds the
    folder's lock until `release`.
    """

    path: Path
    meta: dict[str, Any]
    scenario: Any
    tables: Mapping[str, TableSpec]
    lock: FolderLock | None = field(default=None, repr=False)
    repairs: list[str] = field(default_factory=list)  # what `open(repair=True)` dropped

    # --- what the folder holds -----------------------------------------------------------------

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

    def table_files(self, table: str) -> list[Path]:
        """The files holding a table, in row order: the compacted file (if any), then the parts
        ``meta.json`` lists."""
        files = []
        if table in self.meta.get("compacted", {}).get("sha256", {}):
            files.append(self.path / f"{table}.parquet")
        files += [self.path / table / part_name(p["index"]) for p in self.meta.get("part_log", [])]
        return files

    # --- opening ---------------------------------------------------------------------------------

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
        """Start a new run folder and lock it: write the resolved scenario and ``meta.json``.

        ``facts`` are study-specific numbers readers need (the replication's τ and M grid).
        """
        path = Path(path)
        check_writable_target(path)
        made = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = FolderLock.acquire(path)
        except OSError as err:
            raise RunError(f"--out {path}: cannot create a run folder there ({_why(err)})") from err
        except RunError:
            raise
        try:
            if (path / META_FILE).exists():
                raise RunError(
                    f"{path} already holds a run; continue it with `admarket run --resume "
                    f"{path}` or pick another --out"
                )
            scenario_text = dump_scenario(scenario)
            write_durably(path / SCENARIO_FILE, scenario_text.encode("utf-8"))
            meta = {
                "admarket_version": _version(),
                "study": {"kind": study, "options": dict(options), "facts": dict(facts or {})},
                "scenario": scenario.name,
                "scenario_sha256": sha256(scenario_text.encode("utf-8")),
                "variants": list(variants),
                "seeds": [int(s) for s in seeds],
                "rounds": int(rounds),
                "tables": list(tables),
                "completed": {v: {str(s): 0 for s in seeds} for v in variants},
                "parts": 0,
                "part_log": [],
                "status": "created",
                "engines": {},
                "engine_seconds": 0.0,
                "created": _now(),
                "updated": _now(),
                "wall_seconds": 0.0,
            }
            # Run from the scenario as written, so that a resumed run starts from the same one.
            folder = cls(path, meta, load_scenario(path / SCENARIO_FILE), dict(tables), lock)
            folder.commit()
        except BaseException as err:
            lock.release()
            if made:
                _remove_new_folder(path)
            if isinstance(err, OSError):
                raise RunError(f"--out {path}: cannot write the run folder ({_why(err)})") from err
            raise
        return folder

    @classmethod
    def open(
        cls,
        path: Path,
        tables: Mapping[str, Mapping[str, TableSpec]],
        rounds: int | None = None,
        *,
        repair: bool = False,
    ) -> RunFolder:
        """Reopen and lock a run folder to continue it (``rounds`` may extend a market run),
        after checking it against ``meta.json`` (`market.integrity`); ``repair`` drops what
        does not check out instead of refusing. ``tables`` maps each study kind to its specs."""
        from market.integrity import read_meta, reconcile

        path = Path(path)
        meta = read_meta(path)
        try:
            lock = FolderLock.acquire(path)
        except OSError as err:
            raise RunError(
                f"{path}: cannot resume there ({_why(err)}); a resume writes into its run "
                "folder — copy the folder somewhere writable and resume the copy"
            ) from err
        try:
            meta = read_meta(path)  # again, now that no other process can change it
            kind = str(meta.get("study", {}).get("kind", "market"))
            folder = cls(
                path, meta, _load_checked_scenario(path, meta), dict(tables.get(kind, {})), lock
            )
            if rounds is not None:
                if rounds < folder.rounds:
                    raise RunError(
                        f"--rounds {rounds} is fewer than the {folder.rounds} rounds of the run "
                        f"in {path}; leave --rounds out or give a larger number"
                    )
                folder.meta["rounds"] = int(rounds)
            reconcile(folder, repair=repair)
        except BaseException as err:
            lock.release()
            if isinstance(err, OSError):
                raise RunError(f"{path}: cannot resume there ({_why(err)})") from err
            raise
        return folder

    def release(self) -> None:
        """Let another process open the folder."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # --- reading back ----------------------------------------------------------------------------

    def read_rows(self, table: str, variant: str, seed: int, before: int) -> pd.DataFrame:
        """One replicate's rows of ``table`` for rounds 0..``before``−1, in written order."""
        files = self.table_files(table)
        if before == 0 or not files:
            return pd.DataFrame(columns=list(self.tables[table].names))
        filters = [("variant", "==", variant), ("seed", "==", int(seed))]
        frame = pd.concat([pd.read_parquet(f, filters=filters) for f in files], ignore_index=True)
        return frame[frame["round"] < before]

    # --- writing ---------------------------------------------------------------------------------

    def write(
        self,
        frames: Mapping[str, pd.DataFrame | pa.Table],
        variant: str,
        seed: int,
        completed: int,
    ) -> None:
        """Write one replicate's new rows as one new part per table, durably, then commit
        ``meta.json`` with their checksums and the rounds the replicate has completed."""
        start = self.completed(variant, seed)
        if completed < start:
            raise RuntimeError(
                f"completed rounds of ({variant}, {seed}) would fall from {start} to {completed}; "
                "a run folder's completed rounds only rise"
            )
        if completed == start:
            return
        index = int(self.meta["parts"])
        entry: dict[str, Any] = {
            "index": index,
            "variant": variant,
            "seed": int(seed),
            "start": start,
            "end": int(completed),
            "rows": {},
            "sha256": {},
        }
        written: list[Path] = []
        try:
            for table, spec in self.tables.items():
                frame = frames.get(table, pd.DataFrame(columns=list(spec.names)))
                data, rows = parquet_bytes(frame, spec)
                folder = self.path / table
                folder.mkdir(exist_ok=True)
                written.append(folder / part_name(index))
                write_durably(written[-1], data)
                entry["rows"][table], entry["sha256"][table] = rows, sha256(data)
        except BaseException:
            for path in written:  # not committed: leave no part meta.json does not list
                path.unlink(missing_ok=True)
            raise
        completed_now = {v: dict(per_seed) for v, per_seed in self.meta["completed"].items()}
        completed_now[variant][str(seed)] = int(completed)
        # one assignment, so that a signal cannot leave meta.json half updated
        self.meta = {
            **self.meta,
            "parts": index + 1,
            "part_log": [*self.meta.get("part_log", []), entry],
            "completed": completed_now,
        }
        self.commit()

    def commit(self, status: str | None = None, wall_seconds: float = 0.0) -> None:
        """Rewrite ``meta.json`` (durably); with ``status``, record it."""
        if status is not None:
            self.meta["status"] = status
        self.meta["wall_seconds"] = round(float(self.meta["wall_seconds"]) + wall_seconds, 3)
        self.meta["updated"] = _now()
        write_durably(self.path / META_FILE, self.meta_bytes())

    def meta_bytes(self) -> bytes:
        """``meta.json``: indented, with one compact line per part of the part log."""
        meta = dict(self.meta)
        log = meta.pop("part_log", None)
        text = json.dumps(meta, indent=2)
        if log is not None:
            entries = ",\n".join("    " + json.dumps(e, separators=(",", ":")) for e in log)
            listed = "[\n" + entries + "\n  ]" if log else "[]"
            text = text.removesuffix("\n}") + ',\n  "part_log": ' + listed + "\n}"
        return (text + "\n").encode("utf-8")

    def record_status(self, status: str, wall_seconds: float = 0.0) -> None:
        """Record ``status`` even on a full disk: when the new ``meta.json`` cannot be written
        beside the old one, overwrite the old one in place (the same size or less, since only
        the status and timings change)."""
        try:
            self.commit(status=status, wall_seconds=wall_seconds)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            data = self.meta_bytes()
            with open(self.path / META_FILE, "r+b") as handle:
                handle.write(data)
                handle.truncate(len(data))
                handle.flush()
                os.fsync(handle.fileno())

    def compact(self) -> None:
        """One parquet file per table: the compacted file and every part, in order
        (`market.integrity.compact`)."""
        from market.integrity import compact

        compact(self)


def _why(err: OSError) -> str:
    return err.strerror or str(err)


def _remove_new_folder(path: Path) -> None:
    """Remove a folder this process just created, when it holds nothing of a run."""
    for name in (".lock", SCENARIO_FILE, f".{SCENARIO_FILE}.tmp", f".{META_FILE}.tmp"):
        (path / name).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        pass


def check_writable_target(path: Path) -> None:
    """Fail fast, before anything runs, when ``--out`` cannot become a run folder."""
    if path.exists() and not path.is_dir():
        raise RunError(f"--out {path} is a file, not a folder; give a folder path")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunError(f"--out {path}: {ancestor} is a file, not a folder; give a folder path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunError(f"--out {path}: {ancestor} is not writable; pick a folder you can write to")


def check_scenario(path: Path, meta: Mapping[str, Any]) -> None:
    """The folder's scenario.yaml is the one its run started with (checksum in meta.json)."""
    scenario_path = Path(path) / SCENARIO_FILE
    recorded = meta.get("scenario_sha256")
    if recorded is not None and sha256(scenario_path.read_bytes()) != recorded:
        raise RunError(
            f"{scenario_path}: not the scenario this run started with (its checksum differs "
            "from meta.json's) — restore the run's own scenario.yaml"
        )


def _load_checked_scenario(path: Path, meta: Mapping[str, Any]) -> Any:
    """The folder's scenario, checked to be the one its run started with."""
    scenario_path = path / SCENARIO_FILE
    check_scenario(path, meta)
    scenario = load_scenario(scenario_path)
    if scenario.name != meta.get("scenario", scenario.name):
        raise RunError(
            f"{scenario_path}: scenario {scenario.name!r}, but this run is of "
            f"{meta['scenario']!r} (meta.json) — restore the run's own scenario.yaml"
        )
    return scenario


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """One table of a run folder — its compacted file, then its parts — in written order; a
    market table is sorted by (variant, seed, round), rows of one round in written order."""
    from market.integrity import committed_files

    run_dir = Path(run_dir)
    files = committed_files(run_dir, table)
    if files is None:
        files = table_files_on_disk(run_dir, table)
    if not files:
        raise FileNotFoundError(f"{run_dir} has no {table} table ({table}.parquet or {table}/)")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    keys = ["variant", "seed", "round"]
    if set(keys) <= set(frame.columns):
        frame = frame.sort_values(keys, kind="stable")
    return frame.reset_index(drop=True)


def table_files_on_disk(run_dir: Path, table: str) -> list[Path]:
    """A table's files as a reader finds them: ``TABLE.parquet``, then ``TABLE/part-*.parquet``
    in part order (hidden files aside)."""
    run_dir = Path(run_dir)
    files = [run_dir / f"{table}.parquet"] if (run_dir / f"{table}.parquet").is_file() else []
    parts = run_dir / table
    if parts.is_dir():
        numbered = [(part_index(p.name), p) for p in parts.iterdir()]
        files += [p for index, p in sorted((i, p) for i, p in numbered if i is not None)]
    return files


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """A table without its timing columns: what two runs with the same seed must agree on."""
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
