"""The study runner's one-job entry point (`market.runner.run_one`): what a sweep worker calls."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from market.cli import main
from market.engines.pool import EnginePool
from market.runner import TABLES, RunError, RunInterrupted, comparable, read_table, run_one
from market.studies.replication import resolve
from scenarios.loader import load_scenario

SYNTHETIC = ["engine.type=synthetic"]


def free_riding(rounds: int, seed: int = 0):
    return load_scenario("free_riding", [*SYNTHETIC, f"rounds={rounds}", f"seed={seed}"])


def rows(run_dir: Path, table: str, seed: int | None = None) -> pd.DataFrame:
    frame = comparable(read_table(run_dir, table))
    if seed is not None:
        frame = frame[frame["seed"] == seed]
    return frame.reset_index(drop=True)


def test_one_job_gives_the_rows_of_the_same_seed_inside_a_sweep(tmp_path):
    """A job's rows depend on its scenario and seed only, not on the seeds around it."""
    args = ["sweep", "free_riding", "--set", *SYNTHETIC, "--seeds", "3", "--seed", "2"]
    assert main([*args, "--rounds", "6", "--out", str(tmp_path / "sweep"), "--no-report"]) == 0
    folder = run_one(free_riding(6, seed=3), 3, tmp_path / "job")
    assert folder.meta["status"] == "finished" and folder.seeds == (3,)
    for table in TABLES:
        pd.testing.assert_frame_equal(rows(folder.path, table), rows(tmp_path / "sweep", table, 3))


def test_one_job_resumes_where_it_stopped_and_returns_at_once_when_finished(tmp_path):
    whole = run_one(free_riding(12), 0, tmp_path / "whole")
    seen = 0

    def stop_after_seven() -> None:
        nonlocal seen
        seen += 1
        if seen == 7:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        run_one(free_riding(12), 0, tmp_path / "job", on_round=stop_after_seven, flush_seconds=0)
    meta = json.loads((tmp_path / "job" / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["completed"]["offset"]["0"] == 7
    calls = []
    folder = run_one(free_riding(12), 0, tmp_path / "job", on_round=lambda: calls.append(1))
    assert len(calls) == 2 * 12 - 7  # only the missing rounds ran
    for table in TABLES:
        pd.testing.assert_frame_equal(rows(folder.path, table), rows(whole.path, table))
    calls.clear()
    run_one(free_riding(12), 0, tmp_path / "job", on_round=lambda: calls.append(1))
    assert calls == []  # finished: nothing runs again


def test_one_job_refuses_a_folder_that_holds_another_job(tmp_path):
    run_one(free_riding(3), 0, tmp_path / "job")
    with pytest.raises(RunError, match="another job"):
        run_one(free_riding(3), 1, tmp_path / "job")
    with pytest.raises(RunError, match="another job"):
        run_one(free_riding(4), 0, tmp_path / "job")


def _job_in_a_worker(out: str) -> int:
    folder = run_one(free_riding(4), 0, Path(out), engines=None)
    return folder.completed_rounds


def test_one_job_runs_in_a_worker_process_with_the_same_rows(tmp_path):
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_job_in_a_worker, str(tmp_path / "worker")).result() == 8
    here = run_one(free_riding(4), 0, tmp_path / "here", engines=EnginePool(None, cache=False))
    for table in TABLES:
        pd.testing.assert_frame_equal(rows(tmp_path / "worker", table), rows(here.path, table))


def test_the_replication_is_a_study_of_the_same_runner(tmp_path):
    """Same writer and folder layout; stopped and resumed, it writes the rows of an
    uninterrupted study."""
    study = resolve(n_queries=2, n_seeds=2, m_grid=(1, 4))
    options = study.options()
    whole = run_one(study.scenario, study.scenario.seed, tmp_path / "whole", study="replication",
                    options=options)  # fmt: skip
    meta = json.loads((whole.path / "meta.json").read_text())
    assert meta["study"]["kind"] == "replication" and meta["variants"] == ["context", "baseline"]
    assert meta["rounds"] == 4 and meta["status"] == "finished"
    seen = 0

    def stop_after_three() -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            raise KeyboardInterrupt

    out = tmp_path / "stopped"
    with pytest.raises(RunInterrupted):
        run_one(study.scenario, study.scenario.seed, out, study="replication", options=options,
                on_round=stop_after_three, flush_seconds=0)  # fmt: skip
    run_one(study.scenario, study.scenario.seed, out, study="replication", options=options)
    for table in ("instances", "advertisers", "candidates", "optima"):
        pd.testing.assert_frame_equal(read_table(out, table), read_table(whole.path, table))


def test_the_engine_pool_shares_an_engine_per_spec_and_world():
    one, other = free_riding(2).catalog(), load_scenario("policies").catalog()
    pool = EnginePool(one, cache=False, worlds=2)
    spec = {"type": "synthetic", "kwargs": {}}
    first = pool.get(spec)
    assert pool.get(spec) is first and pool.get(spec, catalog=one) is first
    assert pool.get(spec, catalog=other) is not first  # another world, another exact engine
    assert pool.get({"type": "synthetic", "kwargs": {"shoehorn": 0.5}}) is not first
    assert pool.get(spec) is not first  # only the 2 most recently used worlds are kept
