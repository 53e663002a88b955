"""The `admarket` command line: run folders, sweeps, listing, delegation, and one-line errors."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market.cli import main
from market.model import MarketModel
from market.runner import SCHEMAS, read_table
from reports.data import TABLE_COLUMNS
from scenarios.loader import load_scenario

SYNTHETIC = ["--set", "engine.type=synthetic"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("admarket: error: ")
    assert "Traceback" not in err


def test_run_writes_every_file_of_a_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        ["run", "free_riding", *SYNTHETIC, "--rounds", "6", "--out", str(out), "--no-report"],
        capsys,
    )
    assert code == 0
    assert str(out) in stdout
    scenario = load_scenario(out / "scenario.yaml")
    assert scenario.rounds == 6 and scenario.engine.type == "synthetic"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "finished"
    assert meta["completed"] == {"offset": {"0": 6}, "no_offset": {"0": 6}}
    assert meta["engines"]["offset"]["engine"] == "synthetic"
    for table, columns in TABLE_COLUMNS.items():
        frame = read_table(out, table)
        assert set(columns) <= set(frame.columns), table
        assert set(frame["variant"]) == {"offset", "no_offset"}
        # a finished run keeps one compacted file per table (issue 11), in the spec's schema
        assert not (out / table).exists()
        assert pq.read_schema(out / f"{table}.parquet").equals(SCHEMAS[table], check_metadata=False)
    rounds = read_table(out, "rounds")
    assert len(rounds) == 12 and rounds["round"].max() == 5
    assert not (out / "report.html").exists()


def test_parquet_schema_types():
    assert SCHEMAS["rounds"].field("entrants").type == pa.list_(pa.string())
    assert SCHEMAS["advertisers"].field("entered").type == pa.bool_()
    assert SCHEMAS["auctions"].field("rewards").type == pa.list_(pa.float64())


def test_sweep_puts_every_seed_in_one_folder(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "free_riding", *SYNTHETIC, "--seeds", "3", "--seed", "4", "--rounds", "3"]
    code, _, _ = run_cli([*args, "--out", str(out), "--no-report"], capsys)
    assert code == 0
    rounds = read_table(out, "rounds")
    assert sorted(set(rounds["seed"])) == [4, 5, 6]
    assert len(rounds) == 3 * 2 * 3
    assert json.loads((out / "meta.json").read_text())["seeds"] == [4, 5, 6]
    # replicates differ: each seed has its own queries
    queries = rounds.groupby("seed")["query"].apply(tuple)
    assert len(set(queries)) > 1


def test_resume_extends_a_finished_run_with_more_rounds(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["run", "free_riding", *SYNTHETIC, "--rounds", "3", "--out", str(out), "--no-report"])
        == 0
    )
    assert main(["run", "--resume", str(out), "--rounds", "5", "--no-report"]) == 0
    capsys.readouterr()
    rounds = read_table(out, "rounds")
    assert sorted(rounds.groupby("variant")["round"].max()) == [4, 4]
    assert len(rounds) == 10


def test_scenarios_lists_the_builtins(capsys):
    code, stdout, _ = run_cli(["scenarios"], capsys)
    assert code == 0
    for name in ("demo", "free_riding"):
        assert name in stdout


def test_report_rebuilds_from_the_parquet_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["run", "free_riding", *SYNTHETIC, "--rounds", "12", "--out", str(out), "--no-report"])
        == 0
    )
    code, stdout, _ = run_cli(["report", str(out)], capsys)
    assert code == 0
    assert (out / "report.html").is_file()
    assert "report" in stdout


@pytest.fixture()
def finished_run(tmp_path):
    out = tmp_path / "done"
    assert (
        main(["run", "free_riding", *SYNTHETIC, "--rounds", "2", "--out", str(out), "--no-report"])
        == 0
    )
    return out


BAD_INPUTS = {
    "unknown scenario": ["run", "no_such_scenario"],
    "tau <= 0": ["run", "free_riding", *SYNTHETIC, "--set", "mechanism.kwargs.tau=0"],
    "unknown policy": ["run", "demo", *SYNTHETIC, "--set", "advertisers.0.policy.type=bogus"],
    "override without =": ["run", "free_riding", "--set", "rounds"],
    "unknown key": ["run", "free_riding", "--set", "mechanism.kwargs.tua=1"],
    "no scenario": ["run"],
    "unknown flag": ["run", "free_riding", "--bogus"],
    "sweep without --seeds": ["sweep", "free_riding"],
    "zero rounds": ["run", "free_riding", *SYNTHETIC, "--rounds", "0"],
    "zero seeds": ["sweep", "free_riding", *SYNTHETIC, "--seeds", "0"],
    "bad bench target": ["bench", "nothing"],
}


@pytest.mark.parametrize("args", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gives_one_line_and_exit_2(args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the checkout
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "runs").exists()


def test_missing_run_folders_give_one_line(tmp_path, capsys):
    for args in (["report", str(tmp_path / "nope")], ["run", "--resume", str(tmp_path / "nope")]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err)
        assert "nope" in err


def test_resume_refuses_new_settings_and_existing_runs_are_not_overwritten(finished_run, capsys):
    code, _, err = run_cli(["run", "free_riding", "--resume", str(finished_run)], capsys)
    assert_one_line_error(code, err)
    assert "--resume" in err
    code, _, err = run_cli(["run", "--resume", str(finished_run), "--rounds", "1"], capsys)
    assert_one_line_error(code, err)
    code, _, err = run_cli(["run", "free_riding", *SYNTHETIC, "--out", str(finished_run)], capsys)
    assert_one_line_error(code, err)
    assert "already holds a run" in err


def test_engine_that_will_not_load_gives_one_line(tmp_path, capsys):
    missing = tmp_path / "no-model-here"
    args = ["run", "demo", "--set", f"engine.kwargs.model={missing}", "--out", str(tmp_path / "r")]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err)


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "market.cli",
            "run",
            "free_riding",
            "--set",
            "mechanism.kwargs.tau=-1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert_one_line_error(result.returncode, result.stderr)
    assert "tau" in result.stderr


def test_replicate_and_bench_forward_their_arguments(monkeypatch, capsys):
    seen = {}

    def fake(name):
        module = types.ModuleType(name)
        module.main = lambda argv: seen.setdefault(name, list(argv)) and 0
        return module

    import benchmarks
    import market

    monkeypatch.setitem(sys.modules, "market.replicate", fake("market.replicate"))
    monkeypatch.setattr(market, "replicate", sys.modules["market.replicate"], raising=False)
    monkeypatch.setitem(sys.modules, "benchmarks.engine", fake("benchmarks.engine"))
    monkeypatch.setattr(benchmarks, "engine", sys.modules["benchmarks.engine"], raising=False)
    assert main(["replicate", "--engine", "synthetic", "--help"]) == 0
    assert main(["bench", "engine", "--quick"]) == 0
    assert seen == {
        "market.replicate": ["--engine", "synthetic", "--help"],
        "benchmarks.engine": ["--quick"],
    }


def test_bench_market_on_the_synthetic_engine(capsys):
    code, stdout, _ = run_cli(["bench", "market", "--rounds", "5", "--skip-llm"], capsys)
    assert code == 0
    assert "rounds/s" in stdout and "M=16" in stdout
    code, stdout, _ = run_cli(
        ["bench", "market", "--rounds", "5", "--skip-llm", "--profile"], capsys
    )
    assert code == 0
    assert "data collection" in stdout and "engine calls" in stdout


def _live_models() -> int:
    gc.collect()
    return sum(type(o) is MarketModel for o in gc.get_objects())


def test_a_sweep_frees_every_model_it_ran(tmp_path, capsys):
    """Issue 9 item 6: models are closed when their replicate is done (Mesa's Agent._ids)."""
    before = _live_models()
    args = ["sweep", "free_riding", *SYNTHETIC, "--seeds", "3", "--rounds", "2", "--no-report"]
    assert main([*args, "--out", str(tmp_path / "sweep")]) == 0
    assert _live_models() == before


def test_the_closing_summary_does_not_read_the_auctions_table(finished_run, capsys):
    """Issue 11 item 3: the summary printed after a run reads rounds and advertisers only."""
    import reports

    damaged = [*finished_run.glob("auctions/*.parquet"), *finished_run.glob("auctions.parquet")]
    assert damaged
    for path in damaged:
        path.write_bytes(b"not parquet")
    reports.print_summary(finished_run)
    assert "offset" in capsys.readouterr().out


def test_an_engine_kwarg_error_names_the_scenario_file_and_field(tmp_path, capsys):
    out = tmp_path / "never"
    args = ["run", "demo", "--set", "engine.type=synthetic", "--set", "engine.kwargs.foo=1"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("admarket: error: builtin/demo.yaml") and "engine.kwargs.foo:" in err
    assert "\n" not in err and not out.exists()
