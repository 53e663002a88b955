"""The demo's story: learning from the utility gain, the one-sentence result that opens the summary
and the report (computed from the rows), and — on the embedded model (slow) — the demo's 2nd-half
entry separating relevant from irrelevant advertisers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from agents.policies import build_policy
from agents.records import RoundRecord
from market.cli import main as admarket
from market.runfolder import read_table
from reports import build_report, load_run, print_summary
from reports.summary import headline_sentences
from reports.tables import dilution_table, headline_table
from scenarios.loader import load_scenario

SYNTHETIC = ["--set", "engine.type=synthetic", "--no-report", "--no-cache"]


def _gain_record(round_: int, utility: float, without: float) -> RoundRecord:
    return RoundRecord(
        round=round_, entered=True, relevant=False, utility=utility, expected_reward_without=without
    )


def test_the_gain_is_utility_minus_the_reward_without_her_and_zero_when_out():
    assert _gain_record(0, 13.0, 12.5).payoff("gain") == pytest.approx(0.5)
    assert _gain_record(0, 13.0, 12.5).payoff("expected") == 13.0
    out = RoundRecord(round=1, entered=False, relevant=False, outside_reward=9.0)
    assert out.payoff("gain") == 0.0 and out.payoff("expected") == 9.0
    assert math.isnan(RoundRecord(round=2, entered=True, relevant=True).payoff("gain"))
    with pytest.raises(ValueError, match="'gain'"):
        _gain_record(3, 1.0, 0.0).payoff("hope")


def test_a_threshold_learning_from_the_gain_stays_out_of_a_large_free_reward():
    """A large utility that the advertiser would get anyway (the reply pays her as much without
    her) does not keep her in; a gain above the cost does."""
    spec = {"type": "threshold", "kwargs": {"cost": 2.0, "epsilon": 0.0, "learn_from": "gain"}}
    free = build_policy(spec, np.random.default_rng(0))
    assert free.decide([_gain_record(0, 13.0, 12.9)]) is False
    paying = build_policy(spec, np.random.default_rng(0))
    assert paying.decide([_gain_record(0, 24.0, 8.0)]) is True
    by_level = build_policy(
        {"type": "threshold", "kwargs": {"cost": 2.0, "epsilon": 0.0}}, np.random.default_rng(0)
    )
    assert by_level.decide([_gain_record(0, 13.0, 12.9)]) is True


def test_the_demo_learns_from_the_gain_with_an_entry_cost_on_music_queries():
    demo = load_scenario("demo")
    assert {q.topic for q in demo.queries} == {"music"}
    relevant = [a.name for a in demo.advertisers if "music" in a.topics]
    assert relevant and len(relevant) < len(demo.advertisers)
    for advertiser in demo.advertisers:
        kwargs = advertiser.policy.kwargs
        assert kwargs["learn_from"] == "gain" and kwargs["cost"] > 0


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "free_riding"
    argv = ["sweep", "free_riding", "--seeds", "2", "--rounds", "24", "--out", str(out)]
    assert admarket([*argv, *SYNTHETIC]) == 0
    return out


def _percent(value: float) -> str:
    return f"{value:.0%}"


def test_the_headline_sentence_is_computed_from_the_rows(synthetic_run):
    data = load_run(synthetic_run)
    headline = headline_table(data, n_boot=50)
    sentences = headline_sentences(data, headline)
    assert len(sentences) == len(data.variants) + 1  # one per variant, then the dilution trend
    for variant, sentence in zip(data.variants, sentences, strict=False):
        rows = headline[headline["variant"] == variant].set_index("metric")["estimate"]
        rounds = data.rounds[(data.rounds["variant"] == variant) & (data.rounds["n_entrants"] > 0)]
        said = int((rounds["mentioned"].map(len) > 0).sum())
        assert sentence.startswith(f"{variant}: Relevant advertisers entered ")
        assert f"entered {_percent(rows['participation_relevant_late'])} of 2nd-half" in sentence
        assert f"irrelevant ones {_percent(rows['participation_irrelevant_late'])}" in sentence
        assert f"{said} of {len(rounds)} returned replies mention an entrant" in sentence
        assert "(mean over 2 seeds)" in sentence
    table = dilution_table(data)
    pooled = table.assign(m=table["mention_rate"] * table["n"]).groupby("n_entrants")[["m", "n"]]
    pooled = pooled.sum()
    pooled = pooled[pooled["n"] >= 5]
    first, last = pooled.index[0], pooled.index[-1]
    rate = pooled["m"] / pooled["n"]
    trend = "fall" if rate[last] < rate[first] else ("rise" if rate[last] > rate[first] else "")
    assert sentences[-1].startswith(f"Mentions per relevant entrant {trend or 'stay level'} from")
    assert f"{_percent(rate[last])} with {last} (n={int(pooled.loc[last, 'n'])})" in sentences[-1]


def test_the_summary_and_the_report_open_with_the_sentence(synthetic_run):
    data = load_run(synthetic_run)
    first = headline_sentences(data)[0]
    console = Console(record=True, width=200)
    print_summary(synthetic_run, console)
    printed = console.export_text()
    assert printed.startswith(first)
    page = build_report(synthetic_run).read_text()
    body = page.split("</h1>", 1)[1].lstrip()
    assert body.startswith("<p><strong>") and first.replace("'", "&#x27;") in body.split("</p>")[0]


def test_rounds_nobody_entered_are_left_out_of_the_mention_count(tmp_path):
    out = tmp_path / "never"
    never = [f"advertisers.{i}.policy={{type: never}}" for i in range(4)]
    argv = ["run", "demo", "--rounds", "6", "--out", str(out), *SYNTHETIC]
    assert admarket([*argv, *(x for item in never for x in ("--set", item))]) == 0
    sentence = headline_sentences(load_run(out))[0]
    assert sentence == (
        "Relevant advertisers entered 0% of 2nd-half rounds, irrelevant ones 0%; 0 of 0 "
        "returned replies mention an entrant (6 rounds without entrants left out)."
    )


def test_the_market_records_the_counterfactual_the_gain_learns_from(tmp_path):
    out = tmp_path / "demo"
    assert admarket(["run", "demo", "--rounds", "8", "--out", str(out), *SYNTHETIC]) == 0
    adv = read_table(out, "advertisers")
    entered = adv[adv["entered"]]
    assert np.isfinite(entered["expected_reward_without"]).all()
    assert adv.loc[~adv["entered"], "expected_reward_without"].isna().all()


@pytest.mark.slow
def test_the_demo_s_second_half_entry_separates_relevant_from_irrelevant(tmp_path):
    """`make run`'s story on the embedded model: the music brands keep entering, the unrelated
    ones (a mention is worth less to them) learn to stay out."""
    out = tmp_path / "demo"
    assert admarket(["run", "demo", "--out", str(out), "--no-report", "--no-cache"]) == 0
    adv = read_table(out, "advertisers")
    late = adv[adv["round"] >= adv["round"].max() // 2 + 1]
    entry = late.groupby("relevant")["entered"].mean()
    assert entry[True] >= entry[False] + 0.5, entry.to_dict()
    sentence = headline_sentences(load_run(out))[0]
    assert sentence.startswith(f"Relevant advertisers entered {entry[True]:.0%} of 2nd-half")
    rounds = read_table(out, "rounds")
    assert (rounds["mentioned"].map(len) > 0).any()  # replies name the entrants
