"""Token auction vs MOSAIC like for like (market.token_vs_mosaic, its _cli and auction_adapter).

The payments-in-reward-units mapping is checked by recomputing one token-auction round by hand:
the engine's next-token distributions, the stable-sampling uniforms, and each token's critical bid
found by scanning bids (only `aggregate` and `stable_sample`, not the mechanism's own critical-bid
code); MOSAIC's report-scaling search must end at truthful reporting (Theorem 5.1).
"""

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from market.auction_adapter import Action, Advertiser, Arena, RoundSpec
from market.mechanisms.token_auction import aggregate, stable_sample
from market.token_vs_mosaic import (
    ASSUMPTIONS,
    METRICS,
    StudyConfig,
    StudyError,
    _round_specs,
    _search,
    run_study,
)
from market.token_vs_mosaic_cli import main, print_result

GUITAR = "How can I learn to play the guitar?"
PRIVACY = "How can I protect my privacy online?"
ADVERTISERS = (
    Advertiser("MusicMastery", "offering online music lessons", ("music",), 1.0),
    Advertiser("InstaTune", "selling musical instruments", ("music",), 2.0),
    Advertiser("EasySwitch", "offering a VPN service", ("privacy",), 1.0),
)
MECHANISMS = {
    "mosaic": {"type": "mosaic", "kwargs": {"candidates": 8, "offset": True}},
    "token_auction": {"type": "token_auction", "kwargs": {"rule": "linear"}},
}


def _arena(bid_unit: float = 1.0) -> Arena:
    return Arena(ADVERTISERS, {GUITAR: "music", PRIVACY: "privacy"}, MECHANISMS, bid_unit=bid_unit)


def _scanned_critical_bid(dists, reference, bids, i, u, token, points=4001):
    """The lowest bid from which advertiser i's token stays ``token`` all the way up to her bid,
    by scanning a fine grid of bids (the definition, Duetting et al.'s second price)."""
    grid = np.linspace(0.0, bids[i], points)
    same = []
    for b in grid:
        trial = bids.copy()
        trial[i] = b
        q = aggregate(dists, trial, rule="linear", reference=reference, reference_weight=1.0)
        same.append(stable_sample(q, u) == token)
    same = np.array(same)
    if same.all():
        return 0.0
    return float(grid[np.flatnonzero(~same)[-1] + 1])


def test_token_auction_payments_are_kappa_times_summed_critical_bids_in_reward_units():
    kappa = 2.5
    arena = _arena(bid_unit=kappa)
    spec = RoundSpec(GUITAR, 11, (7, 1))
    bids = np.array([1.2, 0.7, 0.4])
    play = arena.play("token_auction", spec, [Action(bid_amount=b) for b in bids])

    engine, prompts = arena.engine, arena.score_prompts(GUITAR)
    rng = np.random.default_rng(np.random.SeedSequence(spec.draw_entropy))
    step = (4.0 / 4000) * bids.max()  # the scan's resolution
    spent = np.zeros(3)
    tokens = play.reply_token_ids
    for t, token in enumerate(tokens):
        dists = np.exp(engine.next_token_logprobs(prompts, [list(tokens[:t])] * len(prompts)))
        u = float(rng.random())
        q = aggregate(dists[1:], bids, rule="linear", reference=dists[0], reference_weight=1.0)
        assert stable_sample(q, u) == token  # the same reply, token by token
        for i in range(3):
            spent[i] += _scanned_critical_bid(dists[1:], dists[0], bids, i, u, token)
    assert spent.sum() > 0  # the round exercises the payment
    np.testing.assert_allclose(play.payments, kappa * spent, atol=kappa * step * len(tokens))

    scores = engine.score(prompts, [list(tokens)])[:, 0]
    values = np.array([a.value for a in ADVERTISERS])
    np.testing.assert_allclose(play.rewards, values * (scores[1:] - scores[0]), rtol=1e-12)
    np.testing.assert_allclose(play.utilities, play.rewards - play.payments)
    np.testing.assert_allclose(play.expected_utilities, play.utilities)
    # κ only converts units: the same round at κ = 1 draws the same reply and costs 1/κ as much.
    unit = _arena(1.0).play("token_auction", spec, [Action(bid_amount=b) for b in bids])
    assert unit.reply_token_ids == tokens
    np.testing.assert_allclose(play.payments, kappa * unit.payments, rtol=1e-12)


def test_mosaic_payments_are_in_reward_units_already():
    spec = RoundSpec(GUITAR, 3, (1, 2))
    truthful = [Action(scale=1.0)] * 3
    a, b = _arena(1.0).play("mosaic", spec, truthful), _arena(9.0).play("mosaic", spec, truthful)
    np.testing.assert_array_equal(a.payments, b.payments)  # κ applies to token bids only
    assert a.reply_token_ids == b.reply_token_ids


def test_mosaic_report_scaling_search_ends_at_truthful_reporting():
    arena = _arena()
    specs = _round_specs(0, 0, 0, 6, [GUITAR, PRIVACY], [0.5, 0.5])
    config = StudyConfig(report_scales=(0.5, 1.0, 2.0, 4.0), max_passes=4)
    result = _search(arena, "mosaic", specs, config)
    assert result.path[0] == (4.0, 4.0, 4.0)  # it starts overstating
    assert result.converged and result.profile == (1.0, 1.0, 1.0)
    assert result.regrets.max() <= 1e-9


def test_the_study_table_has_every_metric_both_mechanisms_and_writes_csv(tmp_path):
    config = StudyConfig(
        seeds=2, search_rounds=4, eval_rounds=8, max_passes=2,
        bid_multipliers=(0.0, 1.0, 2.0), report_scales=(0.5, 1.0, 2.0),
    )  # fmt: skip
    result = run_study(config)
    table = result.table.set_index(["mechanism", "bidding"])
    assert set(table.index) == {
        ("mosaic", "truthful (s = 1)"),
        ("mosaic", "best response"),
        ("token_auction", "b = v"),
        ("token_auction", "best response"),
    }
    for metric in METRICS:
        assert {metric, f"{metric}_low", f"{metric}_high"} <= set(table.columns)
        assert np.isfinite(table[metric]).all()
    best = table.loc[("mosaic", "best response")]
    names = [a.name for a in result.advertisers]
    assert all(best[f"action_{n}"] == 1.0 for n in names)  # truthful in every seed
    assert best["converged_seeds"] == 2
    truthful = table.loc[("mosaic", "truthful (s = 1)")]
    assert best["welfare"] == truthful["welfare"]  # same profile, same rounds
    assert np.isnan(truthful["converged_seeds"])  # fixed actions: no search to converge
    assert best["epsilon"] <= 1e-9 and np.isnan(truthful["epsilon"])
    assert (result.searches.loc[result.searches.mechanism == "mosaic", "at_grid_top"] == 0).all()
    assert "κ" in table.loc[("token_auction", "b = v"), "payment_units"]
    # Welfare − revenue = advertiser utility, round by round, hence in every seed's means.
    per_seed = result.per_seed
    np.testing.assert_allclose(
        per_seed["welfare"] - per_seed["revenue"], per_seed["advertiser_utility"], atol=1e-9
    )
    # Both mechanisms saw the same rounds: the searches and evaluations are per seed.
    assert set(result.searches["mechanism"]) == {"mosaic", "token_auction"}
    paths = result.write(tmp_path)
    assert [p.name for p in paths] == [
        "token_vs_mosaic.csv", "per_seed.csv", "searches.csv", "assumptions.md",
    ]  # fmt: skip
    assert len(pd.read_csv(tmp_path / "token_vs_mosaic.csv")) == 4
    assert len((tmp_path / "assumptions.md").read_text().splitlines()) == 2 + len(ASSUMPTIONS)
    console = Console(record=True, width=200)
    print_result(result, console)
    text = console.export_text()
    assert "r_i(y) − p_i" in text and "κ·Σ_t c_t, κ = 1" in text
    assert "What differs" in text and "per token" in text and "Thm 5.1" in text


def test_round_specs_are_common_random_numbers():
    first = _round_specs(0, 3, 1, 5, [GUITAR, PRIVACY], [0.5, 0.5])
    assert first == _round_specs(0, 3, 1, 5, [GUITAR, PRIVACY], [0.5, 0.5])
    assert first != _round_specs(0, 4, 1, 5, [GUITAR, PRIVACY], [0.5, 0.5])
    assert first != _round_specs(0, 3, 0, 5, [GUITAR, PRIVACY], [0.5, 0.5])


def test_tempered_sampling_is_refused_in_one_line(capsys):
    with pytest.raises(StudyError, match="temperature"):
        run_study(StudyConfig(overrides=("sampling.temperature=0.8",), seeds=2))
    assert main(["--set", "sampling.top_p=0.9", "--seeds", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("token_vs_mosaic: error:") and "top_p" in err and "\n" not in err
    assert main(["no_such_scenario", "--seeds", "2"]) == 2
    assert "no_such_scenario" in capsys.readouterr().err


def test_an_out_path_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": 1}, "seeds must be >= 2"),
        ({"bid_multipliers": (0.0, 2.0)}, "include 1"),
        ({"report_scales": (0.0, 1.0)}, "report_scales"),
        ({"bid_unit": 0.0}, "bid_unit"),
        ({"search_rounds": 0}, "search_rounds"),
    ],
)
def test_bad_config_is_refused(kwargs, match):
    with pytest.raises(StudyError, match=match):
        StudyConfig(**kwargs)


def test_admarket_study_runs_the_token_vs_mosaic_command_line(tmp_path, capsys):
    from market.cli import main as admarket

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert admarket(["study", "token_vs_mosaic", "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert admarket(["study", "no_such_study"]) == 2
