"""The free-riding regime map (issue 8 item 3): the theory's boundary (`market.regime`) and a tiny
2-cell map built by the sweep command (the full map is not run here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.cli import main as admarket
from market.mechanisms.mosaic import mosaic_outcome
from market.regime import entry_margin, free_rider_margin, predicted_entry, round_margins
from market.regime_map_cli import grid_file, sweep_argv
from market.regime_map_cli import parser as study_parser
from market.sweep.adapter import read_job_table
from reports.regime_map import classify, collapsed, is_regime_map, regime_map

COST = "advertisers.catalog.policy.kwargs.cost"


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 8),
    st.floats(-2.0, 2.0),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.integers(0, 2**32 - 1),
)
def test_a_constant_reward_entrant_gains_the_margin_without_the_offset_and_nothing_with_it(
    others, m, c, tau, seed
):
    """Eq. 16 and eq. 5: with a constant reward c on every candidate, her utility without the
    offset minus what she gets staying out (c) is τ·logsumexp(β_-i), the margin; with the offset
    her gain from participation is 0."""
    rng = np.random.default_rng(seed)
    rewards = np.vstack([rng.normal(0, 1.5, (others, m)), np.full((1, m), c)])
    log_ref, log_gen = rng.normal(-3, 1, m), rng.normal(-3, 1, m)
    without = mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=False)
    margin = free_rider_margin(rewards, log_ref, log_gen, tau, rider=others)
    assert without.utilities[-1] - c == pytest.approx(margin, abs=1e-9)
    assert without.utilities[0] == pytest.approx(free_rider_margin(rewards, log_ref, log_gen, tau))
    assert free_rider_margin(rewards[:others], log_ref, log_gen, tau) == pytest.approx(margin)
    with_offset = mosaic_outcome(rewards, log_ref, log_gen, tau=tau, offset=True)
    gain = with_offset.utilities[-1] - with_offset.expected_rewards_without[-1]
    assert gain == pytest.approx(0.0, abs=1e-9)


def test_predicted_entry_is_epsilon_greedy_settled_on_the_better_arm():
    assert predicted_entry(0.5, 0.3, 0.1) == pytest.approx(0.95)
    assert predicted_entry(0.0, 0.3, 0.1) == pytest.approx(0.05)
    assert predicted_entry(0.0, 0.0, 0.1) == 0.5  # the offset at cost 0: indifferent


@pytest.fixture(scope="module")
def tiny_map(tmp_path_factory):
    """A 2-cell map: cost 0 and 0.6 at M = 4, τ = 1, shoehorn 0; 2 seeds × 24 rounds. Its pages
    come from `admarket report DIR`, which writes regime_map.html beside sweep.html."""
    out = tmp_path_factory.mktemp("map") / "map"
    argv = ["sweep", "free_riding", "--grid", f"{COST}=0,0.6", "--grid"]
    argv += ["mechanism.kwargs.candidates=4", "--seeds", "2", "--rounds", "24", "--workers", "1"]
    assert admarket([*argv, "--out", str(out), "--no-report"]) == 0
    assert not (out / "regime_map.html").exists()
    assert admarket(["report", str(out)]) == 0
    return out


def direct_margins(auctions: pd.DataFrame, riders: set[str], tau: float) -> list[float]:
    """Each round's margin by hand: logits of the entrants but the rider, logaddexp, × τ."""
    out = []
    for _, rows in auctions.groupby("round", sort=True):
        rows = rows.sort_values("candidate")
        names = list(rows["entrants"].iloc[0])
        weight = rows["log_ref"].to_numpy() - rows["log_gen"].to_numpy()
        per_rider = []
        for k in [k for k, name in enumerate(names) if name in riders] or [None]:
            total = weight.copy()
            for j, reward in enumerate(rows["rewards"]):
                total[j] += sum(r for i, r in enumerate(reward) if i != k) / tau
            per_rider.append(tau * np.logaddexp.reduce(total))
        out.append(float(np.mean(per_rider)))
    return out


def test_the_theory_boundary_matches_a_direct_computation_on_a_small_cell(tiny_map):
    """On a recorded no-offset run: `round_margins` equals the margin computed by hand from the
    auctions table, τ·logsumexp of every entrant's logits equals the utility the run recorded for
    each no-offset entrant (eq. 16), and `entry_margin` pools the rounds riders were in."""
    run = tiny_map / "runs" / "c0000-s000"
    auctions = read_job_table(
        run,
        "auctions",
        ("variant", "seed", "round", "candidate", "log_ref", "log_gen", "rewards", "entrants"),
    )
    advertisers = read_job_table(
        run, "advertisers", ("variant", "round", "advertiser", "relevant", "entered", "utility")
    )
    riders = set(advertisers.loc[~advertisers["relevant"], "advertiser"])
    assert len(riders) == 9
    auctions = auctions[auctions["variant"] == "no_offset"]
    margins = round_margins(auctions, riders, 1.0)
    assert len(margins) == 24
    np.testing.assert_allclose(margins["margin"], direct_margins(auctions, riders, 1.0), rtol=1e-10)

    entered = advertisers[(advertisers["variant"] == "no_offset") & advertisers["entered"]]
    for round_index, rows in auctions.groupby("round"):
        rows = rows.sort_values("candidate")
        rewards = np.array([list(r) for r in rows["rewards"]]).T
        common = free_rider_margin(rewards, rows["log_ref"], rows["log_gen"], 1.0)
        recorded = entered.loc[entered["round"] == round_index, "utility"].to_numpy()
        np.testing.assert_allclose(recorded, common, rtol=1e-9)

    inside = margins[margins["riders_in"] > 0]
    expected = (inside["margin"] * inside["riders_in"]).sum() / inside["riders_in"].sum()
    assert entry_margin(margins) == pytest.approx(expected)
    assert margins.loc[0, "riders_in"] == 9  # ε-greedy tries entering first


def test_a_tiny_map_writes_its_page_tables_and_figures(tiny_map):
    """`admarket report` of a free_riding sweep over the cost writes the map (the fixture)."""
    assert is_regime_map(tiny_map)
    for name in ("regime_map.html", "regime_map.csv", "regime_cells.csv"):
        assert (tiny_map / name).is_file(), name
    for name in ("regime_offset_effect", "regime_participation"):
        assert (tiny_map / "figures" / f"{name}.png").stat().st_size > 5000
    rmap = regime_map(tiny_map)
    assert len(rmap.effects) == 2 and len(rmap.cells) == 4
    assert set(rmap.cells["variant"]) == {"offset", "no_offset"}
    offset_rows = rmap.cells[rmap.cells["offset"]]
    assert (offset_rows["theory_margin"] == 0).all()
    cost = rmap.effects[COST].astype(float)
    no_offset = rmap.cells[~rmap.cells["offset"]].set_index("cell")
    for cell, row in rmap.effects.set_index("cell").iterrows():
        assert no_offset.loc[cell, "theory_margin"] == pytest.approx(row["margin"])
        assert np.isfinite(row["margin"])
    assert list(cost) == [0.0, 0.6]
    assert set(rmap.effects["regime"]) <= {"deters", "raises", "no effect"}
    assert list(rmap.effects["theory_enters_no_offset"]) == list(rmap.effects["margin"] > cost)
    page = (tiny_map / "regime_map.html").read_text()
    assert "Headline" in page and "nobody enters" in page


def test_classify_names_the_offsets_effect_and_collapsed_means_nobody_enters():
    assert classify({"delta_irrelevant_low": -0.6, "delta_irrelevant_high": -0.3}) == "deters"
    assert classify({"delta_irrelevant_low": 0.1, "delta_irrelevant_high": 0.4}) == "raises"
    assert classify({"delta_irrelevant_low": -0.1, "delta_irrelevant_high": 0.2}) == "no effect"
    assert collapsed(relevant=0.06, irrelevant=0.19)
    assert not collapsed(relevant=0.30, irrelevant=0.05)  # relevant brands still enter
    assert not collapsed(relevant=0.06, irrelevant=0.60)  # free riders still enter


def test_the_study_is_the_documented_sweep():
    args = study_parser().parse_args(["--workers", "2", "--out", "DIR"])
    assert sweep_argv(args) == [
        "sweep", "free_riding", "--grid-file", str(grid_file()), "--seeds", "5", "--rounds",
        "160", "--workers", "2", "--out", "DIR",
    ]  # fmt: skip
    assert grid_file().is_file()
    resume = study_parser().parse_args(["--resume", "DIR"])
    assert sweep_argv(resume) == ["sweep", "--resume", "DIR"]
