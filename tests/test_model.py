"""The market model on the synthetic engine: rounds, histories, data collection, random streams."""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.records import RoundRecord
from market.columns import (
    ADVERTISER_COLUMNS,
    DOC_TABLES,
    ROUND_COLUMNS,
    ROUNDS,
    RUN_TABLES,
    TABLE_COLUMNS,
    render_docs,
)
from market.engines.synthetic import SyntheticEngine
from market.history import MIN_KEPT, RecentRecords, kept_rounds
from market.model import (
    ADVERTISER_REPORTERS,
    ROUND_REPORTERS,
    MarketModel,
    RandomStreams,
)
from scenarios.loader import expand_variants, scenario_from_dict

QUERIES = [
    {"text": "How can I learn to play the guitar?", "topic": "music"},
    {"text": "How do I cook rice perfectly?", "topic": "cooking", "weight": 2.0},
]
ADVERTISERS = [
    {
        "name": "MusicMastery",
        "description": "offering online music lessons",
        "topics": ["music"],
        "policy": {"type": "epsilon_greedy", "kwargs": {"epsilon": 0.2}},
    },
    {
        "name": "KitchenFix",
        "description": "producing kitchen appliances",
        "topics": ["cooking"],
        "value": 2.0,
        "policy": {"type": "threshold", "kwargs": {"cost": 0.5}},
    },
    {
        "name": "InstaTune",
        "description": "selling musical instruments",
        "topics": ["music"],
        "policy": {"type": "logit"},
        "strategy": {"type": "noise", "kwargs": {"sigma": 0.2}},
    },
    {
        "name": "EasySwitch",
        "description": "offering a VPN service",
        "topics": ["privacy"],
        "policy": {"type": "imitation"},
    },
]


def scenario(**changes):
    data = {
        "name": "unit",
        "description": "a small market for unit tests",
        "rounds": 12,
        "seed": 5,
        "engine": {"type": "synthetic"},
        "mechanism": {"type": "mosaic", "kwargs": {"candidates": 4, "offset": True}},
        "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 8},
        "queries": QUERIES,
        "advertisers": ADVERTISERS,
        "network": {"type": "ring"},
        "outside_option": True,
        "variants": {
            "offset": {"mechanism.kwargs.offset": True},
            "no_offset": {"mechanism.kwargs.offset": False},
        },
    }
    data.update(changes)
    return scenario_from_dict(data)


@pytest.fixture(scope="module")
def engine():
    return SyntheticEngine(scenario().catalog())


def run(model: MarketModel, rounds: int) -> MarketModel:
    for _ in range(rounds):
        model.step()
    return model


def frames(model: MarketModel) -> dict[str, pd.DataFrame]:
    return model.drain_rows().frames()


def test_collected_columns_cover_what_the_reports_read(engine):
    assert set(ROUND_COLUMNS) <= set(ROUND_REPORTERS)
    assert set(ADVERTISER_COLUMNS) <= set(ADVERTISER_REPORTERS)
    tables = frames(run(MarketModel(scenario(), engine), 2))
    for name, columns in TABLE_COLUMNS.items():
        assert len(tables[name]) > 0, name
        assert set(columns) <= set(tables[name].columns), (
            name,
            set(columns) - set(tables[name].columns),
        )


def test_the_table_spec_drives_reporters_schema_and_docs(engine):
    """One spec (market/columns.py): reporter names and order, collected columns, docs/data.md."""
    assert tuple(ROUND_REPORTERS) == ROUNDS.names
    assert tuple(ADVERTISER_REPORTERS) == RUN_TABLES["advertisers"].names
    with pytest.raises(ValueError, match="without a reporter: \\['seed'\\]"):
        ROUNDS.named({n: len for n in ROUNDS.names if n != "seed"})
    with pytest.raises(ValueError, match="not in the spec: \\['bogus'\\]"):
        ROUNDS.named({**{n: len for n in ROUNDS.names}, "bogus": len})
    tables = frames(run(MarketModel(scenario(), engine), 2))
    for name, spec in RUN_TABLES.items():
        assert tuple(tables[name].columns) == spec.names, name
    docs = Path(__file__).parents[1] / "docs"
    texts = [(docs / name).read_text(encoding="utf-8") for name in ("data.md", "replication.md")]
    for text in texts:
        assert render_docs(text) == text, (
            "docs are stale: python -m market.columns docs/data.md docs/replication.md"
        )
    for name in DOC_TABLES:
        assert any(f"<!-- columns: {name} -->" in text for text in texts), name


def test_a_round_records_histories_and_rows_consistently(engine):
    model = run(MarketModel(scenario(), engine), 6)
    tables = frames(model)
    rounds, advertisers, auctions = tables["rounds"], tables["advertisers"], tables["auctions"]
    assert list(rounds["round"]) == list(range(6))
    assert len(advertisers) == 6 * len(ADVERTISERS)
    assert set(rounds["variant"]) == {"base"} and set(rounds["seed"]) == {5}
    for agent in model.advertisers:
        assert [r.round for r in agent.history] == list(range(6))
    for t, row in rounds.iterrows():
        these = advertisers[advertisers["round"] == t].set_index("advertiser")
        assert list(these.index) == [a["name"] for a in ADVERTISERS]
        assert sorted(row["entrants"]) == sorted(these.index[these["entered"]])
        assert row["n_entrants"] == len(row["entrants"])
        relevant = these.loc[row["entrants"], "relevant"]
        assert row["n_relevant_entrants"] == relevant.sum()
        assert row["n_relevant_entrants"] + row["n_irrelevant_entrants"] == row["n_entrants"]
        assert row["revenue"] == pytest.approx(these["payment"].sum())
        assert row["welfare"] == pytest.approx(these["realized_reward"].sum())
        candidates = auctions[auctions["round"] == t]
        assert len(candidates) == row["n_candidates"] == 4
        assert candidates["allocation"].sum() == pytest.approx(1.0)
        assert candidates["returned"].sum() == 1
        assert candidates.loc[candidates["returned"], "text"].item() == row["reply_text"]
        out = these[~these["entered"]]
        assert (out[["payment", "utility", "expected_reward"]] == 0).all().all()
        assert out["expected_reward_without"].isna().all() and out["offset"].isna().all()
        assert out["outside_reward"].notna().all()  # the outside option is on
        inside = these[these["entered"]]
        assert inside["outside_reward"].isna().all()
        np.testing.assert_allclose(inside["utility"], inside["expected_reward"] - inside["payment"])
        np.testing.assert_allclose(
            inside["realized_utility"], inside["realized_reward"] - inside["payment"]
        )


def test_relevance_comes_from_the_topic_graph(engine):
    model = run(MarketModel(scenario(), engine), 5)
    advertisers = frames(model)["advertisers"]
    rounds = frames(model)  # a second drain has nothing new
    assert rounds["rounds"].empty
    topics = {a["name"]: set(a["topics"]) for a in ADVERTISERS}
    graph = model.scenario.topics_graph()
    for row in advertisers.itertuples():
        query_topic = model.draw_query(row.round).topic
        assert row.relevant == (query_topic in topics[row.advertiser])
        assert row.relevant == graph.has_edge(row.advertiser, query_topic)


def test_queries_follow_the_weighted_mix(engine):
    model = MarketModel(scenario(), engine)
    topics = [model.draw_query(t).topic for t in range(600)]
    assert topics.count("cooking") / 600 == pytest.approx(2 / 3, abs=0.06)


def test_the_query_draw_is_numpys_weighted_choice(engine):
    """draw_query inverts the same normalised CDF Generator.choice(p=...) uses: same queries."""
    weighted = [{**q, "weight": w} for q, w in zip(QUERIES * 2, (0.5, 2.0, 1.0, 3.5), strict=True)]
    weighted = [{**q, "text": f"{q['text']} ({k})"} for k, q in enumerate(weighted)]
    model = MarketModel(scenario(queries=weighted), engine)
    p = np.array([q["weight"] for q in weighted]) / 7.0
    for t in range(300):
        expected = model.streams.rng("query", t).choice(len(weighted), p=p)
        assert model.draw_query(t).text == weighted[expected]["text"]
    model.close()


def test_random_streams_are_addressed_by_round_and_independent():
    streams = RandomStreams(3)
    again = RandomStreams(3)
    assert streams.engine_seed(10) == again.engine_seed(10)
    assert streams.rng("query", 4).random() == again.rng("query", 4).random()
    assert streams.engine_seed(10) != streams.engine_seed(11)
    assert streams.engine_seed(1) != RandomStreams(4).engine_seed(1)
    assert streams.rng("reply", 2).random() != streams.rng("query", 2).random()
    with pytest.raises(ValueError, match="seed"):
        RandomStreams(-1)


def test_offset_on_and_off_share_queries_and_candidates_until_entry_differs(engine):
    """Common random numbers: the engine seed of round t does not depend on entry decisions."""
    variants = expand_variants(scenario(rounds=30))
    tables = {
        name: frames(run(MarketModel(v, engine, variant=name), 30)) for name, v in variants.items()
    }
    on, off = tables["offset"], tables["no_offset"]
    assert list(on["rounds"]["query"]) == list(off["rounds"]["query"])
    same_entrants = [
        list(a) == list(b)
        for a, b in zip(on["rounds"]["entrants"], off["rounds"]["entrants"], strict=True)
    ]
    first_difference = same_entrants.index(False) if False in same_entrants else len(same_entrants)
    assert first_difference >= 2  # both variants enter, then try staying out, in the same rounds
    for t in range(first_difference):
        texts_on = on["auctions"].loc[on["auctions"]["round"] == t, "text"].tolist()
        texts_off = off["auctions"].loc[off["auctions"]["round"] == t, "text"].tolist()
        assert texts_on == texts_off
    # payments differ (the offset), so the variants are really different
    assert not np.allclose(on["rounds"]["revenue"][:2], off["rounds"]["revenue"][:2])


def test_same_seed_same_rows_different_seed_different_rows(engine):
    def table(seed):
        model = run(MarketModel(scenario(), engine, seed=seed), 8)
        return frames(model)["advertisers"].drop(columns=["seed"])

    pd.testing.assert_frame_equal(table(1), table(1))
    assert not table(1).equals(table(2))


def test_restore_continues_exactly_like_an_uninterrupted_model(engine):
    full = run(MarketModel(scenario(), engine), 10)
    expected = frames(full)
    histories = {a.name: a.history[:6] for a in full.advertisers}
    resumed = MarketModel(scenario(), engine)
    resumed.restore(histories)
    assert resumed.round == 6
    got = frames(run(resumed, 4))
    for table in ("rounds", "advertisers", "auctions"):
        want = expected[table][expected[table]["round"] >= 6].reset_index(drop=True)
        have = got[table].reset_index(drop=True)
        timing = [c for c in ("engine_seconds", "round_seconds") if c in want.columns]
        pd.testing.assert_frame_equal(want.drop(columns=timing), have.drop(columns=timing))


def test_restore_refuses_histories_that_the_policies_would_not_reproduce(engine):
    full = run(MarketModel(scenario(), engine), 4)
    histories = {a.name: list(a.history) for a in full.advertisers}
    flipped = histories["MusicMastery"][0]
    histories["MusicMastery"][0] = RoundRecord(
        round=0, entered=not flipped.entered, relevant=flipped.relevant
    )
    with pytest.raises(RuntimeError, match="resume replay diverged"):
        MarketModel(scenario(), engine).restore(histories)
    uneven = {a.name: list(a.history) for a in full.advertisers}
    uneven["KitchenFix"] = uneven["KitchenFix"][:2]
    with pytest.raises(ValueError, match="same rounds"):
        MarketModel(scenario(), engine).restore(uneven)


def targeted_scenario():
    advertisers = [
        {**a, "policy": {**a["policy"], "kwargs": {**a["policy"].get("kwargs", {}),
                                                   "targeting": "topic"}}}
        for a in ADVERTISERS
    ]  # fmt: skip
    return scenario(advertisers=advertisers, rounds=30)


def test_records_and_rows_carry_the_query_topic_and_targeting_splits_by_it(engine):
    model = run(MarketModel(targeted_scenario(), engine), 16)
    tables = frames(model)
    topics = dict(zip(tables["rounds"]["round"], tables["rounds"]["topic"], strict=True))
    assert (tables["advertisers"]["topic"] == tables["advertisers"]["round"].map(topics)).all()
    for agent in model.advertisers:
        assert [r.topic for r in agent.history] == [topics[r.round] for r in agent.history]
        assert set(agent.policy.inner) == set(topics.values())
        for topic, inner in agent.policy.inner.items():
            # at its topic's last round it had read every earlier round of that topic, no other
            assert inner._seen == sum(t == topic for t in topics.values()) - 1


def test_restore_with_topic_targeting_continues_exactly_like_an_uninterrupted_model(engine):
    full = run(MarketModel(targeted_scenario(), engine), 14)
    expected = frames(full)
    histories = {a.name: a.history[:7] for a in full.advertisers}
    resumed = MarketModel(targeted_scenario(), engine)
    resumed.restore(histories)
    got = frames(run(resumed, 7))
    for table in ("rounds", "advertisers", "auctions"):
        want = expected[table][expected[table]["round"] >= 7].reset_index(drop=True)
        have = got[table].reset_index(drop=True)
        timing = [c for c in ("engine_seconds", "round_seconds") if c in want.columns]
        pd.testing.assert_frame_equal(want.drop(columns=timing), have.drop(columns=timing))


def test_observation_graph_gives_each_agent_its_neighbors(engine):
    model = MarketModel(scenario(), engine)
    ring = {a.name: sorted(n.name for n in a.neighbors) for a in model.advertisers}
    assert ring["MusicMastery"] == ["EasySwitch", "KitchenFix"]
    assert all(len(names) == 2 for names in ring.values())
    lonely = MarketModel(scenario(network={"type": "none"}), engine)
    assert all(a.neighbors == () for a in lonely.advertisers)


def test_without_outside_option_absent_advertisers_record_nan(engine):
    model = run(MarketModel(scenario(outside_option=False), engine), 8)
    advertisers = frames(model)["advertisers"]
    assert advertisers["outside_reward"].isna().all()
    assert (~advertisers["entered"]).any()  # some advertiser stayed out at least once


def test_nan_floats_are_stored_as_nulls_in_the_drained_tables(engine):
    """The run folder stores a missing number as null, as pandas writes NaN, whether a column
    mixes NaN with numbers (offset, expected_reward_without) or holds only NaN."""
    with MarketModel(scenario(outside_option=False), engine) as model:
        advertisers = run(model, 8).drain_rows().advertisers
    entered = np.array(advertisers["entered"].to_pylist())
    assert entered.any() and not entered.all()
    for name in ("offset", "expected_reward_without", "outside_reward"):
        column = advertisers[name].combine_chunks()
        values = column.to_numpy(zero_copy_only=False)
        assert not np.isnan(values[column.is_valid().to_numpy(zero_copy_only=False)]).any()
        missing = ~entered if name != "outside_reward" else np.ones_like(entered)
        assert column.null_count == missing.sum()
        np.testing.assert_array_equal(column.is_null().to_numpy(zero_copy_only=False), missing)


def test_token_auction_rows(engine):
    model = MarketModel(
        scenario(
            variants={},
            mechanism={"type": "token_auction", "kwargs": {"rule": "linear", "max_tokens": 5}},
        ),
        engine,
    )
    tables = frames(run(model, 3))
    rounds = tables["rounds"]
    assert set(rounds["mechanism"]) == {"token_auction"} and set(rounds["generator"]) == {"token"}
    assert (rounds["n_candidates"] == 1).all() and (rounds["ess"] == 1.0).all()
    inside = tables["advertisers"][tables["advertisers"]["entered"]]
    assert inside["offset"].isna().all() and inside["expected_reward_without"].isna().all()
    assert (inside["payment"] >= 0).all()
    assert (tables["auctions"]["returned"]).all()


def test_bad_settings_name_the_field(engine):
    bad = scenario().model_copy(update={"seed": -1})
    with pytest.raises(ValueError, match="seed"):
        MarketModel(bad, engine)


def test_replayed_histories_read_like_list_prefixes():
    from agents.advertiser import _Prefix

    records = list(range(10))
    prefix = _Prefix(records, 6)
    assert len(prefix) == 6 and list(prefix) == records[:6]
    assert prefix[-2:] == [4, 5] and prefix[3:] == [3, 4, 5] and prefix[-1] == 5
    with pytest.raises(IndexError):
        prefix[6]


def test_a_closed_model_is_freed(engine):
    """Mesa 3.3's class-level Agent._ids keeps every model alive until the model is closed."""
    with MarketModel(scenario(), engine) as model:
        run(model, 2)
        alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
    before = _live_models()
    with pytest.raises(ValueError, match="unknown policy"):
        _broken_model(engine)
    assert _live_models() == before  # a model that failed to build is not kept either


def _live_models() -> int:
    gc.collect()
    return sum(type(o) is MarketModel for o in gc.get_objects())


def _broken_model(engine):
    """A model whose last advertiser fails to build, after the others have registered."""
    good = scenario()
    bad = good.advertisers[-1].model_copy(
        update={"policy": good.advertisers[-1].policy.model_copy(update={"type": "bogus"})}
    )
    return MarketModel(
        good.model_copy(update={"advertisers": [*good.advertisers[:-1], bad]}), engine
    )


def _traced_growth(model, *, rounds: int, drain_every: int, warm: int):
    """Run ``rounds`` rounds, draining every ``drain_every``; return the bytes tracemalloc sees
    allocated from the end of round ``warm`` to the end, and the rows drained at round ``warm``."""
    tracemalloc.start()
    try:
        for t in range(rounds):
            model.step()
            if t % drain_every == drain_every - 1:
                drained = model.drain_rows()
            if t == warm - 1:
                at_warm = drained
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, at_warm
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_over_rounds(engine):
    """Histories keep their latest rounds and drained rows leave the collector, so a model's
    memory does not grow with the rounds it has run (issue 9 item 6, issue 11 item 3)."""
    always = [
        {**a, "policy": {"type": "always"}, "strategy": {"type": "truthful"}} for a in ADVERTISERS
    ]
    model = MarketModel(scenario(advertisers=always, queries=QUERIES[:1], rounds=10_000), engine)
    # checkpoints 12 x 32 rounds apart: the same phase of the trim
    growth, _ = _traced_growth(model, rounds=512, drain_every=16, warm=128)
    # unbounded histories alone would add ~1.5 KB a round here (4 advertisers): ~580 KB over
    # these 384 rounds; what remains is small allocations inside numpy and pandas (~50 B a round)
    assert growth < 60_000, growth
    assert model.datacollector.get_model_vars_dataframe().empty  # drained rows are gone
    history = model.advertisers[0].history
    assert len(history) == 512 and history[-1].round == 511
    assert [r.round for r in history[-3:]] == [509, 510, 511]
    with pytest.raises(IndexError, match="keeps its last"):
        history[0]
    model.close()


def test_memory_growth_over_100_000_rounds_stays_under_100_mb():
    """Entrant sets that change every round keep the engine's table caches and the auction's
    prompt caches turning over; once every set has been seen they stop growing, and nothing else
    lasts past a drain. The growth of 1,000 rounds, taken once the caches are warm and
    extrapolated to the 99,000 rounds from round 1,000 to 100,000, stays under 100 MB (issue 9
    item 6): at most about 1 KB a round. Histories that kept every record, or rows kept after a
    drain, would each break it."""
    coins = [
        {**a, "policy": {"type": "epsilon_greedy", "kwargs": {"epsilon": 1.0}}} for a in ADVERTISERS
    ]
    market = scenario(advertisers=coins, rounds=100_000)
    # caches of 8 prompts fill within the first 300 rounds: what grows after them is a leak
    model = MarketModel(market, SyntheticEngine(market.catalog(), cache_size=8))
    try:
        growth, drained = _traced_growth(model, rounds=1_300, drain_every=50, warm=300)
    finally:
        model.close()
    entrant_sets = {tuple(names) for names in drained.rounds["entrants"].to_pylist()}
    assert len(entrant_sets) > 10  # in 50 rounds: the entrants keep changing
    assert growth * 99_000 / 1_000 < 100 * 2**20, growth


def test_a_drawing_strategys_new_bidder_each_round_reuses_the_rounds_score_prompts(engine):
    """A report strategy that draws gets a fresh Bidder every round; its Brand stays the same,
    so the auction's round cast (its score prompts) is found again instead of filling the cache with a new
    entry (and the round's Generators) every round."""
    from market import auction

    model = MarketModel(scenario(), engine)
    try:
        noisy = next(iter(model._drawing_strategies))
        first, second = model._bidder(noisy), model._bidder(noisy)
        assert first is not second and first.brand is second.brand
        query = model._prompt_queries[0]
        cast = auction._cast(query, [first], [], "system")
        assert auction._cast(query, [second], [], "system") is cast
    finally:
        model.close()


def test_recent_records_read_like_the_full_list():
    records = [RoundRecord(round=t, entered=t % 2 == 0, relevant=True) for t in range(100)]
    recent = RecentRecords(10)
    for record in records:
        recent.append(record)
        assert len(recent) == record.round + 1 and recent[-1] is record
    assert recent[-10:] == records[-10:] and recent[95:] == records[95:]
    assert recent[99] is records[99] and recent[-3] is records[97]
    assert list(recent)[-10:] == records[-10:] and len(list(recent)) <= 20
    with pytest.raises(IndexError, match="keeps its last 10"):
        recent[:50]
    with pytest.raises(IndexError, match="out of range"):
        recent[100]
    assert kept_rounds([{"type": "imitation", "kwargs": {"window": 40}}]) == 80
    assert kept_rounds([{"type": "always"}]) == MIN_KEPT
