"""The run report's returned replies and mention tables (issue 10, item 3).

Runs: free-riding on the synthetic engine (its replies name the music brands in about a third of
the rounds) and MOSAIC against the token auction (no counterfactual, so no utility gain).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from market.auction import mentions
from market.cli import main as admarket
from market.runfolder import read_table
from reports import build_report, load_run
from reports.mentions import mention_by_advertiser, mention_by_entrants
from reports.replies import (
    MENTION,
    entrant_table,
    highlight_mentions,
    returned_allocation,
    sample_rounds,
)

SYNTHETIC = ["--set", "engine.type=synthetic", "--no-report", "--no-cache"]
MARK = re.compile(r'<mark style="background:#[0-9a-f]{6}" title="([^"]*)">([^<]*)</mark>')


def _run(out: Path, *args: str) -> Path:
    assert admarket([*args, "--out", str(out), *SYNTHETIC]) == 0
    return out


@pytest.fixture(scope="module")
def free_riding(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("runs") / "fr", "run", "free_riding", "--rounds", "40")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tvm"
    return _run(out, "sweep", "token_vs_mosaic", "--seeds", "2", "--rounds", "12")


def _cards(text: str) -> list[str]:
    return re.findall(r'<div class="reply-card">.*?</div>\n</div>', text, flags=re.S)


def _quoted_reply(card: str) -> str:
    return re.search(r'<blockquote class="reply">(.*?)</blockquote>', card, flags=re.S).group(1)


def test_report_marks_every_entrant_the_market_counts_as_mentioned(free_riding):
    data = load_run(free_riding)
    text = build_report(free_riding).read_text()
    assert "<h2>Returned replies</h2>" in text and "Brand mentions and dilution" in text
    sample = sample_rounds(data)
    cards = _cards(text)
    assert len(cards) == len(sample)
    marked_any = False
    for card, row in zip(cards, sample.itertuples(), strict=True):
        assert f"round {row.round} · seed {row.seed} · {row.why}" in card
        said = data.rounds.set_index(["variant", "seed", "round"]).loc[
            (row.variant, row.seed, row.round), "mentioned"
        ]
        marks = MARK.findall(_quoted_reply(card))
        assert {title for title, _ in marks} == set(said)
        assert all(shown.casefold() == title.casefold() for title, shown in marks)
        marked_any |= bool(marks)
    assert marked_any, "no sampled reply of this run mentions an entrant: the test checks nothing"


def test_highlighting_agrees_with_the_market_on_every_round(free_riding):
    data = load_run(free_riding)
    assert (data.rounds["mentioned"].map(len) > 0).sum() >= 5
    for row in data.rounds.itertuples():
        entrants = list(row.entrants)
        marked = {
            title for title, _ in MARK.findall(highlight_mentions(row.reply_text, entrants, {}))
        }
        assert marked == set(row.mentioned) == {n for n in entrants if mentions(row.reply_text, n)}


def test_sampled_rounds_are_first_last_and_revenue_extremes(free_riding, mixed):
    added_mention_round = False
    for run in (free_riding, mixed):
        data = load_run(run)
        sample = sample_rounds(data)
        seed = min(data.rounds["seed"])
        assert set(sample["seed"]) == {seed}
        for variant in data.variants:
            r = data.rounds[(data.rounds.variant == variant) & (data.rounds.seed == seed)]
            r = r.sort_values("round")
            entered = r[r.n_entrants > 0]
            expected: dict[int, list[str]] = {}
            for reason, rnd in (
                ("first", r["round"].min()),
                ("last", r["round"].max()),
                ("highest revenue", r.loc[r.revenue == r.revenue.max(), "round"].min()),
                (
                    "lowest revenue",
                    entered.loc[entered.revenue == entered.revenue.min(), "round"].min(),
                ),
            ):
                expected.setdefault(int(rnd), []).append(reason)
            said = r[r.mentioned.map(len) > 0]
            if len(said) and not set(said["round"]) & set(expected):
                expected.setdefault(int(said["round"].min()), []).append(MENTION)
                added_mention_round = True
            got = sample[sample.variant == variant]
            assert list(got["round"]) == sorted(expected)  # each round once, in order
            assert dict(zip(got["round"], got["why"], strict=True)) == {
                k: ", ".join(v) for k, v in expected.items()
            }
    assert added_mention_round  # some variant's four picks mention nobody: the 5th pick is tested


def test_entrant_money_and_allocation_come_from_the_tables(free_riding, mixed):
    for run in (free_riding, mixed):
        data = load_run(run)
        adv, auc = data.advertisers, data.auctions
        for row in sample_rounds(data).itertuples():
            key = (
                (adv.variant == row.variant) & (adv.seed == row.seed) & (adv["round"] == row.round)
            )
            inside = adv[key & adv.entered].set_index("advertiser")
            table = entrant_table(data, row.variant, row.seed, row.round).set_index("advertiser")
            assert set(table.index) == set(inside.index)
            inside = inside.loc[table.index]
            np.testing.assert_allclose(table["payment"], inside.payment)
            np.testing.assert_allclose(table["utility (E[r] − p)"], inside.utility)
            np.testing.assert_allclose(
                table["utility gain"], inside.utility - inside.expected_reward_without
            )
            mech = data.rounds.loc[
                (data.rounds.variant == row.variant) & (data.rounds.seed == row.seed), "mechanism"
            ].iloc[0]
            if len(table):
                assert np.isfinite(table["utility gain"]).all() == (mech == "mosaic")
            hit = auc[
                (auc.variant == row.variant)
                & (auc.seed == row.seed)
                & (auc["round"] == row.round)
                & auc.returned
            ]
            assert len(hit) == 1
            assert returned_allocation(data, row.variant, row.seed, row.round) == pytest.approx(
                hit.allocation.iloc[0]
            )


def test_mention_tables_equal_a_direct_count(free_riding, mixed):
    for run in (free_riding, mixed):
        data = load_run(run)
        adv, rounds = read_table(run, "advertisers"), read_table(run, "rounds")
        by_adv = mention_by_advertiser(data).set_index(["variant", "advertiser"])
        counted = {}
        for a in adv[adv.entered].itertuples():
            n, m = counted.get((a.variant, a.advertiser), (0, 0))
            counted[(a.variant, a.advertiser)] = (n + 1, m + int(a.mentioned))
        assert set(by_adv.index) == set(counted)
        for key, (n, m) in counted.items():
            row = by_adv.loc[key]
            assert (row.rounds_entered, row.mentions) == (n, m)
            assert row.mention_rate == pytest.approx(m / n)
            assert row.mention_low <= row.mention_rate <= row.mention_high

        by_n = mention_by_entrants(data).set_index(["variant", "n_entrants"])
        tally: dict[tuple[str, int], list[int]] = {}
        for r in rounds.itertuples():
            if r.n_entrants == 0:
                continue
            said = sum(1 for name in r.entrants if name in set(r.mentioned))
            t = tally.setdefault((r.variant, r.n_entrants), [0, 0, 0])
            t[0], t[1], t[2] = t[0] + 1, t[1] + said, t[2] + (said > 0)
        assert set(by_n.index) == set(tally)
        for (variant, n), (count, said, any_) in tally.items():
            row = by_n.loc[(variant, n)]
            assert row.rounds == count and row.entrant_rounds == n * count
            assert row.mentions_per_entrant == pytest.approx(said / (n * count))
            assert row.share_any_mention == pytest.approx(any_ / count)


def test_reply_text_and_query_are_escaped(free_riding, tmp_path):
    run = Path(shutil.copytree(free_riding, tmp_path / "hostile"))
    rounds = read_table(run, "rounds")
    first = (rounds["round"] == 0) & (rounds.variant == rounds.variant.iloc[0])
    name = str(rounds.loc[first, "entrants"].iloc[0][0])
    reply = f"<script>alert('x')</script> {name.upper()} & {name}'s <b>deal</b> {name}ville"
    rounds.loc[first, "reply_text"] = reply
    rounds.loc[first, "query"] = "Is <img src=x onerror=alert(1)> safe?"
    rounds["mentioned"] = [
        [n for n in e if mentions(t, n)]
        for e, t in zip(rounds.entrants, rounds.reply_text, strict=True)
    ]
    if (run / "rounds").is_dir():
        shutil.rmtree(run / "rounds")
    rounds.to_parquet(run / "rounds.parquet")
    text = build_report(run).read_text()
    assert "<script>" not in text and "<b>deal" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "Is &lt;img src=x onerror=alert(1)&gt; safe?" in text
    quoted = _quoted_reply(_cards(text)[0])
    assert [shown for _, shown in MARK.findall(quoted)] == [name.upper(), name]  # not "...ville"
    assert f"{name}ville" in quoted and "&amp;" in quoted


def test_highlight_rules():
    colours = {"Kitchen Fix": "#aabbcc", "Fix": "#ddeeff", "A&B": "#112233"}
    out = highlight_mentions(
        "kitchen fix beats Fix; Fixer no; A&B, a&b! <i>", list(colours), colours
    )
    assert MARK.findall(out) == [
        ("Kitchen Fix", "kitchen fix"),
        ("Fix", "Fix"),
        ("A&amp;B", "A&amp;B"),
        ("A&amp;B", "a&amp;b"),
    ]
    assert 'style="background:#aabbcc"' in out and "Fixer no" in out and "&lt;i&gt;" in out
    assert highlight_mentions("<x> y", [], {}) == "&lt;x&gt; y"
