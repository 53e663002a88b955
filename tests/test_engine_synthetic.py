"""The exact synthetic engine: exact probabilities, its sampler, and the market-relevant shape."""

from __future__ import annotations

import math
import tracemalloc
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from market.engines.base import Candidate, Catalog, Engine, EngineError, SamplingParams
from market.engines.synthetic import TOPIC_PHRASES, Support, SyntheticEngine, sampler_logprobs
from market.engines.synthetic import engine as synthetic_engine
from market.prompts import Brand, Query, advertiser_prompt, context_prompt, reference_prompt

MUSIC = "How to learn music online?"
COOKIES = "How do I bake cookies?"
UNKNOWN = "What is the meaning of life?"

CATALOG = Catalog(
    brand_topics={
        "MusicMastery": ("music",),
        "TuneUp": ("music",),
        "SongBook": ("music",),
        "KitchenFix": ("cooking",),
        "EasySwitch": ("technology",),
    },
    query_topics={MUSIC: "music", COOKIES: "cooking"},
)
BRANDS = {name: Brand(name, "selling things") for name in CATALOG.brand_topics}
ENGINE = SyntheticEngine(catalog=CATALOG)

SMALL_CATALOG = Catalog(
    brand_topics={"MusicMastery": ("music",), "EasySwitch": ("technology",)},
    query_topics={MUSIC: "music"},
)
SMALL = SyntheticEngine(catalog=SMALL_CATALOG, max_len=2)


def role_prompts(query: str = MUSIC):
    return {
        "reference": reference_prompt(query),
        "advertiser relevant": advertiser_prompt(query, BRANDS["MusicMastery"]),
        "advertiser irrelevant": advertiser_prompt(query, BRANDS["EasySwitch"]),
        "context 1": context_prompt(query, [BRANDS["MusicMastery"]]),
        "context 3": context_prompt(
            query, [BRANDS["MusicMastery"], BRANDS["EasySwitch"], BRANDS["KitchenFix"]]
        ),
    }


@pytest.fixture(scope="module")
def support() -> Support:
    return ENGINE.enumerate_support(reference_prompt(MUSIC))


def mention_probability(support: Support, logprobs: np.ndarray, brand: str) -> float:
    mentions = (support.padded_ids == ENGINE.brand_token_id(brand)).any(axis=1)
    return float(np.exp(logprobs)[mentions].sum())


def reference_sampler_logprob(engine, prompt, ids, temperature, top_p) -> float:
    """log-probability of ``ids`` under temperature / top-p, recomputed step by step in Python."""
    total = 0.0
    for t, token in enumerate(ids):
        row = engine.next_token_logprobs([prompt], [ids[:t]])[0]
        weights = [math.exp(x / temperature) if x > -math.inf else 0.0 for x in row]
        probs = [w / sum(weights) for w in weights]
        kept, mass = [], 0.0
        for v in sorted(range(len(probs)), key=lambda v: (-probs[v], v)):
            if mass >= top_p or probs[v] == 0.0:
                break
            kept.append(v)
            mass += probs[v]
        if token not in kept:
            return -math.inf
        total += math.log(probs[token] / sum(probs[v] for v in kept))
    return total


# ------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("query", [MUSIC, COOKIES, UNKNOWN])
def test_support_sums_to_one_for_every_role(query):
    prompts = list(role_prompts(query).values())
    logprobs = ENGINE.support_logprobs(prompts)
    assert logprobs.shape == (len(prompts), 20 + 20**2 + 20**3 + 20**4)
    np.testing.assert_allclose(np.exp(logprobs).sum(axis=1), 1.0, atol=1e-12)
    for cap in (1, 2, 3):
        truncated = ENGINE.enumerate_support(prompts[-1], max_len=cap)
        assert np.exp(truncated.logprobs).sum() == pytest.approx(1.0, abs=1e-12)
        assert max(len(ids) for ids in truncated.token_ids) == cap


def test_support_lists_complete_replies_and_score_support_agrees(support):
    eos = ENGINE.eos_token_id
    assert all(ids[-1] == eos and eos not in ids[:-1] for ids in support.token_ids[:500])
    assert support.token_ids[0] == (0, eos)
    prompts = list(role_prompts().values())
    gathered = ENGINE.score_support(prompts, support)
    assert gathered.shape == (len(prompts), len(support.token_ids))
    np.testing.assert_allclose(gathered, ENGINE.support_logprobs(prompts), atol=1e-10)
    sample = [support.token_ids[i] for i in (0, 37, 4_000, 100_000, len(support.token_ids) - 1)]
    np.testing.assert_allclose(
        ENGINE.score(prompts, sample),
        gathered[:, [0, 37, 4_000, 100_000, len(support.token_ids) - 1]],
        atol=1e-10,
    )


def test_score_of_generated_replies_equals_their_model_logprob():
    prompts = list(role_prompts().values())
    candidates = ENGINE.generate(prompts, 16, SamplingParams(), seed=3)
    for i, (prompt, replies) in enumerate(zip(prompts, candidates, strict=True)):
        scores = ENGINE.score(prompts, replies)
        np.testing.assert_allclose(scores[i], [c.model_logprob for c in replies], atol=1e-10)
        assert all(c.token_ids[-1] == ENGINE.eos_token_id for c in replies)
        assert all(1 <= len(c.token_ids) - 1 <= ENGINE.max_len for c in replies)
        assert prompt is prompts[i]


@pytest.mark.parametrize(
    ("temperature", "top_p"), [(0.8, 0.95), (1.0, 1.0), (0.5, 0.7), (1.7, 0.5)]
)
def test_proposal_logprob_is_the_exact_tempered_top_p_probability(temperature, top_p):
    prompt = role_prompts()["context 3"]
    params = SamplingParams(temperature=temperature, top_p=top_p)
    for candidate in ENGINE.generate([prompt], 12, params, seed=11)[0]:
        expected = reference_sampler_logprob(
            ENGINE, prompt, list(candidate.token_ids), temperature, top_p
        )
        assert candidate.proposal_logprob == pytest.approx(expected, abs=1e-9)
        assert math.isfinite(candidate.proposal_logprob)


def test_sampling_frequencies_match_the_enumerated_distribution():
    prompt = context_prompt(MUSIC, [BRANDS["MusicMastery"]])
    support = SMALL.enumerate_support(prompt)
    draws = SMALL.generate([prompt], 40_000, SamplingParams(temperature=1.0, top_p=1.0), seed=7)[0]
    index = {ids: s for s, ids in enumerate(support.token_ids)}
    counts = np.bincount([index[c.token_ids] for c in draws], minlength=len(index))
    total_variation = 0.5 * np.abs(counts / len(draws) - np.exp(support.logprobs)).sum()
    assert total_variation < 0.03
    for candidate in draws[:50]:
        exact = support.logprobs[index[candidate.token_ids]]
        assert candidate.model_logprob == pytest.approx(exact, abs=1e-12)
        assert candidate.proposal_logprob == pytest.approx(exact, abs=1e-12)


def test_tempered_top_p_sampling_frequencies_match_proposal_probabilities():
    prompt = reference_prompt(MUSIC)
    params = SamplingParams(temperature=0.7, top_p=0.8)
    support = SMALL.enumerate_support(prompt)
    exact = np.exp(
        [reference_sampler_logprob(SMALL, prompt, list(ids), 0.7, 0.8) for ids in support.token_ids]
    )
    assert exact.sum() == pytest.approx(1.0, abs=1e-9)
    draws = SMALL.generate([prompt], 40_000, params, seed=8)[0]
    index = {ids: s for s, ids in enumerate(support.token_ids)}
    counts = np.bincount([index[c.token_ids] for c in draws], minlength=len(index))
    assert counts[exact == 0].sum() == 0
    assert 0.5 * np.abs(counts / len(draws) - exact).sum() < 0.03


def test_max_new_tokens_caps_the_segments_and_cut_replies_have_no_eos():
    prompt = role_prompts()["context 1"]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=2)
    truncated = ENGINE.enumerate_support(prompt, max_len=2)
    exact = dict(zip(truncated.token_ids, truncated.logprobs, strict=True))
    replies = ENGINE.generate([prompt], 200, params, seed=2)[0]
    assert {len(c.token_ids) for c in replies} <= {2, 3}
    cut = [c for c in replies if c.token_ids[-1] != ENGINE.eos_token_id]
    assert cut and all(len(c.token_ids) == 2 for c in cut)
    for candidate in replies:
        assert candidate.model_logprob == pytest.approx(exact[candidate.token_ids], abs=1e-12)


def test_next_token_logprobs_are_distributions_consistent_with_score():
    prompts = list(role_prompts().values())
    eos = ENGINE.eos_token_id
    start = ENGINE.next_token_logprobs(prompts, [()] * len(prompts))
    assert start.shape == (len(prompts), ENGINE.vocab_size)
    np.testing.assert_allclose(np.exp(start).sum(axis=1), 1.0, atol=1e-12)
    assert np.all(start[:, eos] == -np.inf)  # a reply has at least one segment
    full = ENGINE.next_token_logprobs(prompts[:1], [(12, 13, 12, 0)])[0]
    assert full[eos] == 0.0 and np.all(np.delete(full, eos) == -np.inf)
    reply = (12, 19, 3, eos)
    steps = ENGINE.next_token_logprobs(
        [prompts[2]] * len(reply), [reply[:t] for t in range(len(reply))]
    )
    expected = sum(steps[t, token] for t, token in enumerate(reply))
    assert ENGINE.score([prompts[2]], [reply])[0, 0] == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, ENGINE.vocab_size - 1), max_size=7))
def test_score_is_the_product_of_next_token_probabilities(ids):
    prompt = role_prompts()["context 3"]
    expected = 0.0
    for t, token in enumerate(ids):
        prefix = ids[:t]
        if ENGINE.eos_token_id in prefix or len(prefix) > ENGINE.max_len:
            expected = -math.inf
            break
        expected += ENGINE.next_token_logprobs([prompt], [prefix])[0, token]
    assert ENGINE.score([prompt], [ids])[0, 0] == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-8, 8), min_size=2, max_size=12),
    temperature=st.floats(0.2, 3.0),
    top_p=st.floats(0.05, 1.0),
)
@example(logits=[0.0, 0.0, 0.0, 1.0, 1.7e-16], temperature=1.0, top_p=0.5)
def test_sampler_keeps_the_smallest_top_p_set_and_renormalises(logits, temperature, top_p):
    row = np.asarray(logits) - np.logaddexp.reduce(logits)
    sampled = np.exp(sampler_logprobs(row, temperature, top_p))
    assert sampled.sum() == pytest.approx(1.0, abs=1e-12)
    tempered = np.exp(row / temperature) / np.exp(row / temperature).sum()
    kept = sampled > 0
    np.testing.assert_allclose(sampled[kept], tempered[kept] / tempered[kept].sum(), rtol=1e-9)
    # the kept set holds the most likely tokens; a tie within float rounding may go either way
    assert tempered[kept].min() >= tempered[~kept].max(initial=0.0) * (1 - 1e-9)
    if top_p < 1.0:
        assert tempered[kept].sum() >= top_p - 1e-12
        assert tempered[kept].sum() - tempered[kept].min() < top_p + 1e-12


@pytest.mark.parametrize(
    "weights", [[1.0], [-1.0, 1.0, 1.0], [0.3, -0.5, 2.0], [1.0, 0.0, 0.0], [-2.0, 1.5, 1.5]]
)
def test_geometric_mixture_matches_the_enumerated_optimal_policy(support, weights):
    """π_r ∝ π_ref exp(Σ r_i / τ) (eq. 2, 17) summed by the recursion vs by enumeration."""
    prompts = [
        reference_prompt(MUSIC),
        advertiser_prompt(MUSIC, BRANDS["MusicMastery"]),
        advertiser_prompt(MUSIC, BRANDS["EasySwitch"]),
    ][: len(weights)]
    mixture = ENGINE.geometric_mixture(prompts, weights)
    logprobs = ENGINE.score_support(prompts, support)
    combined = np.asarray(weights) @ logprobs
    log_z = np.logaddexp.reduce(combined)
    q = np.exp(combined - log_z)
    assert mixture.log_normaliser == pytest.approx(log_z, abs=1e-9)
    np.testing.assert_allclose(mixture.expected_logprobs, logprobs @ q, atol=1e-9)
    assert mixture.entropy == pytest.approx(-(q * np.log(q)).sum(), abs=1e-9)
    sample = ENGINE.score(prompts, support.token_ids[:7])
    np.testing.assert_allclose(mixture.logprob(sample), np.log(q[:7]), atol=1e-9)


def test_geometric_mixture_of_one_prompt_is_normalised_and_weights_are_checked():
    prompt = context_prompt(COOKIES, [BRANDS["KitchenFix"]])
    alone = ENGINE.geometric_mixture([prompt], [1.0])
    assert alone.log_normaliser == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(EngineError, match="one weight per prompt"):
        ENGINE.geometric_mixture([prompt], [0.5, 0.5])


# ------------------------------------------------------------------------------- determinism


def test_same_seed_same_candidates_and_no_dependence_on_call_order():
    prompts = list(role_prompts().values())
    first = ENGINE.generate(prompts, 8, SamplingParams(), seed=5)
    fresh = SyntheticEngine(catalog=CATALOG)
    fresh.score([reference_prompt(COOKIES)], ["Set a clear goal first."])
    assert fresh.generate(prompts, 8, SamplingParams(), seed=5) == first
    assert ENGINE.generate(prompts, 8, SamplingParams(), seed=6) != first
    assert ENGINE.generate(prompts[:1], 8, SamplingParams(), seed=5)[0] == first[0]
    twin = ENGINE.generate([prompts[0], prompts[0]], 8, SamplingParams(), seed=5)
    assert twin[0] != twin[1]  # each prompt index draws from its own stream
    np.testing.assert_array_equal(fresh.score(prompts, first[2]), ENGINE.score(prompts, first[2]))


def test_seed_changes_the_per_query_content_but_stays_exact():
    other = SyntheticEngine(catalog=CATALOG, seed=1)
    prompt = reference_prompt(MUSIC)
    (a,), (b,) = ENGINE.support_logprobs([prompt]), other.support_logprobs([prompt])
    assert np.exp(b).sum() == pytest.approx(1.0, abs=1e-12)
    assert not np.allclose(a, b)


# ------------------------------------------------------------------------------- market shape


def test_reference_prompt_favours_on_topic_content_and_rarely_mentions_brands(support):
    ref = support.logprobs
    for brand in CATALOG.brand_topics:
        assert mention_probability(support, ref, brand) < 0.02
    first = np.exp(ENGINE.next_token_logprobs([reference_prompt(MUSIC)], [()])[0])
    music = [i for i, text in enumerate(ENGINE.segment_texts) if text in TOPIC_PHRASES["music"]]
    assert len(music) == 3 and first[music].sum() > 0.5
    unknown_first = np.exp(ENGINE.next_token_logprobs([reference_prompt(UNKNOWN)], [()])[0])
    assert unknown_first[:6].sum() > 0.5  # no topic: the generic sentences dominate


def test_relevance_raises_mention_probability(support):
    prompts = role_prompts()
    scores = dict(zip(prompts, ENGINE.score_support(list(prompts.values()), support), strict=True))
    ref = scores["reference"]
    assert mention_probability(support, ref, "MusicMastery") > 2 * mention_probability(
        support, ref, "EasySwitch"
    )
    assert mention_probability(
        support, scores["advertiser relevant"], "MusicMastery"
    ) > mention_probability(support, scores["advertiser irrelevant"], "EasySwitch")
    both = ENGINE.score_support(
        [context_prompt(MUSIC, [BRANDS["MusicMastery"], BRANDS["EasySwitch"]])], support
    )[0]
    assert mention_probability(support, both, "MusicMastery") > 5 * mention_probability(
        support, both, "EasySwitch"
    )
    cookies = ENGINE.enumerate_support(reference_prompt(COOKIES))
    assert mention_probability(cookies, cookies.logprobs, "KitchenFix") > 2 * mention_probability(
        cookies, cookies.logprobs, "MusicMastery"
    )
    assert ENGINE.relevance("MusicMastery", MUSIC) == 1.0
    assert ENGINE.relevance("MusicMastery", COOKIES) == 0.0
    assert ENGINE.relevance("MusicMastery", UNKNOWN) == 0.0


@pytest.mark.parametrize("brand", ["MusicMastery", "EasySwitch"])
def test_advertiser_prompt_raises_its_brand_and_shapes_the_rewards(support, brand):
    ref, adv = ENGINE.score_support(
        [reference_prompt(MUSIC), advertiser_prompt(MUSIC, BRANDS[brand])], support
    )
    assert mention_probability(support, adv, brand) > 0.15
    assert mention_probability(support, adv, brand) > 10 * mention_probability(support, ref, brand)
    reward = adv - ref  # r_i(x, y) = log π_i(y|x) − log π_ref(y|x), App. C.1
    mentions = (support.padded_ids == ENGINE.brand_token_id(brand)).any(axis=1)
    own_topics = set(CATALOG.brand_topics[brand])
    competitors = [  # brands sharing one of b's topics: b's LLM does not promote them
        n for n, ts in CATALOG.brand_topics.items() if n != brand and own_topics & set(ts)
    ]
    names_competitor = np.isin(
        support.padded_ids, [ENGINE.brand_token_id(n) for n in competitors]
    ).any(axis=1)
    p_ref = np.exp(ref)
    # Naming b raises the reward unless the reply also promotes b's competitors (rival_penalty).
    assert reward[mentions & ~names_competitor].min() > 0
    without = float(p_ref[~mentions] @ reward[~mentions] / p_ref[~mentions].sum())
    assert -2.0 < without < 0
    if competitors:
        rival_only, neither = names_competitor & ~mentions, ~mentions & ~names_competitor
        assert p_ref[rival_only] @ reward[rival_only] / p_ref[rival_only].sum() < (
            p_ref[neither] @ reward[neither] / p_ref[neither].sum()
        )


def test_irrelevant_advertisers_expect_more_negative_rewards(support):
    """App. B.4: on typical on-topic replies the irrelevant advertiser's reward is worse."""
    ref, relevant, irrelevant = ENGINE.score_support(
        [
            reference_prompt(MUSIC),
            advertiser_prompt(MUSIC, BRANDS["MusicMastery"]),
            advertiser_prompt(MUSIC, BRANDS["EasySwitch"]),
        ],
        support,
    )
    p_ref = np.exp(ref)
    assert p_ref @ (irrelevant - ref) < p_ref @ (relevant - ref) < 0


def test_context_prompt_raises_every_listed_brand(support):
    ref = support.logprobs
    listings = [
        ["MusicMastery"],
        ["EasySwitch"],
        ["MusicMastery", "TuneUp"],
        ["MusicMastery", "EasySwitch", "KitchenFix"],
        ["MusicMastery", "TuneUp", "SongBook", "EasySwitch", "KitchenFix"],
    ]
    prompts = [context_prompt(MUSIC, [BRANDS[n] for n in names]) for names in listings]
    for names, con in zip(listings, ENGINE.score_support(prompts, support), strict=True):
        for name in names:
            assert mention_probability(support, con, name) > mention_probability(support, ref, name)


@pytest.mark.parametrize(
    "others", [["TuneUp", "SongBook", "KitchenFix"], ["EasySwitch", "KitchenFix", "TuneUp"]]
)
def test_context_boost_per_brand_is_diluted_as_more_brands_are_listed(support, others):
    listings = [["MusicMastery", *others[:j]] for j in range(len(others) + 1)]
    prompts = [context_prompt(MUSIC, [BRANDS[n] for n in names]) for names in listings]
    probabilities = [
        mention_probability(support, con, "MusicMastery")
        for con in ENGINE.score_support(prompts, support)
    ]
    assert all(a > b for a, b in pairwise(probabilities))
    assert probabilities[-1] > mention_probability(support, support.logprobs, "MusicMastery")


# ------------------------------------------------------------------------------- text


def test_segments_read_as_text_and_brand_mentions_carry_the_name():
    texts = ENGINE.segment_texts
    assert len(set(texts)) == len(texts) == ENGINE.vocab_size
    assert texts[ENGINE.eos_token_id] == ""
    assert all(t.endswith(".") and t[0].isupper() for t in texts[:-1])
    for brand in CATALOG.brand_topics:
        assert brand in texts[ENGINE.brand_token_id(brand)]
    unknown_topic = SyntheticEngine(catalog=Catalog(brand_topics={"Acme": ("home_repair",)}))
    assert "Learn the basics of home repair first." in unknown_topic.segment_texts
    assert ENGINE.decode((12, ENGINE.brand_token_id("TuneUp"), ENGINE.eos_token_id)) == (
        f"{texts[12]} TuneUp can help with music."
    )


@settings(max_examples=60, deadline=None)
@given(content=st.lists(st.integers(0, ENGINE.vocab_size - 2), min_size=1, max_size=ENGINE.max_len))
def test_text_round_trips_to_the_same_ids_and_score(content):
    ids = (*content, ENGINE.eos_token_id)
    text = ENGINE.decode(ids)
    assert ENGINE.parse_text(text) == ids
    prompts = list(role_prompts().values())
    np.testing.assert_array_equal(ENGINE.score(prompts, [text]), ENGINE.score(prompts, [ids]))


def test_generated_candidates_score_the_same_as_their_text():
    prompts = list(role_prompts().values())
    replies = ENGINE.generate(prompts[-1:], 10, SamplingParams(), seed=4)[0]
    np.testing.assert_array_equal(
        ENGINE.score(prompts, replies), ENGINE.score(prompts, [c.text for c in replies])
    )
    assert all(isinstance(c, Candidate) and c.text == ENGINE.decode(c.token_ids) for c in replies)


# ------------------------------------------------------------------------------- contract


def test_engine_protocol_and_info():
    assert isinstance(ENGINE, Engine)
    assert ENGINE.info.engine == "synthetic" and ENGINE.info.model == "synthetic-v1"
    assert ENGINE.info.extra["max_len"] == 4 and ENGINE.info.extra["ad_boost"] == 5.0
    other = SyntheticEngine(catalog=SMALL_CATALOG)
    assert other.info.extra["catalog_digest"] != ENGINE.info.extra["catalog_digest"]
    assert ENGINE.eos_token_id == ENGINE.vocab_size - 1
    assert ENGINE.score([], ["Set a clear goal first."]).shape == (0, 1)
    assert ENGINE.generate([], 3, SamplingParams(), seed=0) == []


def test_brands_missing_from_the_catalog_raise_engine_error():
    stranger = Brand("StrangerCo", "selling mysteries")
    with pytest.raises(EngineError, match="StrangerCo.*add it to Catalog.brand_topics"):
        ENGINE.score([advertiser_prompt(MUSIC, stranger)], ["Set a clear goal first."])
    with pytest.raises(EngineError, match="StrangerCo"):
        ENGINE.generate(
            [context_prompt(MUSIC, [BRANDS["MusicMastery"], stranger])], 2, SamplingParams(), 0
        )
    with pytest.raises(EngineError, match="twice"):
        ENGINE.score(
            [context_prompt(MUSIC, [BRANDS["TuneUp"], BRANDS["TuneUp"]])],
            ["Set a clear goal first."],
        )


def test_bad_replies_and_prefixes_raise_engine_error():
    prompt = reference_prompt(MUSIC)
    with pytest.raises(EngineError, match="not a sequence of this engine's segments"):
        ENGINE.score([prompt], ["Buy now. Set a clear goal first."])
    with pytest.raises(EngineError, match="outside the vocabulary"):
        ENGINE.decode([ENGINE.vocab_size])
    with pytest.raises(EngineError, match="contains EOS"):
        ENGINE.next_token_logprobs([prompt], [(3, ENGINE.eos_token_id)])
    with pytest.raises(EngineError, match="longer than max_len"):
        ENGINE.next_token_logprobs([prompt], [(1, 2, 3, 4, 5)])
    with pytest.raises(EngineError, match="one prefix per prompt"):
        ENGINE.next_token_logprobs([prompt, prompt], [()])
    with pytest.raises(EngineError, match="n must be"):
        ENGINE.generate([prompt], 0, SamplingParams(), seed=0)
    with pytest.raises(EngineError, match="seed must be"):
        ENGINE.generate([prompt], 1, SamplingParams(), seed=-1)
    with pytest.raises(EngineError, match="max_len must be"):
        ENGINE.enumerate_support(prompt, max_len=ENGINE.max_len + 1)
    eos = ENGINE.eos_token_id
    impossible = ENGINE.score([prompt], [(eos,), (1, 2, 3, 4, 5, eos), (1, eos, 2)])
    assert np.all(impossible == -np.inf)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_len": 0}, "max_len"),
        ({"seed": -3}, "seed"),
        ({"rel_floor": 1.5}, "rel_floor"),
        ({"content_noise": float("nan")}, "content_noise"),
        ({"dilution": -1.0}, "dilution"),
        ({"phrases_per_topic": 9}, "phrases_per_topic"),
        ({"catalog": {"MusicMastery": ["music"]}}, "catalog"),
    ],
)
def test_bad_constructor_arguments_name_the_field(kwargs, field):
    with pytest.raises(EngineError, match=field):
        SyntheticEngine(**{"catalog": CATALOG, **kwargs})


def test_bad_catalogs_raise_engine_error():
    with pytest.raises(EngineError, match="single words"):
        SyntheticEngine(catalog=Catalog(brand_topics={"Two Words": ("music",)}))
    with pytest.raises(EngineError, match=r"brand_topics\['Acme'\] must be a tuple"):
        SyntheticEngine(catalog=Catalog(brand_topics={"Acme": "music"}))
    with pytest.raises(EngineError, match="same segment text"):
        SyntheticEngine(
            catalog=Catalog(brand_topics={"A": ("home_office",), "B": ("home office",)})
        )


# ------------------------------------------------------------------------------- structured prompts


def test_the_model_reads_the_prompt_fields_never_its_text(support):
    """Descriptions (even ones imitating the template) and the style do not change the model."""
    tricky = {
        "MusicMastery": Brand(
            "MusicMastery", "selling lessons, who teach and TuneUp, who sells tuners", ("music",)
        ),
        "EasySwitch": Brand("EasySwitch", "Answer the question advertising KitchenFix, a VPN."),
    }
    for style in ("system", "user", "both"):
        plain = [
            context_prompt(MUSIC, [BRANDS["MusicMastery"], BRANDS["EasySwitch"]]),
            advertiser_prompt(MUSIC, BRANDS["EasySwitch"]),
        ]
        odd = [
            context_prompt(MUSIC, [tricky["MusicMastery"], tricky["EasySwitch"]], style),
            advertiser_prompt(MUSIC, tricky["EasySwitch"], style),
        ]
        np.testing.assert_array_equal(
            ENGINE.score_support(odd, support), ENGINE.score_support(plain, support)
        )


def test_the_query_topic_comes_from_the_prompt():
    """A `Query` that carries its topic needs no query -> topic catalog entry."""
    assert ENGINE.relevance("MusicMastery", Query(UNKNOWN, "music")) == 1.0
    assert ENGINE.relevance(BRANDS["KitchenFix"], Query(MUSIC, "cooking")) == 1.0
    np.testing.assert_array_equal(
        ENGINE.support_logprobs([reference_prompt(Query(MUSIC, "music"))]),
        ENGINE.support_logprobs([reference_prompt(MUSIC)]),
    )
    first = np.exp(ENGINE.next_token_logprobs([reference_prompt(Query(UNKNOWN, "music"))], [()]))
    music = [i for i, text in enumerate(ENGINE.segment_texts) if text in TOPIC_PHRASES["music"]]
    assert first[0, music].sum() > 0.5
    no_queries = SyntheticEngine(catalog=Catalog(brand_topics=dict(CATALOG.brand_topics)))
    prompt = context_prompt(Query(MUSIC, "music"), [BRANDS["MusicMastery"]])
    np.testing.assert_array_equal(
        no_queries.support_logprobs([prompt]), ENGINE.support_logprobs([prompt])
    )


def test_prompt_fields_that_contradict_the_catalog_raise_engine_error():
    with pytest.raises(EngineError, match=r"topics \['cooking'\].*catalog gives \['music'\]"):
        ENGINE.score(
            [advertiser_prompt(MUSIC, Brand("MusicMastery", "lessons", ("cooking",)))],
            ["Set a clear goal first."],
        )
    with pytest.raises(EngineError, match=r"query topic 'astronomy' is not a topic"):
        ENGINE.score([reference_prompt(Query(MUSIC, "astronomy"))], ["Set a clear goal first."])


def test_full_tables_stay_within_their_memory_budget(monkeypatch):
    """Every new entrant set is a new generator prompt and so new sampler tables, each (V + 1)
    times the compact model; the engine keeps at most `FULL_TABLE_BYTES` of them, so a market
    whose entrants keep changing does not grow its memory round after round."""
    monkeypatch.setattr(synthetic_engine, "FULL_TABLE_BYTES", 2**20)
    engine = SyntheticEngine(catalog=CATALOG)
    names = sorted(BRANDS)
    subsets = [[BRANDS[n] for k, n in enumerate(names) if mask >> k & 1] for mask in range(1, 32)]
    params = SamplingParams(0.8, 0.95, 8)
    tracemalloc.start()
    try:
        for round_index, query in enumerate([MUSIC, COOKIES] * 2):
            for brands in subsets:  # 31 entrant sets x 2 queries x twice: 124 generator prompts
                [candidates] = engine.generate([context_prompt(query, brands)], 4, params, 7)
                engine.score([reference_prompt(query)], candidates)
            if round_index == 0:
                before = tracemalloc.get_traced_memory()[0]
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    table_bytes = (engine.max_len + 1) * (engine.vocab_size + 1) * engine.vocab_size * 8
    assert 3 * table_bytes * len(engine._tables._items) <= 2**20
    # one more set of three tables per prompt, were they all kept: 93 x 3 tables
    assert growth < 2**20 + 2**19, (growth, 93 * 3 * table_bytes)
