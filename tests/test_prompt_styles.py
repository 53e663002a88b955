"""Prompt styles: chosen per engine, measured on the embedded model, and a shared prompt prefix that
changes no number."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.prompt_styles import QUERIES, main, mention_rates
from market.engines import Catalog, SamplingParams, create_engine
from market.engines.chat import EMBEDDED_PROMPT_STYLE, shared_prefix_length
from market.engines.hf.scoring import MIN_SHARED_PREFIX
from market.prompts import PROMPT_STYLES, advertiser_prompt, context_prompt, reference_prompt

SHORT = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=8)


def _synthetic():
    brands = {b.name: b.topics for _, listing in QUERIES for b in listing}
    queries = {q.text: q.topic for q, _ in QUERIES}
    return create_engine(
        {"type": "synthetic"}, catalog=Catalog(brand_topics=brands, query_topics=queries)
    )


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2], [3]]) == 0
    assert shared_prefix_length([[1, 2, 3]]) == 0  # nothing to share with one sequence


def test_mention_rates_are_rates_and_the_synthetic_model_ignores_the_style():
    engine = _synthetic()
    rates = {s: mention_rates(engine, s, replies=16) for s in PROMPT_STYLES}
    first = rates["system"]
    assert first.replies == 16 * len(QUERIES)
    assert set(first.any) == {1, 2, 4} and all(0 <= v <= 1 for v in first.any.values())
    assert first.advertiser > 0 and first.any[1] > 0  # instructed LLMs name brands
    for other in rates.values():  # it reads the prompts' fields, not their wording
        assert (other.any, other.each, other.advertiser) == (
            first.any,
            first.each,
            first.advertiser,
        )


def test_the_measurement_prints_a_table(capsys):
    assert main(["--replies", "2", "--tokens", "2", "--styles", "user"], engine=_synthetic()) == 0
    printed = capsys.readouterr().out
    assert "Mention rates on synthetic-v1" in printed and "highest mention rate: user" in printed


def test_an_engine_whose_model_is_unset_defaults_to_the_measured_style():
    from market.engines.chat import default_prompt_style

    assert default_prompt_style(embedded=True) == EMBEDDED_PROMPT_STYLE
    assert default_prompt_style(embedded=False) == "system"


@pytest.mark.slow
def test_the_embedded_default_style_mentions_brands_more_often_than_system(hf_engine):
    """Issue 10: the default style of the embedded model beats the system-turn instruction."""
    assert hf_engine.info.extra["prompt_style"] == EMBEDDED_PROMPT_STYLE != "system"
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=32)
    kwargs = {"queries": QUERIES[:1], "listed": (1, 2), "replies": 8, "params": params, "seed": 0}
    default = mention_rates(hf_engine, EMBEDDED_PROMPT_STYLE, **kwargs)
    system = mention_rates(hf_engine, "system", **kwargs)
    assert default.score > system.score
    assert default.any[1] >= 0.5


@pytest.mark.slow
def test_the_shared_prefix_changes_no_number(hf_engine):
    """Scores, next-token rows and generation with the shared prefix's KV cache computed once
    equal the unshared path to float tolerance (and sample the same tokens)."""
    query, brands = QUERIES[0]
    prompts = [
        reference_prompt(query, "user"),
        advertiser_prompt(query, brands[0], "user"),
        advertiser_prompt(query, brands[1], "user"),
        context_prompt(query, brands[:2], "user"),
    ]
    ids = [hf_engine.prompt_token_ids(p) for p in prompts]
    assert shared_prefix_length(ids) >= MIN_SHARED_PREFIX
    results = {}
    before = hf_engine.share_prefix
    assert before is (hf_engine.device.type == "cpu")  # the default: shared on a CPU only
    try:
        for shared in (True, False):
            hf_engine.share_prefix = shared
            generated = hf_engine.generate(prompts[1:], 2, SHORT, seed=4)
            hf_engine.clear_generation_memo()
            replies = [c for row in generated for c in row]
            results[shared] = (
                generated,
                hf_engine.score(prompts, replies),
                hf_engine.next_token_logprobs(prompts, [[], [], replies[0].token_ids[:2], []]),
            )
    finally:
        hf_engine.share_prefix = before
    (gen_a, score_a, rows_a), (gen_b, score_b, rows_b) = results[True], results[False]
    assert [[c.token_ids for c in row] for row in gen_a] == [
        [c.token_ids for c in row] for row in gen_b
    ]
    for a, b in zip(
        [c for row in gen_a for c in row], [c for row in gen_b for c in row], strict=True
    ):
        assert a.proposal_logprob == pytest.approx(b.proposal_logprob, abs=1e-3)
        assert a.model_logprob == pytest.approx(b.model_logprob, abs=1e-3)
    np.testing.assert_allclose(score_a, score_b, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(rows_a, rows_b, atol=1e-4)


@pytest.mark.slow
def test_the_prefix_check_finds_the_two_paths_equal_in_float32(hf_engine):
    """benchmarks.prefix_check (docs/gpu.md): in float32 the shared-prefix path draws the same
    replies and scores them alike; the engine's own setting is restored."""
    from benchmarks.prefix_check import compare

    before = hf_engine.share_prefix
    try:
        line = compare(hf_engine, 2, lambda: None)
    finally:
        hf_engine.share_prefix = before
    assert "same replies drawn 2/2" in line, line
    gap = float(line.split("max ")[1].split(",")[0])
    assert gap < 1e-3, line
