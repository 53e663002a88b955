"""A real sweep process killed mid-way (SIGKILL to it and its workers), then resumed: finished jobs
are skipped untouched, cut-short jobs continue from their flushed rounds, and every job's rows
equal an uninterrupted sweep's, with no round duplicated. Ctrl-C stops every worker after its
round; workers whose parent was killed alone flush and exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from market.runfolder import part_name
from market.runner import comparable, read_table
from market.sweep import build_grid, make_backend, resume_sweep, start_sweep

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 60
SET = ["engine.type=synthetic", f"rounds={ROUNDS}"]
GRID = ["mechanism.kwargs.tau=0.5,1"]
TABLES = ("rounds", "advertisers", "auctions")


def _metas(out: Path) -> dict[str, dict]:
    metas = {}
    for path in sorted((out / "runs").glob("*/meta.json")) if (out / "runs").is_dir() else []:
        try:
            metas[path.parent.name] = json.loads(path.read_text())
        except (ValueError, OSError):  # being replaced right now
            continue
    return metas


def _done(meta: dict) -> list[int]:
    return [n for per_seed in meta["completed"].values() for n in per_seed.values()]


def as_from_a_terminal() -> None:
    """In the child, before exec: Ctrl-C as a terminal delivers it (default disposition, not
    blocked), whatever the test process inherited or set — in the full suite children of pytest
    started with SIGINT ignored, and the CLI never saw the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(out: Path) -> subprocess.Popen:
    """The sweep in a process of its own session (its workers join its process group)."""
    command = [
        sys.executable, "-m", "market.cli", "sweep", "free_riding",
        *(arg for s in SET for arg in ("--set", s)), *(arg for g in GRID for arg in ("--grid", g)),
        "--seeds", "2", "--workers", "2", "--flush-seconds", "0.05", "--no-report",
        "--out", str(out),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_mid_way(out: Path) -> None:
    """SIGKILL the sweep and its workers once one job has finished and another has flushed some
    but not all of its rounds."""
    process = _start(out)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            metas = _metas(out)
            finished = [j for j, m in metas.items() if min(_done(m)) >= ROUNDS]
            partial = [j for j, m in metas.items() if 0 < sum(_done(m)) and min(_done(m)) < ROUNDS]
            if finished and partial:
                return
            assert process.poll() is None, "the sweep ended before it could be killed mid-way"
            time.sleep(0.05)
        raise AssertionError("no job finished within 300 s")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_killed_sweep_resumes_without_computing_anything_twice(tmp_path):
    out = tmp_path / "killed"
    _kill_mid_way(out)
    before = _metas(out)
    finished = {j for j, m in before.items() if min(_done(m)) >= ROUNDS}
    closed = {j for j in finished if before[j]["status"] == "finished"}  # compacted too
    frozen = {j: (out / "runs" / j / "meta.json").read_bytes() for j in closed}
    committed = {  # every part meta.json lists, with its measured timing columns
        (j, table): pd.concat(
            [pd.read_parquet(out / "runs" / j / table / part_name(p["index"])) for p in log],
            ignore_index=True,
        )
        for j, meta in before.items()
        if (log := meta.get("part_log"))
        for table in TABLES
    }
    assert finished and len(finished) < 4

    result = resume_sweep(out, backend=make_backend("process", 2))
    assert result.skipped == len(finished) and result.computed == 4 - len(finished)
    for job in closed:  # skipped: not even its meta.json was rewritten
        assert (out / "runs" / job / "meta.json").read_bytes() == frozen[job]
    for (job, table), rows in committed.items():  # resumed after, never redone: a round
        final = read_table(out / "runs" / job, table)  # computed again would time differently
        keys = [c for c in ("variant", "seed", "round", "advertiser", "candidate") if c in rows]
        kept = rows[keys].merge(final, on=keys, how="left")
        pd.testing.assert_frame_equal(kept[list(rows.columns)], rows, check_dtype=False)

    reference = start_sweep(
        "free_riding", build_grid(GRID), seeds=2, out=tmp_path / "reference", overrides=SET
    )
    pd.testing.assert_frame_equal(result.summary, reference.summary)
    for job in result.summary["job"].unique():
        for table in TABLES:
            resumed = read_table(out / "runs" / job, table)
            keys = [
                c for c in ("variant", "seed", "round", "advertiser", "candidate") if c in resumed
            ]
            assert not resumed.duplicated(keys).any(), (job, table)
            pd.testing.assert_frame_equal(
                comparable(resumed), comparable(read_table(reference.path / "runs" / job, table))
            )
    assert json.loads((out / "sweep.json").read_text())["status"] == "finished"


def _start_and_wait_for_a_flushed_round(out):
    """The sweep CLI started in its own process group, once some job has flushed a round."""
    process = _start(out)
    deadline = time.monotonic() + 300
    while not any(sum(_done(m)) for m in _metas(out).values()):
        assert process.poll() is None and time.monotonic() < deadline, "no round was flushed"
        time.sleep(0.05)
    return process


def test_ctrl_c_stops_every_worker_after_its_round_and_the_sweep_resumes(tmp_path):
    out = tmp_path / "stopped"
    process = _start_and_wait_for_a_flushed_round(out)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    (line,) = [line for line in err.splitlines() if line.startswith("admarket:")]
    assert f"Resume with: admarket sweep --resume {out}" in line
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"
    statuses = {m["status"] for m in _metas(out).values()}
    assert statuses <= {"interrupted", "finished"} and "interrupted" in statuses
    result = resume_sweep(out, backend=make_backend("process", 2))
    assert len(result.summary) == 4 * 2
    for job in result.summary["job"].unique():
        rounds = read_table(out / "runs" / job, "rounds")
        assert sorted(rounds.groupby("variant")["round"].count()) == [ROUNDS, ROUNDS]


def test_workers_of_a_killed_parent_flush_and_exit(tmp_path):
    out = tmp_path / "orphans"
    process = _start_and_wait_for_a_flushed_round(out)
    os.kill(process.pid, signal.SIGKILL)  # the parent alone: its workers are left behind
    process.wait()
    deadline = time.monotonic() + 60
    while True:  # every process of the sweep's group ends on its own
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "worker processes outlived their parent"
        time.sleep(0.1)
    statuses = {m["status"] for m in _metas(out).values()}
    assert statuses <= {"interrupted", "finished"} and "interrupted" in statuses
