"""The synthetic engine's reuse of what it computed before (kept candidates, their steps, the
scores a prompt stack gave them) never changes a number: any history, any batch, same values."""

from __future__ import annotations

import numpy as np
import pytest

from market.engines.base import Candidate, Catalog, EngineError, SamplingParams
from market.engines.synthetic import SyntheticEngine
from market.prompts import Brand, advertiser_prompt, context_prompt, reference_prompt

MUSIC = "How to learn music online?"
CATALOG = Catalog(
    brand_topics={"MusicMastery": ("music",), "TuneUp": ("music",), "EasySwitch": ("technology",)},
    query_topics={MUSIC: "music"},
)
BRANDS = [Brand(name, "selling things") for name in CATALOG.brand_topics]
PARAMS = SamplingParams(0.8, 0.95, 48)


def prompts():
    return [reference_prompt(MUSIC), *(advertiser_prompt(MUSIC, b) for b in BRANDS)]


def exact(candidates):
    return [(c.text, c.token_ids, c.proposal_logprob, c.model_logprob) for c in candidates]


def test_candidates_and_scores_do_not_depend_on_what_was_drawn_and_scored_before():
    """A long-used engine (every reply kept) and a fresh one per round agree bit for bit."""
    used = SyntheticEngine(catalog=CATALOG)
    generator = context_prompt(MUSIC, BRANDS)
    scorers = prompts()
    for seed in range(40):
        [candidates] = used.generate([generator], 16, PARAMS, seed)
        scores = used.score(scorers, candidates)
        fresh = SyntheticEngine(catalog=CATALOG)
        [again] = fresh.generate([generator], 16, PARAMS, seed)
        assert exact(candidates) == exact(again)
        assert scores.tobytes() == fresh.score(scorers, again).tobytes()
        assert scores.flags.c_contiguous


def test_a_reply_scores_the_same_alone_and_in_any_batch():
    """Scores are summed step by step in order, so padding a batch to a long reply (eight steps
    and more, where numpy's sum would regroup) changes no other reply's score."""
    engine = SyntheticEngine(catalog=CATALOG)
    eos = engine.eos_token_id
    short = [(1, eos), (2, 5, eos), (3, 3, 7, eos)]
    long = (1, 2, 3, 4, 5, 6, 7, 8, 9, eos)  # past max_len: −inf under every prompt
    alone = np.hstack([SyntheticEngine(catalog=CATALOG).score(prompts(), [r]) for r in short])
    batched = engine.score(prompts(), [long, *short, short[1]])
    assert np.all(batched[:, 0] == -np.inf)
    assert alone.tobytes() == np.ascontiguousarray(batched[:, 1:4]).tobytes()
    assert np.array_equal(batched[:, 2], batched[:, 4])
    mixed = engine.score(prompts(), [short[2], (4, eos), list(short[0])])  # kept, new, a list
    assert np.array_equal(mixed[:, 0], alone[:, 2]) and np.array_equal(mixed[:, 2], alone[:, 0])


def test_kept_replies_are_checked_as_before():
    engine = SyntheticEngine(catalog=CATALOG)
    eos = engine.eos_token_id
    engine.score(prompts(), [(1, eos)])
    listed = Candidate("x", [1, eos], 0.0, 0.0)  # unhashable ids are scored, not looked up
    assert np.array_equal(engine.score(prompts(), [listed]), engine.score(prompts(), [(1, eos)]))
    for bad in [(engine.vocab_size,), (-1, eos), ([1], eos), "not a reply"]:
        with pytest.raises(EngineError):
            engine.score(prompts(), [(1, eos), bad])
    numpy_ids = (np.int64(1), np.int64(eos))
    assert np.array_equal(engine.score(prompts(), [numpy_ids]), engine.score(prompts(), [(1, eos)]))
