"""The live dashboard (`admarket dashboard`): knobs as scenario overrides, the market it runs, the
panels' HTML, one-line errors, and the page driven in a real headless Chromium."""

from __future__ import annotations

import math
import socket
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.auction import mentions
from market.cli import main
from market.dashboard import browser
from market.dashboard.app import RENDER_INTERVAL
from market.dashboard.controls import Knobs, cast, defaults, overrides, scenario_for, takes_cost
from market.dashboard.live import Engines, LiveMarket
from market.dashboard.panels import highlight, table
from market.engines.pool import EnginePool
from market.model import ROUND_REPORTERS
from market.runner import TIMING_COLUMNS
from market.studies.market import MarketStudy
from scenarios.loader import ScenarioError, load_scenario

ENGINES = Engines(cache=False)


@pytest.fixture(scope="module")
def free_riding():
    return load_scenario("free_riding")


def market(base, **changes) -> LiveMarket:
    knobs = defaults(base)
    return LiveMarket.from_knobs(base, ENGINES, Knobs(**{**knobs.__dict__, **changes}))


# --- knobs -> scenario ---------------------------------------------------------------------------


def test_default_knobs_read_the_scenario(free_riding):
    knobs = defaults(free_riding)
    assert knobs == Knobs(
        mechanism="MOSAIC, context generator",
        offset=True,
        tau=1.0,
        candidates=16,
        entry_cost=0.3,
        relevant=3,
        irrelevant=9,
        engine="synthetic",
        seed=0,
    )
    # nothing but the variants changes: the knobs replace them
    assert [o.path for o in overrides(free_riding, knobs)] == [("variants",)]


def test_default_knobs_run_the_clis_market_row_for_row(free_riding):
    """The dashboard's market is the CLI's MarketModel: same scenario and seed, same rounds."""
    live = market(free_riding)
    cli = MarketStudy(free_riding).model(
        "offset", 0, EnginePool(free_riding.catalog(), cache=False)
    )
    for _ in range(15):
        live.step()
        cli.step()
    keep = [c for c in ROUND_REPORTERS if c not in (*TIMING_COLUMNS, "variant")]
    ours = pd.DataFrame(live.datacollector.model_vars)[keep]
    theirs = pd.DataFrame(cli.datacollector.model_vars)[keep]
    pd.testing.assert_frame_equal(ours, theirs)


def test_every_knob_reaches_the_validated_scenario(free_riding):
    knobs = Knobs(
        mechanism="MOSAIC, baseline generator",
        offset=False,
        tau=0.5,
        candidates=4,
        entry_cost=0.05,
        relevant=2,
        irrelevant=12,
        engine="synthetic",
        seed=7,
    )
    scenario = scenario_for(free_riding, knobs)
    assert scenario.mechanism.type == "mosaic"
    assert scenario.mechanism.kwargs == {
        "generator": "reference",
        "offset": False,
        "tau": 0.5,
        "candidates": 4,
    }
    assert scenario.seed == 7 and scenario.variants == {}
    engine_kwargs = free_riding.engine.kwargs
    assert scenario.engine.type == "synthetic" and scenario.engine.kwargs == engine_kwargs
    topics = {q.topic for q in scenario.queries}
    relevant = [a for a in scenario.advertisers if topics & set(a.topics)]
    assert len(relevant) == 2 and len(scenario.advertisers) == 14
    # the scenario's own advertisers come first, in its order; catalog brands follow
    own = [a.name for a in free_riding.advertisers]
    kept = [a.name for a in scenario.advertisers if a.name in own]
    assert (
        kept == [n for n in own if n in kept]
        and kept == [a.name for a in scenario.advertisers][: len(kept)]
    )
    assert all(a.policy.kwargs["cost"] == 0.05 for a in scenario.advertisers)


def test_token_auction_and_the_scenarios_own_engine(free_riding):
    scenario = scenario_for(
        free_riding, Knobs(**{**defaults(free_riding).__dict__, "mechanism": "token auction"})
    )
    assert scenario.mechanism.type == "token_auction"
    demo = load_scenario("demo")  # an hf scenario: the embedded model keeps its kwargs
    assert scenario_for(demo, defaults(demo)).engine.type == "synthetic"
    assert (
        scenario_for(demo, Knobs(**{**defaults(demo).__dict__, "engine": "hf"})).engine
        == demo.engine
    )


def test_a_bad_knob_is_a_one_line_scenario_error(free_riding):
    knobs = Knobs(**{**defaults(free_riding).__dict__, "tau": 0.0})
    with pytest.raises(ScenarioError) as error:
        scenario_for(free_riding, knobs)
    message = str(error.value)
    assert "\n" not in message and "mechanism.kwargs.tau" in message and "--set" in message


def test_the_cast_grows_from_the_catalog_without_clashes(free_riding):
    people = cast(free_riding)
    names = [a["name"] for a in (*people.relevant, *people.irrelevant)]
    assert len(names) == len(set(names)) == 30  # every catalog brand once
    assert [a["name"] for a in people.relevant][:3] == ["MusicMastery", "InstaTune", "ChordCraft"]
    assert all(takes_cost(a["policy"]) for a in people.irrelevant)


# --- the market's running totals ------------------------------------------------------------------


def test_running_totals_match_the_datacollectors_rows(free_riding):
    live = market(free_riding, irrelevant=4)
    for _ in range(25):
        live.step()
    rows = live.datacollector.get_table_dataframe("advertisers")
    entered = rows[rows["entered"]]
    by_name = entered.groupby("advertiser")
    names = [a.name for a in live.advertisers]
    entries = by_name.size().reindex(names, fill_value=0).to_numpy()
    np.testing.assert_array_equal(live.entries, entries)
    utility = by_name["utility"].sum().reindex(names, fill_value=0.0).to_numpy()
    np.testing.assert_allclose(live.utility, utility, atol=1e-12)
    gain = (entered["utility"] - entered["expected_reward_without"]).groupby(entered["advertiser"])
    np.testing.assert_allclose(live.gain, gain.sum().reindex(names, fill_value=0.0), atol=1e-12)
    assert live.gain.min() >= -1e-9  # IR of the gain with the offset (App. C.4)
    shares = live.entry.model_vars
    assert shares["round"] == list(range(25))
    by_round = rows.groupby(["round", "relevant"])["entered"].mean().unstack()
    np.testing.assert_allclose(shares["relevant_entry"], by_round[True].to_numpy())
    np.testing.assert_allclose(shares["irrelevant_entry"], by_round[False].to_numpy())


def test_a_live_market_stops_at_its_round_cap(free_riding, monkeypatch):
    monkeypatch.setattr("market.dashboard.live.MAX_ROUNDS", 3)
    live = market(free_riding)
    for _ in range(3):
        assert live.running
        live.step()
    assert not live.running  # SolaraViz stops playing


def test_reset_closes_the_market_it_replaces(free_riding):
    """SolaraViz's Reset assigns a new market to the session's reactive value; the old one must
    leave Mesa's class-level ``Agent._ids`` (which would keep every market alive)."""
    import mesa

    from market.dashboard.app import Setup

    setup = Setup(free_riding, defaults(free_riding), Engines(cache=False))
    session = setup.reactive_market()
    first = session.value
    first.step()
    assert first in mesa.Agent._ids
    session.value = setup.market()  # what Reset does
    assert first not in mesa.Agent._ids and session.value in mesa.Agent._ids
    session.value.close()


@pytest.mark.slow
def test_the_embedded_model_is_selectable():
    """The engine menu's hf entry builds the embedded LLM (a round on it takes minutes on a
    loaded 2-core CPU: the market on hf is covered by the model's own slow tests)."""
    demo = load_scenario("demo")
    knobs = Knobs(**{**defaults(demo).__dict__, "engine": "hf"})
    engine = Engines(cache=False).get(scenario_for(demo, knobs))
    assert engine.info.engine == "hf" and "SmolLM2" in engine.info.model


def test_the_token_auction_has_no_gain(free_riding):
    live = market(free_riding, mechanism="token auction", relevant=1, irrelevant=1)
    for _ in range(3):
        live.step()
    assert not live.has_gain and live.outcome.mechanism == "token_auction"


# --- panel HTML --------------------------------------------------------------------------------------


def test_highlight_escapes_and_marks_whole_word_mentions():
    text = 'Try <b>musicmastery</b> & "InstaTune"; not MusicMasteryPro or xInstaTune.'
    shown = highlight(text, ["MusicMastery", "InstaTune", "ChordCraft"])
    assert "<b>" not in shown and "&lt;b&gt;" in shown and "&amp;" in shown
    assert shown.count("<mark>") == 2
    assert "<mark>musicmastery</mark>" in shown and "<mark>InstaTune</mark>" in shown


@given(
    st.text(alphabet="ab <>&XYZxyz.", max_size=30),
    st.sampled_from(["X", "Xy", "a", "Zz"]),
)
def test_a_name_is_marked_exactly_when_the_auction_counts_a_mention(text, name):
    assert ("<mark>" in highlight(text, [name])) == mentions(text, name)


def test_table_escapes_cells_and_shows_nan_as_a_dash():
    shown = table({"advertiser": ["<A>"], "utility": [math.nan], "payment": [0.12345]})
    assert "&lt;A&gt;" in shown and "<td>–</td>" in shown and "<td>0.123</td>" in shown


# --- the command line ---------------------------------------------------------------------------------


def one_error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("admarket: error: ")
    return lines[0]


def test_an_unknown_scenario_is_one_line(capsys):
    code = main(["dashboard", "no_such_scenario", "--port", str(browser.free_port())])
    assert "no_such_scenario" in one_error_line(code, capsys.readouterr().err)


def test_a_port_in_use_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dashboard", "--port", str(port)])
    line = one_error_line(code, capsys.readouterr().err)
    assert f"port {port}" in line and "--port" in line


@pytest.mark.parametrize("host", ["999.1.1.1", "not a host"])
def test_a_bad_host_is_one_line(capsys, host):
    code = main(["dashboard", "--host", host])
    assert "--host" in one_error_line(code, capsys.readouterr().err)


def test_a_bad_port_number_is_one_line(capsys):
    code = main(["dashboard", "--port", "70000"])
    assert "--port" in one_error_line(code, capsys.readouterr().err)


# --- in a real browser ------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Debian's chromium: Linux only")
@pytest.mark.timeout(120)
def test_the_page_steps_and_resets_in_headless_chromium():
    """Step runs RENDER_INTERVAL rounds (SolaraViz's rule); the misreport scenario on the
    synthetic engine mentions MusicMastery in the reply of round 4."""
    reason = browser.missing()
    if reason:
        pytest.fail(f"the browser test cannot run: {reason}")
    with browser.server("misreport") as url, browser.chromium() as driver:
        page = browser.Page(driver, url)
        assert page.round() is None and page.reply() == ""
        assert "Step: 0" in page.text()  # SolaraViz's own counter
        replies = []
        for presses in (1, 2, 3):
            assert page.step() == presses * RENDER_INTERVAL - 1
            assert f"Step: {presses * RENDER_INTERVAL}" in page.text()
            replies.append(page.reply())
        assert len(set(replies)) == 3 and all(replies)  # the reply panel follows the rounds
        assert "<mark>MusicMastery</mark>" in replies[0]
        assert "Participation per advertiser" in page.text() and "Σ utility" in page.text()
        page.press("Reset")
        page.wait(lambda: page.round() is None and "Step: 0" in page.text(), "the reset")
        assert page.step() == RENDER_INTERVAL - 1
