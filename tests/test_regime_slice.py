"""The regime map's real-model slice (issue 8 item 3): its grid is one row of the synthetic map's
grid, `admarket study free_riding_map --llm` is the documented sweep on the embedded model, and the
map's report builds on a grid that varies the cost alone (checked here on the synthetic engine)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from market.cli import main as admarket
from market.regime import rider_payoffs
from market.regime_map_cli import LLM, grid_file, sweep_argv
from market.regime_map_cli import parser as study_parser
from market.sweep import build_grid
from market.sweep.adapter import read_job_table
from reports.regime_map import COST, is_regime_map, regime_map, rows_in_words
from scenarios.loader import load_scenario

CANDIDATES, TAU, SHOEHORN = "mechanism.kwargs.candidates", "mechanism.kwargs.tau", "engine.kwargs.shoehorn"  # fmt: skip


def test_the_llm_grid_is_one_row_of_the_synthetic_map():
    """Same cost axis, one value each of M and τ taken from the synthetic axes, no shoehorn axis
    (a synthetic-engine knob); the sweep machinery accepts it with the embedded engine."""
    full = yaml.safe_load(grid_file().read_text(encoding="utf-8"))
    row = yaml.safe_load(grid_file(llm=True).read_text(encoding="utf-8"))
    assert grid_file(llm=True).parent == grid_file().parent
    assert row[COST] == full[COST] == [0, 0.1, 0.3, 0.6]
    assert set(row) == {COST, CANDIDATES, TAU} and SHOEHORN in full
    assert row[CANDIDATES] == [4] and set(row[CANDIDATES]) <= set(full[CANDIDATES])
    assert row[TAU] == [1] and set(row[TAU]) <= set(full[TAU])
    grid = build_grid((), grid_file(llm=True))
    cells = grid.validate("free_riding", LLM.engine)
    assert len(cells) == 4
    assert {cell.engine.type for cell in cells} == {"hf"}
    assert all(
        cell.engine.kwargs == {"threads": 1, "prompt_style": "user"} for cell in cells
    )  # no shoehorn left over
    assert [cell.advertisers[0].policy.kwargs["cost"] for cell in cells] == full[COST]
    assert {(c.mechanism.kwargs["candidates"], c.mechanism.kwargs["tau"]) for c in cells} == {
        (4, 1)
    }


def test_llm_flag_runs_the_documented_sweep_on_the_embedded_model():
    args = study_parser().parse_args(["--llm", "--out", "DIR"])
    assert sweep_argv(args) == [
        "sweep", "free_riding", "--grid-file", str(grid_file(llm=True)), "--seeds", "4",
        "--rounds", "24", "--workers", "2", "--out", "DIR",
        "--set", "engine={type: hf, kwargs: {threads: 1, prompt_style: user}}",
    ]  # fmt: skip
    mine = study_parser().parse_args(
        ["--llm", "--seeds", "2", "--rounds", "3", "--workers", "1", "--set", "sampling.top_p=1"]
    )
    assert sweep_argv(mine) == [
        "sweep", "free_riding", "--grid-file", str(grid_file(llm=True)), "--seeds", "2",
        "--rounds", "3", "--workers", "1",
        "--set", "engine={type: hf, kwargs: {threads: 1, prompt_style: user}}", "--set", "sampling.top_p=1",
    ]  # fmt: skip
    resume = study_parser().parse_args(["--llm", "--resume", "DIR"])
    assert sweep_argv(resume) == ["sweep", "--resume", "DIR", "--workers", "2"]
    assert load_scenario("free_riding", LLM.engine).engine.type == "hf"


@pytest.fixture(scope="module")
def cost_only_map(tmp_path_factory):
    """A map whose grid varies the cost alone (M = 4 by --set): 2 cells, 3 seeds × 12 rounds."""
    out = tmp_path_factory.mktemp("slice") / "map"
    argv = ["sweep", "free_riding", "--grid", f"{COST}=0,0.6", "--set", f"{CANDIDATES}=4"]
    argv += ["--seeds", "3", "--rounds", "12", "--workers", "1", "--out", str(out)]
    assert admarket(argv) == 0
    return out


def test_the_regime_map_builds_on_a_one_axis_grid(cost_only_map):
    assert is_regime_map(cost_only_map)
    for name in ("regime_map.html", "regime_map.csv", "regime_cells.csv"):
        assert (cost_only_map / name).is_file(), name
    for name in ("regime_offset_effect", "regime_participation", "regime_row"):
        assert (cost_only_map / "figures" / f"{name}.png").stat().st_size > 5000, name
    rmap = regime_map(cost_only_map)
    assert rmap.keys == (COST,) and rmap.row_keys == []
    assert "engine synthetic" in rmap.setting and "M 4" in rmap.setting
    assert "shoehorn 0" in rmap.setting
    assert list(rmap.effects[COST].astype(float)) == [0.0, 0.6]
    assert len(rmap.cells) == 4 and (rmap.cells["seeds"] == 3).all()
    effects = rmap.effects
    assert (effects["delta_irrelevant_low"] <= effects["delta_irrelevant"]).all()
    assert (effects["delta_irrelevant"] <= effects["delta_irrelevant_high"]).all()
    assert np.isfinite(effects["margin_low"]).all()
    [line] = rows_in_words(rmap)
    assert line.startswith(rmap.setting + ": the offset ")
    page = (cost_only_map / "regime_map.html").read_text(encoding="utf-8")
    assert "regime_row.png" in page and rmap.setting in page and "nobody enters" in page


def test_rider_payoffs_are_what_the_riders_arms_averaged(cost_only_map):
    """`rider_payoffs` against the advertisers table by hand; on the synthetic engine with
    shoehorn 0 the riders are nearly constant-reward, so their gain with the offset (eq. 15) is
    about 0, and the map reports the seeds' mean of each job's numbers."""
    rmap = regime_map(cost_only_map)
    columns = ("variant", "round", "advertiser", "relevant", "entered", "utility", "outside_reward")
    per_job = []
    for seed in range(3):
        table = read_job_table(
            cost_only_map / "runs" / f"c0001-s{seed:03d}",
            "advertisers",
            (*columns, "expected_reward_without"),
        )
        riders = set(table.loc[~table["relevant"], "advertiser"])
        offset = table[(table["variant"] == "offset") & table["advertiser"].isin(riders)]
        inside, outside = offset[offset["entered"]], offset[~offset["entered"]]
        expected = inside["utility"].mean() - outside["outside_reward"].mean()
        seen = rider_payoffs(table[table["variant"] == "offset"], riders)
        assert seen["advantage"] == pytest.approx(expected)
        assert seen["gain"] == pytest.approx(
            (inside["utility"] - inside["expected_reward_without"]).mean()
        )
        assert abs(seen["gain"]) < 0.01
        everybody = table[table["variant"] == "offset"].groupby("round")["entered"].any()
        market = outside[outside["round"].map(everybody)]
        assert 0 < len(market) < len(outside)  # round 1: everybody tries staying out at once
        assert seen["out_market"] == pytest.approx(market["outside_reward"].mean())
        assert seen["advantage_market"] == pytest.approx(
            inside["utility"].mean() - market["outside_reward"].mean()
        )
        per_job.append(seen["advantage"])
    cell = rmap.cells[(rmap.cells["cell"] == 1) & rmap.cells["offset"]].iloc[0]
    assert cell["rider_advantage"] == pytest.approx(np.mean(per_job))
    nobody = pd.DataFrame(
        {"round": [0], "advertiser": ["a"], "entered": [False], "utility": [0.0]}
        | {"outside_reward": [-0.3], "expected_reward_without": [np.nan]}
    )
    alone = rider_payoffs(nobody, {"a"})
    assert np.isnan(alone["in"]) and alone["out"] == -0.3 and np.isnan(alone["out_market"])


def test_the_weights_alone_margin_is_tau_lse_of_the_log_importance_weights(cost_only_map):
    """`round_margins`' ``alone``: τ·logsumexp(log π_ref − log π_gen) of each auction by hand,
    pooled like the margin into the map's ``margin_alone`` (the margin without the others'
    rewards in the logits)."""
    from market.regime import entry_margin, round_margins

    run = cost_only_map / "runs" / "c0000-s000"
    columns = ("variant", "seed", "round", "candidate", "log_ref", "log_gen", "rewards")
    auctions = read_job_table(run, "auctions", (*columns, "entrants"))
    auctions = auctions[auctions["variant"] == "no_offset"]
    table = read_job_table(run, "advertisers", ("advertiser", "relevant"))
    riders = set(table.loc[~table["relevant"], "advertiser"])
    margins = round_margins(auctions, riders, 1.0).set_index("round")
    for round_index, rows in auctions.groupby("round"):
        weights = rows["log_ref"].to_numpy() - rows["log_gen"].to_numpy()
        assert margins.loc[round_index, "alone"] == pytest.approx(np.logaddexp.reduce(weights))
    rmap = regime_map(cost_only_map)
    alone = [
        entry_margin(
            round_margins(
                read_job_table(
                    cost_only_map / "runs" / f"c0000-s{seed:03d}",
                    "auctions",
                    (*columns, "entrants"),
                ).query("variant == 'no_offset'"),
                riders,
                1.0,
            ),
            "alone",
        )
        for seed in range(3)
    ]
    assert rmap.effects.loc[0, "margin_alone"] == pytest.approx(np.mean(alone))
