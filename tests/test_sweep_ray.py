"""The Ray backend on a real local Ray (``ray.init(num_cpus=2)``, no mock): the same rows as one
worker in this process. Ray comes with the ``ray`` extra, which ``make test`` installs."""

from __future__ import annotations

import pandas as pd
import ray

from market import api
from market.runner import comparable, read_table

GRID = {"mechanism.kwargs.tau": [0.5, 2]}
SETTINGS = {"overrides": {"engine.type": "synthetic"}, "rounds": 8, "seeds": 2}


def test_ray_tasks_give_the_rows_of_one_worker(tmp_path):
    one = api.sweep("free_riding", grid=GRID, workers=1, out=tmp_path / "one", **SETTINGS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        on_ray = api.sweep(
            "free_riding", grid=GRID, backend="ray", out=tmp_path / "ray", **SETTINGS
        )
        assert ray.is_initialized()  # a Ray the caller started is left to the caller
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(one, on_ray)
    for job in one["job"].unique():
        for table in ("rounds", "advertisers", "auctions"):
            pd.testing.assert_frame_equal(
                comparable(read_table(tmp_path / "one" / "runs" / job, table)),
                comparable(read_table(tmp_path / "ray" / "runs" / job, table)),
            )
