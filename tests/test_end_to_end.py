"""Whole runs through the CLI: reports, determinism, resume after a kill or Ctrl-C, the offset's
effect on free-riding, and one short run on the embedded LLM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from market.cli import main
from market.runner import TABLES, comparable, read_table

SYNTHETIC = ["--set", "engine.type=synthetic"]


def run_ok(*args: str) -> None:
    assert main(list(args)) == 0


def assert_same_run(left: Path, right: Path) -> None:
    """Same rows in every table, timing columns aside."""
    for table in TABLES:
        pd.testing.assert_frame_equal(
            comparable(read_table(left, table)), comparable(read_table(right, table))
        )


def completed(run_dir: Path) -> int:
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(n for per_seed in meta["completed"].values() for n in per_seed.values())


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "market.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )


def as_from_a_terminal() -> None:
    """In the child, before exec: Ctrl-C as a terminal delivers it (default disposition, not
    blocked), whatever the test process inherited or set — in the full suite children of pytest
    started with SIGINT ignored, and the CLI never saw the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def wait_until(process: subprocess.Popen, condition) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.02)


def status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "meta.json").read_text())["status"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_synthetic_run_end_to_end_with_report(tmp_path, capsys):
    out = tmp_path / "run"
    run_ok("run", "free_riding", *SYNTHETIC, "--rounds", "20", "--out", str(out))
    stdout = capsys.readouterr().out
    assert (out / "report.html").is_file()
    assert any((out / "figures").glob("*.png"))
    assert "offset" in stdout and "no_offset" in stdout  # the summary names both variants
    rounds = read_table(out, "rounds")
    assert len(rounds) == 40
    assert (rounds["engine_seconds"] <= rounds["round_seconds"]).all()


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    args = ["run", "free_riding", *SYNTHETIC, "--rounds", "25", "--no-report"]
    run_ok(*args, "--out", str(tmp_path / "a"))
    run_ok(*args, "--out", str(tmp_path / "b"))
    run_ok(*args, "--seed", "1", "--out", str(tmp_path / "c"))
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "scenario.yaml").read_text() == (
        tmp_path / "b" / "scenario.yaml"
    ).read_text()
    with pytest.raises(AssertionError):
        assert_same_run(tmp_path / "a", tmp_path / "c")


ROUNDS = "1500"  # enough that a signal lands mid-run on a market of ~1,000 rounds/s


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    run_ok("run", "free_riding", *SYNTHETIC, "--rounds", ROUNDS, "--out", str(out), "--no-report")
    return out


def test_resume_after_a_kill_gives_the_uninterrupted_result(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    process = start_cli(
        "run", "free_riding", *SYNTHETIC, "--rounds", ROUNDS, "--out", str(out),
        "--no-report", "--flush-seconds", "0.05",
    )  # fmt: skip
    wait_until(process, lambda: completed(out) >= 10)
    process.kill()
    process.wait()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "running"
    assert 10 <= completed(out) < 2 * int(ROUNDS), "the kill must land mid-run"
    run_ok("run", "--resume", str(out), "--no-report")
    assert json.loads((out / "meta.json").read_text())["status"] == "finished"
    assert_same_run(out, uninterrupted)


def test_ctrl_c_flushes_says_how_to_resume_and_exits_130(tmp_path, uninterrupted):
    out = tmp_path / "stopped"
    process = start_cli(
        "run", "free_riding", *SYNTHETIC, "--rounds", ROUNDS, "--out", str(out),
        "--no-report", "--flush-seconds", "0.05",
    )  # fmt: skip
    wait_until(process, lambda: completed(out) >= 10)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"admarket run --resume {out}" in stderr
    assert "Traceback" not in stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert 10 <= completed(out) < 2 * int(ROUNDS)
    run_ok("run", "--resume", str(out), "--no-report")
    assert_same_run(out, uninterrupted)


def second_half_entry(run_dir: Path) -> pd.DataFrame:
    advertisers = read_table(run_dir, "advertisers")
    later = advertisers[advertisers["round"] >= advertisers["round"].max() // 2 + 1]
    return later.groupby(["variant", "relevant"])["entered"].mean().unstack()


def test_the_offset_deters_irrelevant_advertisers_from_entering(tmp_path):
    """Acceptance: `admarket run free_riding --set engine.type=synthetic` (Sec. 5.3, App. B.4)."""
    out = tmp_path / "free_riding"
    run_ok("run", "free_riding", *SYNTHETIC, "--out", str(out), "--no-report")
    entry = second_half_entry(out)
    irrelevant = entry[False]
    assert irrelevant["offset"] < irrelevant["no_offset"] - 0.15, entry
    # relevant advertisers keep entering with the offset
    assert entry.loc["offset", True] > irrelevant["offset"] + 0.15, entry


@pytest.mark.slow
def test_short_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "embedded"
    run_ok(
        "run", "demo", "--rounds", "2", "--out", str(out), "--no-report", "--no-cache",
        "--set", "mechanism.kwargs.candidates=2", "--set", "sampling.max_new_tokens=12",
    )  # fmt: skip
    rounds = read_table(out, "rounds")
    assert len(rounds) == 2 and (rounds["n_candidates"] == 2).all()
    assert (rounds["reply_tokens"] <= 12).all() and (rounds["reply_tokens"] > 0).all()
    assert rounds["usefulness"].notna().all()
    auctions = read_table(out, "auctions")
    assert (auctions["log_gen"] < 0).all() and (auctions["log_ref"] < 0).all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["engines"]["base"]["engine"] == "hf"


def test_resume_with_topic_targeting_gives_the_uninterrupted_result(tmp_path):
    """Histories come back from the advertisers table with their topics, so each topic's inner
    policy replays exactly; the ``policies`` tournament's topic_targeting variant exercises it."""
    args = ["run", "policies", *SYNTHETIC, "--no-report"]
    run_ok(*args, "--rounds", "60", "--out", str(tmp_path / "whole"))
    run_ok(*args, "--rounds", "25", "--out", str(tmp_path / "resumed"))
    run_ok("run", "--resume", str(tmp_path / "resumed"), "--rounds", "60", "--no-report")
    assert_same_run(tmp_path / "resumed", tmp_path / "whole")
    advertisers = read_table(tmp_path / "whole", "advertisers")
    assert set(advertisers["variant"]) == {"all_queries", "topic_targeting"}
    rounds = read_table(tmp_path / "whole", "rounds")
    topics = advertisers.merge(rounds[["variant", "round", "topic"]], on=["variant", "round"])
    assert (topics["topic_x"] == topics["topic_y"]).all()
