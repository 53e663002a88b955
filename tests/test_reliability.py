"""Run folders under stress (issue 11): one owner, resume that validates before it writes, compaction,
SIGTERM, and one clean line for every broken input. Each test reproduces a failure the folder used
to suffer; the module docstrings of market/runfolder.py and market/integrity.py say the rules."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from market import runfolder
from market.cli import main
from market.model import MarketModel
from market.runner import TABLES, comparable, read_table

SYNTHETIC = ["--set", "engine.type=synthetic"]
ROUNDS = "40"


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("admarket: error: ") and "Traceback" not in err
    return lines[0]


def meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "meta.json").read_text())


def completed(run_dir: Path) -> int:
    try:
        done = meta(run_dir)["completed"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0
    return sum(n for per_seed in done.values() for n in per_seed.values())


def assert_same_run(left: Path, right: Path) -> None:
    for table in TABLES:
        mine, theirs = comparable(read_table(left, table)), comparable(read_table(right, table))
        assert not mine.duplicated(["variant", "seed", "round", *mine.columns[3:4]]).any()
        pd.testing.assert_frame_equal(mine, theirs)


def run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "free_riding", *SYNTHETIC, "--rounds", ROUNDS, "--out", str(out),
            "--no-report", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(run_args(out)) == 0
    return out


def stop_after(function, at: int, error: BaseException):
    """``function``, except that its ``at``-th call (from 1) raises ``error`` instead."""
    calls = 0

    def patched(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == at:
            raise error
        return function(*args, **kwargs)

    return patched


@pytest.fixture()
def stopped(tmp_path, monkeypatch, capsys) -> Path:
    """A run interrupted (Ctrl-C) after 9 rounds, one part per round."""
    out = tmp_path / "stopped"
    monkeypatch.setattr(MarketModel, "step", stop_after(MarketModel.step, 10, KeyboardInterrupt()))
    assert main(run_args(out, "--flush-seconds", "0")) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert completed(out) == 9 and meta(out)["status"] == "interrupted"
    return out


# --- item 1: a resume validates before it writes; completed only rises ---------------------------


def test_a_resume_cut_short_while_restoring_keeps_the_saved_rounds(
    stopped, uninterrupted, monkeypatch, capsys
):
    before = meta(stopped)["completed"]
    monkeypatch.setattr(
        MarketModel, "restore", stop_after(MarketModel.restore, 1, KeyboardInterrupt())
    )
    assert main(["run", "--resume", str(stopped), "--no-report"]) == 130
    capsys.readouterr()
    assert meta(stopped)["completed"] == before  # not lowered to 0
    monkeypatch.undo()
    assert main(["run", "--resume", str(stopped), "--no-report"]) == 0
    assert_same_run(stopped, uninterrupted)


def test_a_truncated_part_stops_the_resume_until_repaired(stopped, uninterrupted, capsys):
    part = stopped / "advertisers" / "part-00004.parquet"
    part.write_bytes(part.read_bytes()[:100])
    before = meta(stopped)
    code, _, err = run_cli(["run", "--resume", stopped, "--no-report"], capsys)
    line = assert_one_line_error(code, err)
    assert "part-00004.parquet" in line and "--repair" in line
    assert meta(stopped)["completed"] == before["completed"]  # nothing restarted, nothing dropped
    assert (stopped / "rounds" / "part-00008.parquet").is_file()
    code, _, err = run_cli(["run", "--resume", stopped, "--no-report", "--repair"], capsys)
    assert code == 0 and "repaired" in err
    assert_same_run(stopped, uninterrupted)


def test_a_stale_meta_json_does_not_delete_committed_parts(
    stopped, uninterrupted, monkeypatch, capsys
):
    old = (stopped / "meta.json").read_bytes()
    monkeypatch.setattr(MarketModel, "step", stop_after(MarketModel.step, 6, KeyboardInterrupt()))
    assert main(["run", "--resume", str(stopped), "--no-report", "--flush-seconds", "0"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    later = sorted((stopped / "rounds").glob("part-*.parquet"))
    (stopped / "meta.json").write_bytes(old)  # e.g. restored from a backup
    code, _, err = run_cli(["run", "--resume", stopped, "--no-report"], capsys)
    assert "does not list" in assert_one_line_error(code, err)
    assert sorted((stopped / "rounds").glob("part-*.parquet")) == later
    assert main(["run", "--resume", str(stopped), "--no-report", "--repair"]) == 0
    assert_same_run(stopped, uninterrupted)


# --- item 2: one owner per run folder -------------------------------------------------------------


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "market.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(process: subprocess.Popen, condition) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.02)


def test_a_folder_in_use_refuses_a_second_process(tmp_path, capsys):
    out = tmp_path / "busy"
    process = start_cli("run", "free_riding", *SYNTHETIC, "--rounds", "100000", "--out", str(out),
                        "--no-report", "--flush-seconds", "0.05")  # fmt: skip
    try:
        wait_until(process, lambda: completed(out) >= 3)
        for args in (["run", "--resume", out, "--no-report"], run_args(out)):
            code, _, err = run_cli(args, capsys)
            assert f"in use by process {process.pid}" in assert_one_line_error(code, err)
        assert process.poll() is None  # the owner runs on, undisturbed
    finally:
        process.kill()
        process.wait()


def test_the_lock_dies_with_its_process(tmp_path, capsys):
    out = tmp_path / "killed"
    process = start_cli(*run_args(out, "--flush-seconds", "0.05"))
    wait_until(process, lambda: completed(out) >= 3)
    process.kill()
    process.wait()
    assert meta(out)["status"] == "running"
    assert main(["run", "--resume", str(out), "--no-report"]) == 0


# --- item 8: SIGTERM like SIGINT -------------------------------------------------------------------


def test_sigterm_flushes_marks_the_run_interrupted_and_exits_143(tmp_path, uninterrupted):
    out = tmp_path / "terminated"
    process = start_cli(*run_args(out, "--flush-seconds", "0.05"))
    wait_until(process, lambda: completed(out) >= 5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert f"admarket run --resume {out}" in stderr and "Traceback" not in stderr
    assert meta(out)["status"] == "interrupted"
    assert 5 <= completed(out) < 2 * int(ROUNDS)
    assert main(["run", "--resume", str(out), "--no-report"]) == 0
    assert_same_run(out, uninterrupted)


# --- item 4 (the flush side): compaction ---------------------------------------------------------


def test_a_finished_run_leaves_one_file_per_table(tmp_path, uninterrupted):
    out = tmp_path / "compact"
    assert main(run_args(out, "--flush-seconds", "0")) == 0  # one part per round while running
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert files == ["advertisers.parquet", "auctions.parquet", "meta.json", "rounds.parquet",
                     "scenario.yaml"]  # fmt: skip
    assert_same_run(out, uninterrupted)


def test_extending_a_compacted_run_gives_the_longer_run(tmp_path):
    args = ["run", "free_riding", *SYNTHETIC, "--no-report", "--flush-seconds", "0"]
    assert main([*args, "--rounds", "30", "--out", str(tmp_path / "whole")]) == 0
    assert main([*args, "--rounds", "12", "--out", str(tmp_path / "short")]) == 0
    assert main(["run", "--resume", str(tmp_path / "short"), "--rounds", "30", "--no-report"]) == 0
    assert not (tmp_path / "short" / "rounds").exists()
    assert_same_run(tmp_path / "short", tmp_path / "whole")


def test_a_compaction_cut_short_is_finished_on_resume(tmp_path, uninterrupted, monkeypatch):
    out = tmp_path / "cut"
    import market.integrity as integrity

    def cut_short(folder) -> None:  # the first table's file is in place, then the process stops
        table = next(iter(folder.tables))
        os.replace(folder.path / f".{table}.parquet.compact", folder.path / f"{table}.parquet")
        raise KeyboardInterrupt

    monkeypatch.setattr(integrity, "finish_compaction", cut_short)
    assert main(run_args(out)) == 130
    monkeypatch.undo()
    assert "compaction" in meta(out)
    assert main(["run", "--resume", str(out), "--no-report"]) == 0
    assert meta(out)["status"] == "finished" and "compaction" not in meta(out)
    assert not (out / "rounds").exists()
    assert_same_run(out, uninterrupted)


# --- item 5 (run-folder side): one line each, exit 2, nothing computed lost -----------------------


@pytest.fixture()
def finished(tmp_path) -> Path:
    out = tmp_path / "finished"
    assert main(run_args(out)[:4] + ["--rounds", "4", "--out", str(out), "--no-report"]) == 0
    return out


def test_an_out_that_is_not_a_writable_folder_gives_one_line(tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    for out in (afile, afile / "below", Path("/proc/admarket-run")):
        code, _, err = run_cli(run_args(out), capsys)
        assert str(out) in assert_one_line_error(code, err)
    assert afile.read_text() == "not a folder"


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` read-only for this process: a read-only bind mount for root (who ignores modes),
    the write bits removed for anyone else."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {bind.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_folders_give_one_line(tmp_path, finished, capsys):
    empty = tmp_path / "ro"
    empty.mkdir()
    before = (finished / "meta.json").read_bytes()
    with read_only(empty):
        code, _, err = run_cli(run_args(empty / "run"), capsys)
        assert_one_line_error(code, err)
    with read_only(finished):
        for args in (["report", finished], ["run", "--resume", finished, "--rounds", "6"]):
            code, _, err = run_cli(args, capsys)
            assert str(finished) in assert_one_line_error(code, err)
    assert (finished / "meta.json").read_bytes() == before


def test_a_full_disk_mid_run_gives_one_line_and_keeps_the_saved_rounds(
    tmp_path, uninterrupted, monkeypatch, capsys
):
    out = tmp_path / "full"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "auctions"))
    monkeypatch.setattr(runfolder, "write_durably", stop_after(runfolder.write_durably, 20, full))
    code, _, err = run_cli(run_args(out, "--flush-seconds", "0"), capsys)
    assert "No space left" in assert_one_line_error(code, err)
    monkeypatch.undo()
    assert meta(out)["status"] == "failed" and completed(out) > 0
    assert main(["run", "--resume", str(out), "--no-report"]) == 0
    assert_same_run(out, uninterrupted)


def test_a_really_full_disk_leaves_the_status_failed(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        out = disk / "run"
        args = [
            "run",
            "free_riding",
            *SYNTHETIC,
            "--rounds",
            "60",
            "--out",
            out,
            "--no-report",
            "--flush-seconds",
            "0",
        ]  # fmt: skip  (400 KB hold about 9 rounds)
        code, _, err = run_cli(args, capsys)
        assert "No space left" in assert_one_line_error(code, err)
        assert meta(out)["status"] == "failed" and completed(out) > 0
        saved = completed(out)
        shutil.copytree(out, tmp_path / "copy", ignore=shutil.ignore_patterns(".*"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert main(["run", "--resume", str(tmp_path / "copy"), "--no-report"]) == 0
    assert completed(tmp_path / "copy") == 120 > saved


def damage(run_dir: Path, how: str) -> None:
    if how == "corrupt parquet":
        path = run_dir / "advertisers.parquet"
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
        path.write_bytes(bytes(data))
    elif how == "truncated parquet":
        path = run_dir / "rounds.parquet"
        path.write_bytes(path.read_bytes()[:200])
    elif how == "meta.json not UTF-8":
        (run_dir / "meta.json").write_bytes(b'{"status": "\xff\xfe"}')
    elif how == "meta.json is {}":
        (run_dir / "meta.json").write_text("{}")
    elif how == "another scenario's scenario.yaml":
        policies = run_dir.parent / "policies"
        assert main(["run", "policies", *SYNTHETIC, "--rounds", "2", "--out", str(policies),
                     "--no-report"]) == 0  # fmt: skip
        shutil.copy(policies / "scenario.yaml", run_dir / "scenario.yaml")
        shutil.rmtree(policies)


DAMAGE = ("corrupt parquet", "truncated parquet", "meta.json not UTF-8", "meta.json is {}",
          "another scenario's scenario.yaml")  # fmt: skip


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_folder_gives_one_line_for_report_and_resume(finished, how, capsys):
    damage(finished, how)
    capsys.readouterr()
    files = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    for args in (["report", finished], ["run", "--resume", finished, "--rounds", "6"]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err)
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == files


def test_bad_flush_seconds_and_seeds_give_one_line_and_write_nothing(tmp_path, capsys):
    for extra in (["--flush-seconds", "nan"], ["--flush-seconds", "inf"], ["--seed", str(2**63)]):
        code, _, err = run_cli(run_args(tmp_path / "never", *extra), capsys)
        assert_one_line_error(code, err)
    args = ["sweep", "free_riding", *SYNTHETIC, "--seeds", "3", "--seed", str(2**63 - 2)]
    code, _, err = run_cli([*args, "--out", tmp_path / "never"], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "never").exists()
