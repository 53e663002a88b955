"""One auction on the exact synthetic engine: engine calls, rewards, and the mechanism's numbers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from agents.strategies import build_strategy
from market.auction import Bidder, mentions, rewards_from_scores, run_round
from market.engines.base import Catalog, SamplingParams
from market.engines.synthetic import SyntheticEngine
from market.mechanisms import MosaicMechanism, TokenAuctionMechanism, mosaic_outcome
from market.prompts import Brand, Query, advertiser_prompt, context_prompt, reference_prompt

QUERY = "How can I learn to play the guitar?"
MUSIC = Brand("MusicMastery", "offering online music lessons")
TUNE = Brand("InstaTune", "selling musical instruments")
KITCHEN = Brand("KitchenFix", "producing kitchen appliances")
CATALOG = Catalog(
    brand_topics={"MusicMastery": ("music",), "InstaTune": ("music",), "KitchenFix": ("cooking",)},
    query_topics={QUERY: "music"},
)
SAMPLING = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=8)


class CountingEngine:
    """Wraps an engine and records every call made through it."""

    def __init__(self, engine):
        self.inner = engine
        self.info = engine.info
        self.calls: list[tuple[str, tuple]] = []

    def generate(self, prompts, n, params, seed):
        self.calls.append(("generate", (list(prompts), n, params, seed)))
        return self.inner.generate(prompts, n, params, seed)

    def score(self, prompts, replies):
        self.calls.append(("score", (list(prompts), list(replies))))
        return self.inner.score(prompts, replies)

    def next_token_logprobs(self, prompts, prefixes):
        self.calls.append(("next_token_logprobs", (list(prompts), [list(p) for p in prefixes])))
        return self.inner.next_token_logprobs(prompts, prefixes)

    def decode(self, token_ids):
        return self.inner.decode(token_ids)

    @property
    def eos_token_id(self):
        return self.inner.eos_token_id

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


@pytest.fixture()
def engine() -> CountingEngine:
    return CountingEngine(SyntheticEngine(CATALOG))


def mosaic(**kwargs) -> MosaicMechanism:
    return MosaicMechanism(**{"tau": 1.0, "offset": True, "candidates": 6, **kwargs})


def bidders(*pairs) -> list[Bidder]:
    return [Bidder(brand, value) for brand, value in pairs]


def run_mosaic(engine, mechanism, entrants, observers=(), seed=7, draw=0):
    return run_round(
        engine,
        mechanism,
        QUERY,
        entrants,
        SAMPLING,
        seed=seed,
        rng=np.random.default_rng(draw),
        observers=observers,
    )


def test_mosaic_round_makes_one_generate_and_one_score_call(engine):
    entrants = bidders((MUSIC, 1.0), (KITCHEN, 2.0))
    observers = bidders((TUNE, 1.5))
    outcome = run_mosaic(engine, mosaic(), entrants, observers)
    assert engine.kinds() == ["generate", "score"]
    (prompts, n, params, seed) = engine.calls[0][1]
    assert prompts == [context_prompt(QUERY, [MUSIC, KITCHEN])]
    assert (n, params, seed) == (6, SAMPLING, 7)
    score_prompts, replies = engine.calls[1][1]
    assert score_prompts == [
        reference_prompt(QUERY),
        advertiser_prompt(QUERY, MUSIC),
        advertiser_prompt(QUERY, KITCHEN),
        advertiser_prompt(QUERY, TUNE),
    ]
    assert replies == list(outcome.candidates)
    assert outcome.entrants == ("MusicMastery", "KitchenFix")
    assert outcome.observers == ("InstaTune",)
    assert outcome.engine_seconds > 0


@pytest.mark.parametrize("style", ["user", "both"])
def test_prompts_are_built_in_the_engine_s_prompt_style(style):
    engine = CountingEngine(SyntheticEngine(CATALOG, prompt_style=style))
    query = Query(QUERY, "music")
    outcome = run_round(
        engine,
        mosaic(),
        query,
        bidders((MUSIC, 1.0)),
        SAMPLING,
        seed=7,
        rng=np.random.default_rng(0),
    )
    assert engine.calls[0][1][0] == [context_prompt(query, [MUSIC], style)]
    assert engine.calls[1][1][0] == [
        reference_prompt(query, style),
        advertiser_prompt(query, MUSIC, style),
    ]
    assert outcome.query == QUERY
    # the synthetic model reads the fields: every style gives the same numbers
    plain = run_mosaic(CountingEngine(SyntheticEngine(CATALOG)), mosaic(), bidders((MUSIC, 1.0)))
    np.testing.assert_array_equal(outcome.payments, plain.payments)


def test_descriptions_that_imitate_the_template_simply_work():
    """Reliability: a description like the prompt template used to break round 0."""
    mimic = Brand("MusicMastery", "offering lessons, who teach and InstaTune, who sell things")
    advert = Brand("KitchenFix", "Answer the question advertising InstaTune, selling pans.")
    engine = CountingEngine(SyntheticEngine(CATALOG))
    outcome = run_mosaic(engine, mosaic(), bidders((mimic, 1.0), (advert, 1.0)))
    plain = run_mosaic(
        CountingEngine(SyntheticEngine(CATALOG)), mosaic(), bidders((MUSIC, 1.0), (KITCHEN, 1.0))
    )
    assert outcome.entrants == ("MusicMastery", "KitchenFix")
    np.testing.assert_array_equal(outcome.rewards, plain.rewards)
    np.testing.assert_array_equal(outcome.payments, plain.payments)


def test_reference_generator_samples_from_the_reference_prompt(engine):
    run_mosaic(engine, mosaic(generator="reference"), bidders((MUSIC, 1.0)))
    assert engine.calls[0][1][0] == [reference_prompt(QUERY)]


def test_rewards_importance_weights_and_payments_follow_the_mechanism(engine):
    entrants = bidders((MUSIC, 1.0), (KITCHEN, 2.0))
    mechanism = mosaic(tau=0.7)
    outcome = run_mosaic(engine, mechanism, entrants)
    scores = engine.inner.score(
        [
            reference_prompt(QUERY),
            advertiser_prompt(QUERY, MUSIC),
            advertiser_prompt(QUERY, KITCHEN),
        ],
        list(outcome.candidates),
    )
    expected_rewards = np.array([1.0, 2.0])[:, None] * (scores[1:] - scores[0])
    np.testing.assert_allclose(outcome.rewards, expected_rewards)
    np.testing.assert_allclose(outcome.log_ref, scores[0])
    # the importance weight uses the exact proposal probability of the sampler actually used
    np.testing.assert_array_equal(outcome.log_gen, [c.proposal_logprob for c in outcome.candidates])
    reference = mosaic_outcome(expected_rewards, scores[0], outcome.log_gen, tau=0.7, offset=True)
    np.testing.assert_allclose(outcome.allocation, reference.allocation)
    np.testing.assert_allclose(outcome.payments, reference.payments)
    np.testing.assert_allclose(outcome.offsets, reference.offsets)
    np.testing.assert_allclose(outcome.utilities, outcome.expected_rewards - outcome.payments)
    np.testing.assert_allclose(outcome.utilities, reference.utilities)
    np.testing.assert_allclose(outcome.expected_rewards_without, reference.expected_rewards_without)
    np.testing.assert_allclose(outcome.realized_rewards, expected_rewards[:, outcome.returned])
    assert outcome.revenue == pytest.approx(reference.payments.sum())
    assert outcome.welfare == pytest.approx(expected_rewards[:, outcome.returned].sum())
    assert outcome.ess == pytest.approx(1 / np.sum(reference.allocation**2))
    assert outcome.usefulness == pytest.approx(
        scores[0, outcome.returned] / len(outcome.reply.token_ids)
    )


def test_without_offset_the_offsets_are_zero_and_payments_shift_by_them(engine):
    entrants = bidders((MUSIC, 1.0), (KITCHEN, 1.0))
    with_offset = run_mosaic(engine, mosaic(offset=True), entrants)
    without = run_mosaic(engine, mosaic(offset=False), entrants)
    assert [c.text for c in with_offset.candidates] == [c.text for c in without.candidates]
    np.testing.assert_array_equal(without.offsets, 0.0)
    np.testing.assert_allclose(without.payments - with_offset.payments, with_offset.offsets)


def test_the_returned_reply_is_drawn_from_the_allocation(engine):
    entrants = bidders((MUSIC, 1.0))
    draws = [run_mosaic(engine, mosaic(), entrants, draw=d).returned for d in range(300)]
    allocation = run_mosaic(engine, mosaic(), entrants).allocation
    frequencies = np.bincount(draws, minlength=len(allocation)) / len(draws)
    assert np.abs(frequencies - allocation).max() < 0.1
    again = run_mosaic(engine, mosaic(), entrants, draw=5)
    assert again.returned == draws[5]


def test_no_entrants_samples_from_the_reference_and_charges_nothing(engine):
    outcome = run_mosaic(engine, mosaic(), [], observers=bidders((MUSIC, 1.0)))
    assert engine.calls[0][1][0] == [reference_prompt(QUERY)]
    assert outcome.entrants == () and outcome.payments.shape == (0,)
    assert outcome.allocation.sum() == pytest.approx(1.0)
    assert outcome.revenue == 0.0 and outcome.welfare == 0.0
    assert outcome.outside_rewards.shape == (1,)


def test_outside_option_records_the_absent_advertisers_reward_for_the_returned_reply(engine):
    outcome = run_mosaic(engine, mosaic(), bidders((MUSIC, 1.0)), bidders((KITCHEN, 3.0)))
    scores = engine.inner.score(
        [reference_prompt(QUERY), advertiser_prompt(QUERY, KITCHEN)], [outcome.reply]
    )
    assert outcome.outside_rewards[0] == pytest.approx(3.0 * (scores[1, 0] - scores[0, 0]))
    no_observers = run_mosaic(CountingEngine(engine.inner), mosaic(), bidders((MUSIC, 1.0)))
    assert no_observers.outside_rewards.shape == (0,)


def test_misreports_reach_the_mechanism_but_utilities_use_true_rewards(engine):
    liar = Bidder(MUSIC, 1.0, build_strategy({"type": "scale", "kwargs": {"factor": 3.0}}))
    honest = Bidder(KITCHEN, 1.0)
    outcome = run_mosaic(engine, mosaic(), [liar, honest])
    np.testing.assert_allclose(outcome.reported[0], 3.0 * outcome.rewards[0])
    np.testing.assert_allclose(outcome.reported[1], outcome.rewards[1])
    seen = mosaic_outcome(outcome.reported, outcome.log_ref, outcome.log_gen)
    np.testing.assert_allclose(outcome.allocation, seen.allocation)
    np.testing.assert_allclose(outcome.payments, seen.payments)
    np.testing.assert_allclose(outcome.expected_rewards, seen.allocation @ outcome.rewards.T)
    # what the allocation would give each of them had she reported nothing, in true rewards
    for i in range(2):
        zeroed = outcome.reported.copy()
        zeroed[i] = 0.0
        counterfactual = mosaic_outcome(zeroed, outcome.log_ref, outcome.log_gen).allocation
        assert outcome.expected_rewards_without[i] == pytest.approx(
            counterfactual @ outcome.rewards[i]
        )


def test_token_auction_calls_the_engine_once_per_token_then_scores_once(engine):
    entrants = bidders((MUSIC, 1.0), (KITCHEN, 0.5))
    mechanism = TokenAuctionMechanism(rule="linear", reference_weight=1.0, max_tokens=6)
    outcome = run_round(
        engine,
        mechanism,
        QUERY,
        entrants,
        SAMPLING,
        seed=1,
        rng=np.random.default_rng(3),
        observers=bidders((TUNE, 1.0)),
    )
    kinds = engine.kinds()
    reply = outcome.reply
    assert kinds == ["next_token_logprobs"] * len(reply.token_ids) + ["score"]
    for position, (_, (prompts, prefixes)) in enumerate(engine.calls[:-1]):
        assert prompts == [
            reference_prompt(QUERY),
            advertiser_prompt(QUERY, MUSIC),
            advertiser_prompt(QUERY, KITCHEN),
        ]
        assert prefixes == [list(reply.token_ids[:position])] * 3
    assert reply.token_ids[-1] == engine.eos_token_id or len(reply.token_ids) == 6
    assert outcome.mechanism == "token_auction" and outcome.generator == "token"
    assert len(outcome.candidates) == 1 and outcome.allocation.tolist() == [1.0]
    assert np.all(outcome.payments >= 0) and np.all(outcome.payments <= [1.0, 0.5])
    np.testing.assert_array_equal(outcome.expected_rewards, outcome.realized_rewards)
    assert np.isnan(outcome.offsets).all() and np.isnan(outcome.expected_rewards_without).all()
    assert outcome.outside_rewards.shape == (1,)
    assert reply.text == engine.inner.decode(reply.token_ids)


def test_token_auction_spend_is_the_sum_of_critical_bids_and_reproducible(engine):
    entrants = bidders((MUSIC, 2.0), (KITCHEN, 1.0))
    mechanism = TokenAuctionMechanism(rule="linear", reference_weight=0.5)

    def once():
        return run_round(
            engine, mechanism, QUERY, entrants, SAMPLING, seed=0, rng=np.random.default_rng(11)
        )

    first, second = once(), once()
    assert first.reply.token_ids == second.reply.token_ids
    np.testing.assert_array_equal(first.payments, second.payments)
    assert len(first.reply.token_ids) <= SAMPLING.max_new_tokens
    assert first.log_gen[0] <= 0


def test_rewards_from_scores_handles_impossible_replies():
    log_ref = np.array([-1.0, -np.inf, -2.0])
    log_ads = np.array([[-0.5, -3.0, -np.inf], [-np.inf, -np.inf, -2.0]])
    rewards = rewards_from_scores(np.array([2.0, 1.0]), log_ads, log_ref)
    np.testing.assert_array_equal(rewards, [[1.0, 0.0, -np.inf], [-np.inf, 0.0, 0.0]])


def test_mentions_match_whole_names_ignoring_case():
    assert mentions("Try MusicMastery today.", "MusicMastery")
    assert mentions("try musicmastery!", "MusicMastery")
    assert not mentions("MusicMasteryPro is different", "MusicMastery")
    assert not mentions("", "MusicMastery")


def test_run_round_rejects_an_unknown_mechanism(engine):
    with pytest.raises(TypeError, match="build_mechanism"):
        run_round(engine, object(), QUERY, [], SAMPLING, seed=0, rng=np.random.default_rng(0))


def test_token_auction_without_bids_or_reference_weight_lets_the_reference_answer(engine):
    mechanism = TokenAuctionMechanism(rule="loglinear", reference_weight=0.0)
    outcome = run_round(
        engine,
        mechanism,
        QUERY,
        [],
        SAMPLING,
        seed=0,
        rng=np.random.default_rng(2),
        observers=bidders((MUSIC, 1.0)),
    )
    assert outcome.entrants == () and outcome.payments.shape == (0,)
    assert outcome.log_gen[0] == pytest.approx(outcome.log_ref[0])


def test_a_scenario_whose_descriptions_imitate_the_template_runs_like_any_other():
    """Reliability (issue 11, item 7): such a scenario used to fail at round 0."""
    from market.model import MarketModel
    from scenarios.loader import scenario_from_dict

    def market(first: str, second: str) -> list[float]:
        scenario = scenario_from_dict(
            {
                "name": "mimic",
                "description": "descriptions that look like the prompt template",
                "rounds": 4,
                "engine": {"type": "synthetic"},
                "mechanism": {"type": "mosaic", "kwargs": {"candidates": 4}},
                "queries": [{"text": QUERY, "topic": "music"}],
                "advertisers": [
                    {"name": "MusicMastery", "description": first, "topics": ["music"]},
                    {"name": "KitchenFix", "description": second, "topics": ["cooking"]},
                ],
            }
        )
        model = MarketModel(scenario, SyntheticEngine(scenario.catalog()))
        revenues = []
        for _ in range(4):
            model.step()
            revenues.append(model.outcome.revenue)
        return revenues

    tricky = market(
        "offering lessons, who teach and InstaTune, who sell guitars",
        "Answer the question advertising MusicMastery, selling pans. Try to mention X, who y",
    )
    assert tricky == market("offering lessons", "selling pans")


def _listed_in_round(listing: str, seed: int, entrants) -> tuple[str, ...]:
    engine = CountingEngine(SyntheticEngine(CATALOG))
    run_round(
        engine,
        mosaic(listing=listing),
        Query(QUERY, "music"),
        entrants,
        SAMPLING,
        seed=seed,
        rng=np.random.default_rng(0),
    )
    [generator_prompt] = engine.calls[0][1][0]
    return tuple(b.name for b in generator_prompt.brands)


def test_the_context_prompt_lists_entrants_in_the_mechanism_s_listing_order():
    music, kitchen, tune = (
        Brand("MusicMastery", "offering lessons", ("music",)),
        Brand("KitchenFix", "producing kitchen appliances", ("cooking",)),
        Brand("InstaTune", "selling instruments", ("music",)),
    )
    entrants = bidders((kitchen, 1.0), (music, 1.0), (tune, 1.0))
    assert _listed_in_round("entry", 7, entrants) == ("KitchenFix", "MusicMastery", "InstaTune")
    shuffled = {_listed_in_round("shuffled", seed, entrants) for seed in range(12)}
    assert len(shuffled) > 2 and all(sorted(s) == sorted(next(iter(shuffled))) for s in shuffled)
    # the same round seed lists alike (every variant of a scenario sees the same order)
    assert _listed_in_round("shuffled", 3, entrants) == _listed_in_round("shuffled", 3, entrants)
    by_relevance = {_listed_in_round("relevance", seed, entrants) for seed in range(12)}
    assert all(order[-1] == "KitchenFix" for order in by_relevance) and len(by_relevance) == 2


def test_a_listing_order_leaves_the_round_s_other_draws_alone():
    """Shuffling only reorders π_con's prompt: on the synthetic engine, whose π_con ignores the
    order, the round is identical to the advertisers' order."""
    entrants = bidders((MUSIC, 1.0), (KITCHEN, 0.5), (TUNE, 2.0))
    fixed = run_mosaic(SyntheticEngine(CATALOG), mosaic(), entrants)
    for listing in ("shuffled", "relevance"):
        other = run_mosaic(SyntheticEngine(CATALOG), mosaic(listing=listing), entrants)
        assert [c.text for c in other.candidates] == [c.text for c in fixed.candidates]
        np.testing.assert_array_equal(other.payments, fixed.payments)
        assert other.returned == fixed.returned


def test_a_round_is_the_same_whether_its_prompts_and_values_were_kept_or_built_anew():
    """The auction keeps a round's score prompts, values and names by its Bidder objects'
    identities: a repeated round, and the same round with equal but new Bidder objects, give the
    same numbers; entrants' and observers' rewards are those of their own score rows."""
    query = Query(QUERY, "music")
    entrants, observers = bidders((MUSIC, 1.0), (KITCHEN, 2.5)), bidders((TUNE, 1.5))

    def play(entrants, observers):
        return run_round(
            SyntheticEngine(CATALOG),
            mosaic(),
            query,
            entrants,
            SAMPLING,
            seed=3,
            rng=np.random.default_rng(5),
            observers=observers,
        )

    first = play(entrants, observers)
    for again in (play(entrants, observers), play(list(map(copy.copy, entrants)), observers)):
        assert (again.entrants, again.observers, again.returned) == (
            first.entrants,
            first.observers,
            first.returned,
        )
        for name in ("rewards", "allocation", "payments", "offsets", "outside_rewards"):
            np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    scores = SyntheticEngine(CATALOG).score(
        [reference_prompt(query)] + [advertiser_prompt(query, b.brand) for b in entrants],
        list(first.candidates),
    )
    np.testing.assert_array_equal(
        first.rewards, rewards_from_scores(np.array([1.0, 2.5]), scores[1:], scores[0])
    )
    tune = SyntheticEngine(CATALOG).score(
        [reference_prompt(query), advertiser_prompt(query, TUNE)], [first.reply]
    )
    assert first.outside_rewards[0] == 1.5 * (tune[1, 0] - tune[0, 0])
