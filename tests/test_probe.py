"""`admarket probe`: listings, one generate call per (style, k), rates equal a direct count, the
dilution curve on the synthetic engine, the files it writes, one-line errors; and the embedded
model (slow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market.auction import mentions
from market.cli import main as cli_main
from market.engines import Catalog, SamplingParams, create_engine
from market.probe import (
    ProbeSettings,
    catalog_queries,
    listings,
    main,
    probe_replies,
    summarize,
)
from scenarios.compact import load_catalog

SHORT = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=6)


def _synthetic():
    catalog = load_catalog()
    return create_engine(
        {"type": "synthetic"},
        catalog=Catalog(
            brand_topics={b.name: b.topics for b in catalog.brands},
            query_topics={q.text: q.topic for q in catalog.queries},
        ),
    )


class CountingEngine:
    """Wraps an engine and records the size of every generate call."""

    def __init__(self, engine):
        self.engine = engine
        self.info = engine.info
        self.calls: list[int] = []

    def generate(self, prompts, n, params, seed):
        self.calls.append(len(prompts))
        return self.engine.generate(prompts, n, params, seed)


def test_queries_take_one_topic_after_another():
    catalog = load_catalog()
    queries = catalog_queries(catalog, 12)
    topics = list(dict.fromkeys(q.topic for q in catalog.queries))
    assert [q.topic for q in queries[:10]] == topics
    assert queries[10].topic == topics[0] and queries[10] != queries[0]
    with pytest.raises(ValueError, match="--queries must be at most 30"):
        catalog_queries(catalog, 31)


def test_listings_put_one_relevant_brand_first_and_are_reproducible():
    catalog = load_catalog()
    queries = catalog_queries(catalog, 10)
    drawn = listings(catalog, queries, 3, 8, seed=5)
    assert len(drawn) == 30
    for x in drawn:
        assert len({b.name for b in x.brands}) == 8
        assert x.brands[0].is_relevant_to(x.query)
        assert not any(b.is_relevant_to(x.query) for b in x.brands[1:])
    assert drawn == listings(catalog, queries, 3, 8, seed=5)
    assert drawn != listings(catalog, queries, 3, 8, seed=6)
    # listing seeds draw different brands for the same query
    assert {x.brands for x in drawn if x.query == queries[0]} != {drawn[0].brands}


def test_one_generate_call_per_style_and_k_and_rates_equal_a_direct_count():
    engine = CountingEngine(_synthetic())
    settings = ProbeSettings(
        styles=("user", "system"), queries=5, seeds=2, replies=3, params=SHORT, seed=1
    )
    replies, seconds = probe_replies(engine, settings)
    # 4 values of k and π_i, for each of 2 styles; each call holds every (query, seed) listing
    assert engine.calls == [10] * 10 and len(seconds) == 10
    assert len(replies) == 10 * 10 * 3
    for row in replies.sample(40, random_state=0).itertuples():
        listed = row.listed.split("; ")
        named = [b for b in listed if mentions(row.text, b)]
        assert row.n_named == len(named) and row.any == bool(named)
        assert row.relevant == (listed[0] in named)
    summary = summarize(replies)
    for row in summary.itertuples():
        part = replies[(replies["style"] == row.style) & (replies["prompt"] == row.prompt)]
        part = part[part["k"] == row.k]
        assert row.replies == len(part) == 30
        assert row.per_entrant == pytest.approx(part["n_named"].sum() / (30 * row.k))
        assert row.any == pytest.approx(part["any"].mean())
        assert row.relevant == pytest.approx(part["relevant"].mean())
        others = (part["n_named"] - part["relevant"]).sum()
        if row.k > 1:
            assert row.others == pytest.approx(others / (30 * (row.k - 1)))
        else:
            assert np.isnan(row.others) and row.others_trials == 0
        assert row.any_low <= row.any <= row.any_high


def test_the_synthetic_model_shows_dilution():
    settings = ProbeSettings(styles=("user",), queries=10, seeds=2, replies=8, params=SHORT)
    summary = summarize(probe_replies(_synthetic(), settings)[0])
    context = summary[summary["prompt"] == "context"].set_index("k")
    per_entrant = context["per_entrant"].to_numpy()
    assert all(a > b for a, b in zip(per_entrant, per_entrant[1:], strict=False))
    assert context.loc[1, "relevant"] > context.loc[8, "relevant_high"]
    assert context.loc[1, "per_entrant"] > 0.5


def test_main_prints_the_table_and_writes_csv_and_figure(tmp_path, capsys):
    out = tmp_path / "probe"
    argv = ["--queries", "3", "--replies", "2", "--tokens", "4", "--listed", "1,2", "--out"]
    assert main([*argv, str(out)], engine=_synthetic()) == 0
    printed = capsys.readouterr().out
    assert "Mentions on synthetic-v1" in printed and "π_con" in printed and "π_i" in printed
    summary = pd.read_csv(out / "probe.csv")
    assert list(summary["k"]) == [1, 2, 1] and set(summary["style"]) == {"system"}
    assert len(pd.read_csv(out / "replies.csv")) == 3 * 3 * 2
    assert (out / "dilution.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--style", "loud"], "--style: unknown ['loud']"),
        (["--queries", "0"], "--queries must be >= 1"),
        (["--queries", "99"], "--queries must be at most 30"),
        (["--listed", "1,x"], "--listed"),
        (["--tokens", "0"], "--tokens must be >= 1"),
        (["--engine", "synthetic", "--model", "x"], "--model names an hf or vLLM model"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv, message, capsys):
    engine = None if "--engine" in argv else _synthetic()
    assert main(argv, engine=engine) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("admarket probe: error:") and message in err


def test_the_cli_forwards_to_the_probe(capsys):
    assert cli_main(["probe", "--help"]) == 0
    assert "--replies" in capsys.readouterr().out


@pytest.mark.slow
def test_the_embedded_model_names_a_lone_entrant_more_than_one_of_eight(hf_engine, tmp_path):
    """The real model's dilution on a fixed seed: the relevant entrant listed alone is named
    more often than when seven others share the prompt, and π_i names brand i."""
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=32)
    settings = ProbeSettings(
        styles=("user",), listed=(1, 8), queries=4, seeds=1, replies=4, params=params
    )
    summary = summarize(probe_replies(hf_engine, settings)[0]).set_index(["prompt", "k"])
    alone, crowded = summary.loc[("context", 1)], summary.loc[("context", 8)]
    assert alone["relevant"] > crowded["relevant"]
    assert alone["per_entrant"] > 2 * crowded["per_entrant"]
    assert summary.loc[("advertiser", 1), "relevant"] > 0


def test_the_relevant_entrant_can_be_listed_last():
    engine = CountingEngine(_synthetic())
    params = dict(styles=("user",), listed=(1, 4), queries=3, replies=2, params=SHORT)
    first = probe_replies(engine, ProbeSettings(**params))[0]
    last = probe_replies(engine, ProbeSettings(**params, relevant_at="last"))[0]
    for a, b in zip(
        first[first["k"] == 4].itertuples(), last[last["k"] == 4].itertuples(), strict=True
    ):
        listed_first, listed_last = a.listed.split("; "), b.listed.split("; ")
        assert listed_last == [*listed_first[1:], listed_first[0]]
        assert b.relevant == mentions(b.text, listed_first[0])
    assert list(first["listed"][first["k"] == 1]) == list(last["listed"][last["k"] == 1])
    assert main(["--relevant-at", "middle"], engine=_synthetic()) == 2
