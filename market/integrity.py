"""A run folder checked against its ``meta.json`` before anything is written to it, and compacted.

``meta.json`` vouches for every data file by checksum and row count, and for every part by the
rounds of the replicate it holds (``part_log``); a compacted file (``TABLE.parquet``) stands for
every part up to ``compacted.through``. `reconcile` (on resume) accepts exactly what it vouches
for. The only files it removes on its own are the leftovers of an interrupted write: hidden
temporary files, the one part a crash cut off before its commit, parts already compacted.
Anything else that disagrees — a missing, truncated or changed file, parts ``meta.json`` does not
know (a stale ``meta.json``), rounds that do not join up — is a `RunError` naming the file and
the repair; with ``repair=True`` the damaged rounds and everything after them in the same
replicate are dropped (the one time completed rounds fall, by request) and are computed again on
resume, to the same rows.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from market.runfolder import (
    META_FILE,
    SCENARIO_FILE,
    RunError,
    part_index,
    part_name,
    sync_folder,
)

if TYPE_CHECKING:
    from market.runfolder import RunFolder

ROW_GROUP_ROWS = 8_192
_CHUNK = 1 << 20


def _repair_hint(path: Path, study: str = "market") -> str:
    command = "replicate" if study == "replication" else "run"
    return (
        f"restore it, or resume with `admarket {command} --resume {path} --repair` to drop the "
        "damaged rounds and compute them again (same seed, same rows)"
    )


def read_meta(path: Path) -> dict[str, Any]:
    """``meta.json`` of a run folder, checked to be one admarket wrote (RunError otherwise)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"run folder {path} does not exist; pass the --out DIR of an earlier run")
    for name in (SCENARIO_FILE, META_FILE):
        if not (path / name).is_file():
            raise RunError(f"{path} has no {name}: it is not a run folder written by admarket run")
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RunError(
            f"{meta_path}: not UTF-8 text (byte {err.start}) — the folder is damaged; restore "
            "meta.json from a copy or start a new run"
        ) from err
    except json.JSONDecodeError as err:
        raise RunError(
            f"{meta_path}: not valid JSON ({err.msg}) — the folder is damaged; restore meta.json "
            "from a copy or start a new run"
        ) from err
    except OSError as err:
        raise RunError(f"{meta_path}: cannot be read ({err.strerror or err})") from err
    problem = _meta_problem(meta)
    if problem:
        raise RunError(
            f"{meta_path}: {problem} — it is not a complete admarket meta.json; restore it from a "
            "copy or start a new run"
        )
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_problem(meta: Any) -> str | None:
    if not isinstance(meta, dict):
        return f"holds a {type(meta).__name__}, not an object"
    checks = {
        "seeds": lambda v: isinstance(v, list) and v and all(_is_int(s) for s in v),
        "variants": lambda v: isinstance(v, list) and v and all(isinstance(s, str) for s in v),
        "rounds": lambda v: _is_int(v) and v >= 0,
        "parts": lambda v: _is_int(v) and v >= 0,
        "status": lambda v: isinstance(v, str),
        "completed": lambda v: isinstance(v, dict),
        "wall_seconds": lambda v: isinstance(v, int | float),
    }
    for name, valid in checks.items():
        if name not in meta:
            return f"field {name!r} is missing"
        if not valid(meta[name]):
            return f"field {name!r} has an unexpected value {meta[name]!r}"[:200]
    for variant in meta["variants"]:
        per_seed = meta["completed"].get(variant)
        if not isinstance(per_seed, dict) or not all(_is_int(n) for n in per_seed.values()):
            return f"field 'completed' lacks the rounds of variant {variant!r}"
    return None


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def committed_files(run_dir: Path, table: str) -> list[Path] | None:
    """The files of ``table`` that ``meta.json`` vouches for, in row order; None when the folder
    has no usable ``meta.json`` with a file list (then readers list the disk)."""
    try:
        meta = json.loads((Path(run_dir) / META_FILE).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or "part_log" not in meta:
        return None
    files = []
    if table in meta.get("compacted", {}).get("sha256", {}):
        files.append(Path(run_dir) / f"{table}.parquet")
    files += [Path(run_dir) / table / part_name(p["index"]) for p in meta["part_log"]]
    return files


def check_files(run_dir: Path, tables: Mapping[str, Any] | list[str]) -> None:
    """Every file ``meta.json`` vouches for exists and has its checksum (RunError naming the first
    that does not); files of folders without checksums must at least be readable parquet."""
    meta = read_meta(run_dir)
    expected = _expected_checksums(meta, Path(run_dir))
    study = (
        meta.get("study", {}).get("kind", "market") if isinstance(meta.get("study"), dict) else ""
    )
    hint = _repair_hint(run_dir, study)
    for table in tables:
        files = committed_files(run_dir, table)
        for path in files if files is not None else []:
            if not path.is_file():
                raise RunError(f"{path}: missing, but meta.json lists it — {hint}")
            if expected.get(path) not in (None, file_sha256(path)):
                raise RunError(
                    f"{path}: changed or truncated since it was written (its checksum differs "
                    f"from meta.json's) — {hint}"
                )
            try:
                pq.read_metadata(path)
            except (pa.ArrowException, OSError) as err:
                raise RunError(
                    f"{path}: not a readable parquet file ({' '.join(str(err).split())[:120]}) — "
                    f"{hint}"
                ) from err


def _expected_checksums(meta: Mapping[str, Any], run_dir: Path) -> dict[Path, str]:
    expected = {
        run_dir / f"{table}.parquet": digest
        for table, digest in meta.get("compacted", {}).get("sha256", {}).items()
    }
    for entry in meta.get("part_log", []):
        for table, digest in entry["sha256"].items():
            expected[run_dir / table / part_name(entry["index"])] = digest
    return expected


def reconcile(folder: RunFolder, *, repair: bool = False) -> list[str]:
    """Make the folder exactly what ``meta.json`` vouches for, or refuse (see the module
    docstring). Returns what a repair dropped, one line each (also in ``folder.repairs``)."""
    meta = folder.meta
    if "part_log" not in meta:
        _adopt_legacy_parts(folder)
    if "compaction" in meta:
        finish_compaction(folder)
    problems: list[tuple[Path, str]] = []
    logged = {entry["index"] for entry in meta["part_log"]}
    through = int(meta.get("compacted", {}).get("through", -1))
    stray: list[Path] = []
    for table in folder.tables:
        directory = folder.path / table
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            index = part_index(path.name)
            if path.name.startswith("."):
                stray.append(path)  # a temporary file of an interrupted write
            elif index is None or index in logged:
                continue
            elif index == meta["parts"] or index <= through:
                stray.append(path)  # a flush cut off before its commit / a compacted part
            else:
                problems.append(
                    (path, "a part meta.json does not list (meta.json is older than the parts)")
                )
    compacted = meta.get("compacted", {}).get("sha256", {})
    for table in folder.tables:
        base = folder.path / f"{table}.parquet"
        if table in compacted and (not base.is_file() or file_sha256(base) != compacted[table]):
            problems.append((base, "missing or changed since it was written (checksum)"))
        elif table not in compacted and base.is_file():
            problems.append((base, "a table file meta.json does not list"))
    bad_entries = set()
    for entry in meta["part_log"]:
        for table, digest in entry["sha256"].items():
            path = folder.path / table / part_name(entry["index"])
            if not path.is_file() or file_sha256(path) != digest:
                problems.append((path, "missing, truncated or changed since it was written"))
                bad_entries.add(entry["index"])
    problems += _coverage(folder, bad_entries)
    if problems and not repair:  # change nothing, not even leftovers, before the user decides
        path, problem = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RunError(f"{path}: {problem}{more} — {_repair_hint(folder.path, folder.study)}")
    for path in stray:
        path.unlink(missing_ok=True)
    if not problems:
        folder.repairs = []
        return []
    folder.repairs = _repair(folder, problems, bad_entries)
    return folder.repairs


def _coverage(folder: RunFolder, bad: set[int]) -> list[tuple[Path, str]]:
    """Each replicate's parts must continue where the compacted file (or round 0) stops and join
    up to the rounds ``meta.json`` says it completed."""
    meta = folder.meta
    problems = []
    base_done = meta.get("compacted", {}).get("completed", {})
    for variant in folder.variants:
        for seed in folder.seeds:
            end = int(base_done.get(variant, {}).get(str(seed), 0))
            for entry in meta["part_log"]:
                if (entry["variant"], entry["seed"]) != (variant, seed):
                    continue
                if entry["index"] in bad or entry["start"] != end:
                    break
                end = entry["end"]
            if end != folder.completed(variant, seed):
                problems.append(
                    (
                        folder.path / META_FILE,
                        f"{variant}, seed {seed}: meta.json says {folder.completed(variant, seed)} "
                        f"rounds completed, the intact parts hold {end}",
                    )
                )
    return problems


def _repair(folder: RunFolder, problems: list, bad_entries: set[int]) -> list[str]:
    """Keep, per replicate, the rounds intact files hold from round 0 on; drop the rest."""
    meta = folder.meta
    notes = []
    base_problem = any(
        path.parent == folder.path and path.suffix == ".parquet" for path, _ in problems
    )
    if base_problem:
        for table in folder.tables:
            (folder.path / f"{table}.parquet").unlink(missing_ok=True)
        meta.pop("compacted", None)
        notes.append("dropped the compacted table files: every replicate starts from round 0")
    for path, _ in problems:
        if path.parent.name in folder.tables and part_index(path.name) is not None:
            index = part_index(path.name)
            if index not in {e["index"] for e in meta["part_log"]}:
                path.unlink(missing_ok=True)
    kept = []
    base_done = meta.get("compacted", {}).get("completed", {})
    ends = {
        (v, s): int(base_done.get(v, {}).get(str(s), 0))
        for v in folder.variants
        for s in folder.seeds
    }
    broken: set[tuple[str, int]] = set()
    for entry in meta["part_log"]:
        key = (entry["variant"], entry["seed"])
        if key in broken or entry["index"] in bad_entries or entry["start"] != ends[key]:
            broken.add(key)
            for table in folder.tables:
                (folder.path / table / part_name(entry["index"])).unlink(missing_ok=True)
            continue
        ends[key] = entry["end"]
        kept.append(entry)
    meta["part_log"] = kept
    for (variant, seed), end in ends.items():
        before = folder.completed(variant, seed)
        if end != before:
            notes.append(f"{variant}, seed {seed}: kept rounds 0..{end - 1} of {before}")
        meta["completed"][variant][str(seed)] = end
    folder.commit(status="repaired")
    return notes


def _adopt_legacy_parts(folder: RunFolder) -> None:
    """A folder written before checksums: its committed parts (index < ``parts``) enter the
    part log with the checksums they have now; the cut-off part is left for the sweep above."""
    meta = folder.meta
    log = []
    first = next(iter(folder.tables), None)
    for index in range(int(meta["parts"])):
        path = folder.path / first / part_name(index) if first else None
        if path is None or not path.is_file():
            continue
        keys = pq.read_table(path, columns=["variant", "seed", "round"]).to_pydict()
        if not keys["round"]:
            continue
        entry = {
            "index": index,
            "variant": keys["variant"][0],
            "seed": int(keys["seed"][0]),
            "start": min(keys["round"]),
            "end": max(keys["round"]) + 1,
            "rows": {},
            "sha256": {},
        }
        for table in folder.tables:
            part = folder.path / table / part_name(index)
            if part.is_file():
                entry["sha256"][table] = file_sha256(part)
                entry["rows"][table] = pq.read_metadata(part).num_rows
        log.append(entry)
    meta["part_log"] = log


def compact(folder: RunFolder) -> None:
    """Merge each table's compacted file and parts into one ``TABLE.parquet``, crash-safely:
    the new files are written under hidden names and synced, ``meta.json`` records them as a
    pending compaction (the point of no return), then they replace the old ones and the parts go
    (`finish_compaction`, which a resume also runs if a crash came in between)."""
    meta = folder.meta
    if not meta["part_log"]:
        return
    pending: dict[str, Any] = {
        "through": max(entry["index"] for entry in meta["part_log"]),
        "completed": copy.deepcopy(meta["completed"]),
        "sha256": {},
        "rows": {},
    }
    for table, spec in folder.tables.items():
        temporary = folder.path / f".{table}.parquet.compact"
        rows = _merge(folder.table_files(table), temporary, spec.schema)
        pending["sha256"][table] = file_sha256(temporary)
        pending["rows"][table] = rows
    meta["compaction"] = pending
    folder.commit()
    finish_compaction(folder)


def _merge(files: list[Path], target: Path, schema: pa.Schema) -> int:
    """Stream ``files`` into one parquet file, `ROW_GROUP_ROWS` rows at a time, so that the
    memory compaction needs does not grow with the run."""
    rows = 0
    try:
        with pq.ParquetWriter(target, schema) as writer:
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
                    writer.write_batch(batch.cast(schema), row_group_size=ROW_GROUP_ROWS)
                    rows += batch.num_rows
            if rows == 0:
                writer.write_table(schema.empty_table())
        with open(target, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        pa.default_memory_pool().release_unused()
    return rows


def finish_compaction(folder: RunFolder) -> None:
    """Put a pending compaction's files in place, forget the parts they replace, delete them."""
    meta = folder.meta
    pending = meta["compaction"]
    for table in folder.tables:
        target = folder.path / f"{table}.parquet"
        temporary = folder.path / f".{table}.parquet.compact"
        if temporary.is_file() and file_sha256(temporary) == pending["sha256"][table]:
            os.replace(temporary, target)
        if not target.is_file() or file_sha256(target) != pending["sha256"][table]:
            raise RunError(
                f"{target}: a compaction was cut off and its file is missing or changed — "
                f"{_repair_hint(folder.path, folder.study)}"
            )
    sync_folder(folder.path)
    through = pending["through"]
    meta["compacted"] = {key: pending[key] for key in ("through", "completed", "sha256", "rows")}
    meta["part_log"] = [entry for entry in meta["part_log"] if entry["index"] > through]
    del meta["compaction"]
    folder.commit()
    for table in folder.tables:
        directory = folder.path / table
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            index = part_index(path.name)
            if index is not None and index <= through:
                path.unlink()
        if not any(directory.iterdir()):
            directory.rmdir()


__all__ = [
    "check_files",
    "committed_files",
    "compact",
    "finish_compaction",
    "read_meta",
    "reconcile",
]
