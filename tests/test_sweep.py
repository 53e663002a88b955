"""Grid sweeps on the synthetic engine: tidy outputs, identical rows for 1 and 2 workers, a job's
rows independent of the grid around it, metrics as the run report defines them, a failing job,
and bad input (one line, exit 2, nothing written). Resume after a kill: tests/test_sweep_resume.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from market import api
from market.cli import main
from market.runner import comparable, read_table
from market.sweep import METRICS, build_grid, make_backend, start_sweep
from market.sweep.metrics import job_metrics
from reports.data import load_run
from reports.tables import headline_table

SET = ["engine.type=synthetic", "rounds=12"]
GRID = ["mechanism.kwargs.tau=0.5,2", "advertisers.catalog.policy.kwargs.cost=0,0.3"]
TABLES = ("rounds", "advertisers", "auctions")


def sweep_into(out: Path, workers: int, grid=GRID, seeds: int = 2):
    return start_sweep(
        "free_riding",
        build_grid(grid),
        seeds=seeds,
        out=out,
        overrides=SET,
        backend=make_backend("process", workers),
    )


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    return sweep_into(tmp_path_factory.mktemp("sweeps") / "one", 1)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    return sweep_into(tmp_path_factory.mktemp("sweeps") / "two", 2)


def assert_same_run(left: Path, right: Path) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(
            comparable(read_table(left, table)), comparable(read_table(right, table))
        )


def test_a_sweep_folder_holds_cells_summary_and_a_run_folder_per_job(one_worker):
    out = one_worker.path
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["status"] == "finished" and manifest["finished_jobs"] == manifest["jobs"] == 8
    cells = pd.read_parquet(out / "cells.parquet")
    assert list(cells.columns) == ["cell", "label", *(g.split("=")[0] for g in GRID)]
    assert cells["mechanism.kwargs.tau"].tolist() == [0.5, 0.5, 2, 2]
    summary = pd.read_parquet(out / "summary.parquet")
    pd.testing.assert_frame_equal(summary, one_worker.summary)
    assert len(summary) == 4 * 2 * 2  # cells × seeds × variants
    assert set(METRICS) <= set(summary.columns)
    assert summary.groupby("cell")["seed"].apply(sorted).tolist() == [[0, 0, 1, 1]] * 4
    for job in summary["job"].unique():
        meta = json.loads((out / "runs" / job / "meta.json").read_text())
        assert meta["status"] == "finished" and len(meta["seeds"]) == 1
    assert one_worker.computed == 8 and one_worker.skipped == 0


def test_one_and_two_workers_give_identical_rows(one_worker, two_workers):
    pd.testing.assert_frame_equal(one_worker.summary, two_workers.summary)
    for job in one_worker.summary["job"].unique():
        assert_same_run(one_worker.path / "runs" / job, two_workers.path / "runs" / job)


def test_a_job_is_the_run_of_its_cell_and_seed_whatever_the_grid(one_worker, tmp_path):
    # cell 3 = (tau 2, cost 0.3), seed index 1 = seed 1: alone in a one-cell grid, and as a run
    alone = sweep_into(
        tmp_path / "alone",
        1,
        grid=["mechanism.kwargs.tau=2", "advertisers.catalog.policy.kwargs.cost=0.3"],
        seeds=2,
    )
    assert_same_run(alone.path / "runs" / "c0000-s001", one_worker.path / "runs" / "c0003-s001")
    single = api.run(
        "free_riding",
        overrides=[*SET, "mechanism.kwargs.tau=2", "advertisers.catalog.policy.kwargs.cost=0.3"],
        seed=1,
        out=tmp_path / "single",
    )
    assert_same_run(single.path, one_worker.path / "runs" / "c0003-s001")


def test_summary_metrics_are_the_run_reports_numbers(one_worker):
    job = one_worker.path / "runs" / "c0001-s000"
    headline = headline_table(load_run(job)).set_index(["variant", "metric"])["estimate"]
    same = {
        "entry_relevant_late": "participation_relevant_late",
        "entry_irrelevant_late": "participation_irrelevant_late",
        "revenue": "revenue",
        "welfare": "welfare",
        "expected_welfare": "expected_welfare",
        "usefulness": "usefulness",
    }
    adv = read_table(job, "advertisers")
    for row in job_metrics(job):
        variant = row["variant"]
        for ours, theirs in same.items():
            assert row[ours] == pytest.approx(headline[(variant, theirs)], rel=1e-12), ours
        mine = adv[(adv["variant"] == variant) & adv["entered"]]
        gain = (mine["utility"] - mine["expected_reward_without"]).sum() / row["rounds"]
        assert row["total_gain"] == pytest.approx(gain, rel=1e-12)
        assert row["mention_rate"] == pytest.approx(mine["mentioned"].mean(), rel=1e-12)


def test_the_token_auction_has_no_gain_and_a_one_cell_grid_works(tmp_path, capsys):
    out = tmp_path / "token"
    args = ["sweep", "token_vs_mosaic", "--set", "engine.type=synthetic", "--rounds", "4"]
    code = main([*args, "--grid", "sampling.max_new_tokens=16", "--seeds", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    summary = pd.read_parquet(out / "summary.parquet").set_index("variant")
    assert np.isnan(summary.loc["token_auction", "total_gain"])
    assert np.isfinite(summary.loc["mosaic", "total_gain"])


def test_cli_sweep_writes_the_report_and_report_rebuilds_it(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["sweep", "free_riding", "--set", "engine.type=synthetic", "--rounds", "6"]
    grid = ["--grid", "mechanism.kwargs.tau=0.5,1,2"]
    assert main([*args, *grid, "--seeds", "2", "--workers", "1", "--out", str(out)]) == 0
    assert "sweep folder" in capsys.readouterr().out
    html = (out / "sweep.html").read_text()
    assert "figures/sweep_lines.png" in html and "mechanism.kwargs.tau" in html
    (out / "sweep.html").unlink()
    (out / "figures" / "sweep_lines.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "sweep.html").is_file() and (out / "figures" / "sweep_lines.png").is_file()
    assert load_run(out / "runs" / "c0000-s000").seeds == [0]  # a job is a run folder


def test_two_keys_give_heatmaps_in_the_report(one_worker):
    from reports.sweep_report import build_sweep_report

    html = build_sweep_report(one_worker.path).read_text()
    assert "sweep_heatmap_entry_irrelevant_late.png" in html
    assert (one_worker.path / "figures" / "sweep_heatmap_total_gain.png").is_file()


def test_a_job_that_raises_stops_the_sweep_and_names_its_cell(tmp_path, monkeypatch, capsys):
    from market.sweep import worker

    real = worker.run_job

    def failing(scenario, seed, folder, engines, **kwargs):
        if Path(folder).name == "c0001-s000":
            raise RuntimeError("the engine fell over")
        return real(scenario, seed, folder, engines, **kwargs)

    monkeypatch.setattr(worker, "run_job", failing)
    out = tmp_path / "failing"
    args = ["sweep", "free_riding", "--set", "engine.type=synthetic", "--rounds", "4"]
    grid = ["--grid", "mechanism.kwargs.tau=0.5,1,2", "--seeds", "1", "--workers", "1"]
    code = main([*args, *grid, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("admarket: error:")]
    assert "c0001-s000" in line and "mechanism.kwargs.tau=1" in line and "seed 0" in line
    assert "the engine fell over" in line and f"--resume {out}" in line
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["status"] == "failed" and manifest["failed"]["job"] == "c0001-s000"
    assert pd.read_parquet(out / "summary.parquet")["job"].unique().tolist() == ["c0000-s000"]

    monkeypatch.setattr(worker, "run_job", real)
    assert main(["sweep", "--resume", str(out), "--workers", "1"]) == 0
    assert "2 jobs run, 1 already finished" in capsys.readouterr().out
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary["job"].unique().tolist() == ["c0000-s000", "c0001-s000", "c0002-s000"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SWEEP = ["sweep", "free_riding", "--set", "engine.type=synthetic", "--seeds", "2"]
TAU = ["--grid", "mechanism.kwargs.tau=0.5,1"]
BAD_SWEEPS = {
    "unknown grid key": ([*SWEEP, "--grid", "mechanism.kwargs.tua=1,2"], "mechanism.kwargs.tua"),
    "value the schema rejects": ([*SWEEP, "--grid", "mechanism.kwargs.tau=1,-1"], "tau=-1"),
    "empty values": ([*SWEEP, "--grid", "mechanism.kwargs.tau="], "no values"),
    "workers 0": ([*SWEEP, *TAU, "--workers", "0"], "--workers"),
    "address without ray": ([*SWEEP, *TAU, "--address", "localhost:1"], "--backend ray"),
    "workers without a grid": ([*SWEEP, "--workers", "2"], "--grid"),
    "grid key seed": ([*SWEEP, "--grid", "seed=1,2"], "--seeds"),
    "unreachable address": (
        [*SWEEP, *TAU, "--backend", "ray", "--address", f"127.0.0.1:{_free_port()}"],
        "--address",
    ),
    "resume of nothing": (["sweep", "--resume", "nowhere"], "nowhere"),
}


@pytest.mark.parametrize(("args", "needle"), BAD_SWEEPS.values(), ids=BAD_SWEEPS.keys())
def test_bad_sweep_input_is_one_line_exit_2_nothing_written(
    args, needle, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    code = main([*args, "--out", str(tmp_path / "out")] if "--resume" not in args else args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("admarket: error: ") and needle in lines[0]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_grid_file_and_missing_ray_are_one_line(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "grid.yaml"
    empty.write_text("# nothing yet\n")
    assert main([*SWEEP, "--grid-file", str(empty), "--out", str(tmp_path / "out")]) == 2
    assert "grid.yaml: the grid file must be a non-empty mapping" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    assert main([*SWEEP, *TAU, "--backend", "ray", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("admarket: error:") == 1 and "pip install 'admarket[ray]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]


def test_several_bad_values_give_one_line_each(tmp_path, capsys):
    out = tmp_path / "out"
    code = main([*SWEEP, "--grid", "mechanism.kwargs.tau=0,1,-1", "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert "tau=0:" in lines[0] and "tau=-1:" in lines[1]
    assert not out.exists()


def test_an_existing_sweep_is_not_overwritten(one_worker, capsys):
    code = main([*SWEEP, *TAU, "--out", str(one_worker.path)])
    assert code == 2 and "already holds a sweep" in capsys.readouterr().err


def test_a_seed_sweep_without_a_grid_still_fills_one_run_folder(tmp_path, capsys):
    out = tmp_path / "seeds"
    args = [*SWEEP, "--rounds", "3", "--seed", "4", "--out", str(out), "--no-report"]
    assert main(args) == 0
    assert json.loads((out / "meta.json").read_text())["seeds"] == [4, 5]
    assert main(["sweep", "--resume", str(out), "--rounds", "4", "--no-report"]) == 0
    assert read_table(out, "rounds")["round"].max() == 3


def test_bench_sweep_compares_two_workers_with_one(capsys):
    code = main(["bench", "sweep", "--rounds", "3", "--seeds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 workers vs 1:" in out and "identical rows: yes" in out
