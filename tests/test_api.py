"""`market.api`: the examples of docs/api.md run as written, and the API's own contract."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest

from market import api
from market.runner import RunError, comparable, read_table
from market.sweep import SweepError
from scenarios.loader import ScenarioError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
SYNTHETIC = {"engine.type": "synthetic"}


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_examples_of_docs_api_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the examples write runs/ into the current folder
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    run, summary = namespace["run"], namespace["summary"]
    assert run.path.parent == Path("runs") and run.path.is_dir()
    assert Path(summary.attrs["sweep_dir"]).parent == tmp_path / "runs"
    assert "entered" in capsys.readouterr().out


def test_run_is_frozen_and_reads_its_folder(tmp_path):
    run = api.run("free_riding", overrides=SYNTHETIC, seed=2, rounds=5, out=tmp_path / "r")
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.path = tmp_path
    assert run.meta["seeds"] == [2] and run.scenario.seed == 2 and run.scenario.rounds == 5
    assert len(run.rounds) == 2 * 5 and set(run.auctions["seed"]) == {2}
    pd.testing.assert_frame_equal(run.advertisers, read_table(tmp_path / "r", "advertisers"))
    again = api.load_run(tmp_path / "r")
    assert again == run and again.rounds.equals(run.rounds)
    with pytest.raises(RunError, match="already holds a run"):
        api.run("free_riding", overrides=SYNTHETIC, out=tmp_path / "r")


def test_overrides_as_a_mapping_or_as_set_texts_are_the_same_run(tmp_path):
    settings = {"engine.type": "synthetic", "mechanism.kwargs.tau": 0.5, "rounds": 4}
    mapping = api.run("free_riding", overrides=settings, out=tmp_path / "a")
    texts = api.run(
        "free_riding", overrides=[f"{k}={v}" for k, v in settings.items()], out=tmp_path / "b"
    )
    assert mapping.scenario.mechanism.kwargs["tau"] == 0.5
    pd.testing.assert_frame_equal(comparable(mapping.rounds), comparable(texts.rounds))


def test_bad_input_raises_the_command_lines_messages(tmp_path):
    with pytest.raises(ScenarioError, match="tau must be a finite number > 0"):
        api.run("free_riding", overrides={"mechanism.kwargs.tau": -1}, out=tmp_path / "x")
    with pytest.raises(SweepError, match="did you mean 'tau'"):
        api.sweep("free_riding", grid={"mechanism.kwargs.tua": [1, 2]}, out=tmp_path / "y")
    with pytest.raises(SweepError, match="the grid is empty"):
        api.sweep("free_riding", grid={}, out=tmp_path / "z")
    with pytest.raises(SweepError, match="--workers"):
        api.sweep("free_riding", grid={"rounds": [2]}, workers=0, out=tmp_path / "w")
    assert list(tmp_path.iterdir()) == []
