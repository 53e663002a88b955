"""Same scenario and seed, same rows: fresh runs against rows recorded before the architecture
moved (issue 12, "a test compares against files recorded before the move").

The fixtures under ``tests/fixtures/frozen/`` were written by this module's ``record()`` from the
code as it stood before the table spec, the study runner and the replication move (commit
f63419b): a few small synthetic runs (two seeds each) and a tiny synthetic replication, timing
columns dropped. A change that alters any row fails here. A change that is *meant* to alter rows
re-records them, says why in its commit, and nothing else:

    PYTHONPATH=$PWD python tests/test_frozen_rows.py --record
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "frozen"
SYNTHETIC = ["--set", "engine.type=synthetic"]
TIMING = ("engine_seconds", "round_seconds")

# name -> admarket command line (the output folder is appended)
RUNS = {
    "free_riding": ["sweep", "free_riding", *SYNTHETIC, "--seeds", "2", "--rounds", "8"],
    "token_vs_mosaic": ["sweep", "token_vs_mosaic", *SYNTHETIC, "--seeds", "2", "--rounds", "4"],
    "policies": ["sweep", "policies", *SYNTHETIC, "--seeds", "2", "--rounds", "10"],
}
RUN_TABLES = {
    "rounds": ["variant", "seed", "round"],
    "advertisers": ["variant", "seed", "round"],
    "auctions": ["variant", "seed", "round"],
}
REPLICATION = ["--queries", "2", "--seeds", "2", "--m", "1", "4"]
REPLICATION_TABLES = {
    "instances": ["instance", "seed", "generator", "M"],
    "advertisers": ["instance", "seed", "generator", "M"],
    "candidates": ["instance", "seed", "generator", "M"],
    "optima": ["instance"],
    "convergence": ["instance", "generator", "sampler", "M"],
}


def _read(folder: Path, table: str) -> pd.DataFrame:
    """A table of a run folder, from its part folder or its single file."""
    parts = folder / table
    return pd.read_parquet(parts if parts.is_dir() else folder / f"{table}.parquet")


def _tidy(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Timing columns dropped, rows in key order (stable: rows of one key keep their order)."""
    frame = frame.drop(columns=[c for c in TIMING if c in frame.columns])
    for key in keys:
        if isinstance(frame[key].dtype, pd.CategoricalDtype):
            frame[key] = frame[key].astype(str)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _run(name: str, out: Path) -> None:
    from market.cli import main

    assert main([*RUNS[name], "--out", str(out), "--no-report"]) == 0


def _replicate(out: Path) -> None:
    from market.replicate import main

    assert main([*REPLICATION, "--out", str(out)]) == 0


def _assert_same(fresh: pd.DataFrame, frozen: pd.DataFrame, what: str) -> None:
    assert list(fresh.columns) == list(frozen.columns), what
    assert len(fresh) == len(frozen), what
    pd.testing.assert_frame_equal(
        fresh, frozen, check_exact=False, rtol=1e-12, atol=1e-12, obj=what
    )


@pytest.mark.parametrize("name", RUNS)
def test_a_run_gives_the_frozen_rows(name, tmp_path):
    out = tmp_path / name
    _run(name, out)
    for table, keys in RUN_TABLES.items():
        frozen = pd.read_parquet(FIXTURES / name / f"{table}.parquet")
        _assert_same(_tidy(_read(out, table), keys), frozen, f"{name}/{table}")


def test_the_replication_gives_the_frozen_rows(tmp_path):
    out = tmp_path / "replication"
    _replicate(out)
    for table, keys in REPLICATION_TABLES.items():
        frozen = pd.read_parquet(FIXTURES / "replication" / f"{table}.parquet")
        _assert_same(_tidy(_read(out, table), keys), frozen, f"replication/{table}")


def record(root: Path) -> None:
    """Write every fixture from the current code (see the module docstring for when)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        for name in RUNS:
            out = Path(scratch) / name
            _run(name, out)
            (root / name).mkdir(parents=True, exist_ok=True)
            for table, keys in RUN_TABLES.items():
                _tidy(_read(out, table), keys).to_parquet(root / name / f"{table}.parquet")
        out = Path(scratch) / "replication"
        _replicate(out)
        (root / "replication").mkdir(parents=True, exist_ok=True)
        for table, keys in REPLICATION_TABLES.items():
            _tidy(_read(out, table), keys).to_parquet(root / "replication" / f"{table}.parquet")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python tests/test_frozen_rows.py --record")
    record(FIXTURES)
