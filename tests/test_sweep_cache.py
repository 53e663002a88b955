"""Sweep workers share the engine call cache: the embedded LLM's calls made by one sweep land in
one SQLite file, and the worker processes of a second sweep of the same grid are answered from it."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from market import api
from market.engines.cache import CACHE_FILE, cache_root

TINY = {
    "engine.kwargs.threads": 1,
    "mechanism.kwargs.candidates": 2,
    "sampling.max_new_tokens": 4,
}


def _calls(folder) -> int:
    with sqlite3.connect(folder / CACHE_FILE) as db:
        return db.execute("SELECT COUNT(*) FROM generate_calls").fetchone()[0]


@pytest.mark.slow
def test_a_second_sweeps_workers_answer_from_the_first_sweeps_cache(tmp_path, monkeypatch):
    models = cache_root() / "models"
    cache = tmp_path / "cache"
    cache.mkdir()
    if models.is_dir():  # reuse the converted embedded model; only the call cache is fresh
        (cache / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.setenv("ADMARKET_CACHE", str(cache))

    def sweep(out: str, workers: int) -> pd.DataFrame:
        return api.sweep(
            "demo",
            grid={"mechanism.kwargs.tau": [1.0]},
            seeds=2,
            workers=workers,
            overrides=TINY,
            rounds=1,
            out=tmp_path / out,
        )

    first = sweep("first", 1)  # in this process, with the engine loaded to check the grid
    calls = _calls(cache)
    assert calls >= 2  # at least one generate call per job (seeds 0 and 1)
    second = sweep("second", 2)
    assert _calls(cache) == calls  # new worker processes: every call answered from the file
    pd.testing.assert_frame_equal(first, second, check_exact=True)
