"""The synthetic engine's normalisers (`normaliser.repeat_normalisers`) are the direct
logsumexp's numbers bit for bit, and a batch of prompts' chains are each prompt's own."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from market.engines import create_engine
from market.engines.synthetic import SyntheticEngine
from market.engines.synthetic.normaliser import repeat_normalisers
from market.mechanisms.mosaic import logsumexp
from market.prompts import Brand, Query, advertiser_prompt, context_prompt, reference_prompt
from scenarios.loader import load_scenario

LOGITS = st.one_of(
    st.floats(-60.0, 60.0),
    st.integers(-3, 3).map(float),  # ties, so that the top is often not unique
    st.just(-np.inf),
)


def direct_normalisers(logits: np.ndarray, repeat_penalty: float, eos: int) -> np.ndarray:
    """The direct way, as `World.chain` computed it before: every row (t, prev) in full."""
    vocab = logits.shape[1]
    z = np.repeat(logits[:, None, :], vocab + 1, axis=1)
    diagonal = np.arange(vocab)
    z[:, diagonal, diagonal] -= repeat_penalty
    z[:, eos, :] = -np.inf
    return logsumexp(z, axis=-1)


@st.composite
def rows(draw):
    n = draw(st.integers(1, 8))
    vocab = draw(st.integers(1, 9))
    logits = draw(arrays(np.float64, (n, vocab), elements=LOGITS))
    penalty = draw(st.sampled_from([0.0, 3.0, 1e-12, 0.5, -2.0, 40.0]))
    eos = draw(st.integers(0, vocab - 1))
    return logits, penalty, eos


@settings(max_examples=400, deadline=None)
@given(rows())
def test_repeat_normalisers_equal_the_direct_logsumexp_bit_for_bit(case):
    """Ties at the top, −inf entries and all −inf rows, no penalty, a bonus (negative penalty),
    and a penalty that moves a row's peak: the same numbers, not merely close ones."""
    logits, penalty, eos = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the direct way's −inf − −inf on all −inf rows
        expected = direct_normalisers(logits, penalty, eos)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no floating-point warning
        got = repeat_normalisers(logits, penalty, eos)
    assert got.shape == (len(logits), logits.shape[1] + 1)
    np.testing.assert_array_equal(got, expected)
    assert np.all(got[:, eos] == -np.inf)


def test_a_batch_of_chains_is_each_prompts_own_chain():
    """`World.chains` builds many prompts' models in one call; each equals `World.chain` of
    that prompt alone, bit for bit, and owns its memory (a cached chain holds no other)."""
    scenario = load_scenario("free_riding")
    engine = create_engine(scenario.engine, catalog=scenario.catalog(), cache=False)
    world = engine.world
    brands = [Brand(a.name, a.description, tuple(a.topics)) for a in scenario.advertisers]
    prompts = []
    for query in [Query(q.text, topic=q.topic) for q in scenario.queries][:3]:
        prompts.append(reference_prompt(query))
        prompts.append(context_prompt(query, brands))
        prompts.extend(advertiser_prompt(query, brand) for brand in brands)
    batch = world.chains(prompts)
    for prompt, chain in zip(prompts, batch, strict=True):
        np.testing.assert_array_equal(chain, world.chain(prompt))
        assert chain.base is None and not chain.flags.writeable


def reference_steer(world, brand: str, topic: str | None, base: np.ndarray) -> np.ndarray:
    """ "Advertise ``brand``" as the world model's docstring states it, one brand and one column
    at a time (as `World.advertiser_steer` computed it before brands were steered together)."""
    p = world._p
    delta = np.zeros_like(base)
    own_topics = set(world._brand_topics[brand])
    for rival, token in world.brand_id.items():
        if rival != brand and own_topics & set(world._brand_topics[rival]):
            delta[:, token] -= p["rival_penalty"]
    delta[:, world.brand_id[brand]] = p["ad_boost"]
    own = np.zeros(world.vocab_size, dtype=bool)
    for own_topic in own_topics:
        own |= world._topic_mask[own_topic]
    delta[:, own] += p["topic_pull"]
    if topic is None or topic in own_topics or not own.any():
        return delta
    on_query = world._topic_mask[topic]
    lost = np.exp(base[:, on_query]).sum(axis=1) * -np.expm1(-p["shoehorn"])
    gained = np.exp(base[:, own] + delta[:, own]).sum(axis=1)
    delta[:, on_query] -= p["shoehorn"]
    delta[:, own] += np.log1p(lost / gained)[:, None]
    return delta


@pytest.mark.parametrize(
    "params",
    [{}, {"shoehorn": 2.0, "topic_pull": 1.3, "rival_penalty": 0.7, "ad_boost": 3.1}],
)
def test_brands_steered_together_are_each_brands_own_steer(params):
    """Every catalog brand, relevant and irrelevant (shoehorning), for queries of every topic
    and none: `advertiser_steers` equals the one-brand-at-a-time definition bit for bit."""
    world = SyntheticEngine(catalog=load_scenario("free_riding").catalog(), **params).world
    assert world._p["shoehorn"] > 0  # irrelevant brands shoehorn
    brands = list(world.brands)
    topics = [*world.topics, None]
    for topic in topics:
        base = world.query_logits(Query(f"a question about {topic}", topic=topic))
        content = base[: world.max_len]
        together = world.advertiser_steers(brands, topic, content)
        for brand, steer in zip(brands, together, strict=True):
            np.testing.assert_array_equal(steer, reference_steer(world, brand, topic, content))
