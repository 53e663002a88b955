"""The SQLite call cache: hits, partial score hits, several processes, a broken file."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import warnings

import numpy as np
import pytest

from market.engines import Candidate, EngineError, EngineInfo, SamplingParams
from market.engines import cache as cache_module
from market.engines.cache import CACHE_FILE, CachedEngine, CacheStats
from market.prompts import Brand, Query, advertiser_prompt, context_prompt, reference_prompt

PARAMS = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=6)
SHOP = Brand("ShopA", "selling a", ("music",))
PROMPTS = [
    advertiser_prompt("query", SHOP),
    context_prompt("query", [SHOP]),
    reference_prompt("other query"),
]
VOCAB = 11


def _unit(*parts) -> float:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


class CountingEngine:
    """A deterministic stand-in engine that records every call it receives."""

    def __init__(self, model: str = "counting-v1") -> None:
        self.info = EngineInfo(engine="counting", model=model)
        self.calls: list[tuple] = []

    @property
    def eos_token_id(self) -> int:
        return 0

    def decode(self, token_ids) -> str:
        return " ".join(f"t{t}" for t in token_ids)

    def generate(self, prompts, n, params, seed):
        self.calls.append(("generate", len(prompts), n))
        out = []
        for p in prompts:
            row = []
            for k in range(n):
                ids = tuple(1 + int(_unit(p, seed, k, t) * (VOCAB - 1)) for t in range(3))
                row.append(Candidate(self.decode(ids), ids, -_unit(p, ids, "q"), self._lp(p, ids)))
            out.append(row)
        return out

    def _lp(self, prompt, reply) -> float:
        key = reply.token_ids if isinstance(reply, Candidate) else reply
        if key == "impossible":
            return float("-inf")
        return -10 * _unit(prompt, tuple(key) if not isinstance(key, str) else key)

    def score(self, prompts, replies):
        self.calls.append(("score", len(prompts), len(replies)))
        return np.array([[self._lp(p, r) for r in replies] for p in prompts])

    def next_token_logprobs(self, prompts, prefixes):
        self.calls.append(("next_token", len(prompts)))
        rows = np.array(
            [
                [_unit(p, tuple(x), v) for v in range(VOCAB)]
                for p, x in zip(prompts, prefixes, strict=True)
            ]
        )
        return np.log(rows / rows.sum(axis=1, keepdims=True))


def test_generate_repeats_are_hits_and_equal_the_inner_results(tmp_path):
    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    first = cached.generate(PROMPTS[:2], 3, PARAMS, seed=4)
    again = cached.generate(PROMPTS[:2], 3, PARAMS, seed=4)
    assert first == again == CountingEngine().generate(PROMPTS[:2], 3, PARAMS, seed=4)
    assert [c[0] for c in inner.calls] == ["generate"]
    assert (cached.stats.generate_hits, cached.stats.generate_misses) == (1, 1)
    cached.generate(PROMPTS[:2], 3, PARAMS, seed=5)  # another seed is another call
    cached.generate(PROMPTS[:2], 3, SamplingParams(max_new_tokens=7), seed=4)
    assert cached.stats.generate_misses == 3


def test_a_new_wrapper_reads_what_an_earlier_one_wrote(tmp_path):
    CachedEngine(CountingEngine(), tmp_path).generate(PROMPTS, 2, PARAMS, seed=1)
    inner = CountingEngine()
    later = CachedEngine(inner, tmp_path)
    later.generate(PROMPTS, 2, PARAMS, seed=1)
    assert inner.calls == [] and later.stats.generate_hits == 1


def test_another_model_never_shares_entries(tmp_path):
    CachedEngine(CountingEngine("model-a"), tmp_path).generate(PROMPTS, 1, PARAMS, seed=1)
    other = CountingEngine("model-b")
    CachedEngine(other, tmp_path).generate(PROMPTS, 1, PARAMS, seed=1)
    assert other.calls == [("generate", 3, 1)]


def test_score_computes_only_missing_pairs_in_one_inner_call(tmp_path):
    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    replies = [*inner.generate([PROMPTS[2]], 3, PARAMS, seed=9)[0], "a text reply", "impossible"]
    inner.calls.clear()

    full = cached.score(PROMPTS[:2], replies)
    assert inner.calls == [("score", 2, 5)]
    np.testing.assert_array_equal(full, CountingEngine().score(PROMPTS[:2], replies))
    assert full[0, -1] == -np.inf  # -inf survives the round trip

    inner.calls.clear()
    np.testing.assert_array_equal(cached.score(PROMPTS[:2], replies), full)
    assert inner.calls == []

    # a new prompt: only its row is computed
    grown = cached.score(PROMPTS, replies)
    assert inner.calls == [("score", 1, 5)]
    np.testing.assert_array_equal(grown, CountingEngine().score(PROMPTS, replies))
    assert cached.stats == CacheStats(score_hits=10 + 10, score_misses=10 + 5)


def test_generation_stores_each_candidate_score_under_its_own_prompt(tmp_path):
    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    candidates = cached.generate([PROMPTS[0]], 4, PARAMS, seed=2)[0]
    inner.calls.clear()
    scores = cached.score([PROMPTS[0]], candidates)[0]
    assert inner.calls == []
    np.testing.assert_array_equal(scores, [c.model_logprob for c in candidates])


def test_next_token_rows_are_cached_one_by_one(tmp_path):
    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    first = cached.next_token_logprobs(PROMPTS[:2], [[1, 2], []])
    inner.calls.clear()
    mixed = cached.next_token_logprobs(PROMPTS, [[1, 2], [], [3]])
    assert inner.calls == [("next_token", 1)]
    np.testing.assert_array_equal(mixed[:2], first)
    np.testing.assert_array_equal(
        mixed, CountingEngine().next_token_logprobs(PROMPTS, [[1, 2], [], [3]])
    )
    assert cached.stats.next_token_hits == 2 and cached.stats.next_token_misses == 3
    with pytest.raises(EngineError, match="one prefix per prompt"):
        cached.next_token_logprobs(PROMPTS, [[1]])


def test_engine_identity_and_protocol_pass_through(tmp_path):
    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    assert cached.info == inner.info and cached.eos_token_id == 0
    assert cached.decode([1, 2]) == "t1 t2"
    with pytest.raises(EngineError, match="generate"):
        CachedEngine(object(), tmp_path)


def _write_from_another_process(folder: str, seed: int, queue) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a locked or broken cache would warn: fail instead
        cached = CachedEngine(CountingEngine(), folder)
        for round_seed in range(seed, seed + 20):
            candidates = cached.generate(PROMPTS, 2, PARAMS, seed=round_seed)
            cached.score(PROMPTS, [c for row in candidates for c in row])
        queue.put(cached.stats.generate_misses)


def test_two_processes_write_the_same_cache(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_write_from_another_process, args=(str(tmp_path), s, queue))
        for s in (0, 10)  # seeds 10-19 are written by both
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sum(queue.get(timeout=5) for _ in workers) >= 30

    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    for seed in range(30):
        candidates = cached.generate(PROMPTS, 2, PARAMS, seed=seed)
        assert candidates == CountingEngine().generate(PROMPTS, 2, PARAMS, seed=seed)
        cached.score(PROMPTS, [c for row in candidates for c in row])
    assert inner.calls == []


def test_a_corrupt_cache_file_warns_once_and_results_stay_right(tmp_path):
    (tmp_path / CACHE_FILE).write_bytes(b"this is not a database" * 200)
    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    with pytest.warns(RuntimeWarning, match="unusable"):
        scores = cached.score(PROMPTS, ["a", "b"])
    np.testing.assert_array_equal(scores, CountingEngine().score(PROMPTS, ["a", "b"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached.generate(PROMPTS, 1, PARAMS, 0) == CountingEngine().generate(
            PROMPTS, 1, PARAMS, 0
        )
        cached.next_token_logprobs(PROMPTS[:1], [[1]])
    assert not cached.enabled


def test_a_locked_cache_falls_back_to_the_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "BUSY_TIMEOUT_S", 0.05)
    cached = CachedEngine(CountingEngine(), tmp_path)
    cached.score(PROMPTS[:1], ["warm"])  # creates the file
    holder = sqlite3.connect(tmp_path / CACHE_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.warns(RuntimeWarning, match="locked"):
            scores = cached.score(PROMPTS, ["x", "y"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    np.testing.assert_array_equal(scores, CountingEngine().score(PROMPTS, ["x", "y"]))


@pytest.mark.slow
def test_the_real_engine_behind_the_cache_gives_its_own_results(hf_engine, tmp_path):
    cached = CachedEngine(hf_engine, tmp_path)
    fruit = Brand("FruitBox", "delivering fresh fruit")
    prompts = [context_prompt("Name a fruit.", [fruit]), reference_prompt("Name a fruit.")]
    params = SamplingParams(max_new_tokens=4)
    generated = cached.generate(prompts[:1], 2, params, seed=3)
    assert generated == hf_engine.generate(prompts[:1], 2, params, seed=3)
    scores = cached.score(prompts, generated[0])
    np.testing.assert_allclose(scores, hf_engine.score(prompts, generated[0]), rtol=1e-5)
    assert cached.stats.score_hits == 2  # the generator's own pairs came with generation
    rows = cached.next_token_logprobs(prompts, [[], generated[0][0].token_ids[:1]])
    np.testing.assert_array_equal(
        rows, hf_engine.next_token_logprobs(prompts, [[], generated[0][0].token_ids[:1]])
    )
    again = CachedEngine(hf_engine, tmp_path)
    assert again.generate(prompts[:1], 2, params, seed=3) == generated
    np.testing.assert_array_equal(again.score(prompts, generated[0]), scores)
    assert again.stats.misses == 0


def test_garbled_values_are_misses_recomputed_and_overwritten(tmp_path):
    first = CachedEngine(CountingEngine(), tmp_path)
    candidates = first.generate(PROMPTS, 2, PARAMS, seed=1)
    replies = [c for row in candidates for c in row]
    expected_scores = first.score(PROMPTS, replies)
    expected_rows = first.next_token_logprobs(PROMPTS, [[1], [], [2, 3]])
    first.close()
    database = sqlite3.connect(tmp_path / CACHE_FILE, isolation_level=None)
    for table, value in [
        ("generate_calls", "X'7b6e6f74206a736f6e'"),  # '{not json'
        ("scores", "X'00ff'"),  # 2 bytes: not a float64
        ("next_token", "X'0102030405'"),
    ]:
        database.execute(f"UPDATE {table} SET value = {value}")
    database.execute("UPDATE next_token SET dtype = 'not-a-dtype'")
    database.close()

    inner = CountingEngine()
    cached = CachedEngine(inner, tmp_path)
    with pytest.warns(RuntimeWarning, match="do not decode"):
        assert cached.generate(PROMPTS, 2, PARAMS, seed=1) == candidates
    np.testing.assert_array_equal(cached.score(PROMPTS, replies), expected_scores)
    np.testing.assert_array_equal(
        cached.next_token_logprobs(PROMPTS, [[1], [], [2, 3]]), expected_rows
    )
    assert cached.enabled and cached.stats.hits == 0
    assert [kind for kind, *_ in inner.calls] == ["generate", "score", "next_token"]

    repaired = CachedEngine(CountingEngine(), tmp_path)  # the recomputed values were written
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repaired.generate(PROMPTS, 2, PARAMS, seed=1) == candidates
        np.testing.assert_array_equal(repaired.score(PROMPTS, replies), expected_scores)
    assert repaired.stats.misses == 0


def test_nan_and_wrong_width_rows_are_misses(tmp_path):
    first = CachedEngine(CountingEngine(), tmp_path)
    rows = first.next_token_logprobs(PROMPTS, [[1], [], [2]])
    scores = first.score(PROMPTS[:1], ["a"])
    first.close()
    database = sqlite3.connect(tmp_path / CACHE_FILE, isolation_level=None)
    nan = np.float64("nan").tobytes()
    database.execute("UPDATE scores SET value = ?", (nan,))
    short = np.zeros(3).tobytes()
    database.execute(
        "UPDATE next_token SET value = ? WHERE key = (SELECT key FROM next_token LIMIT 1)", (short,)
    )
    database.close()
    cached = CachedEngine(CountingEngine(), tmp_path)
    with pytest.warns(RuntimeWarning, match="do not decode"):
        np.testing.assert_array_equal(cached.score(PROMPTS[:1], ["a"]), scores)
    np.testing.assert_array_equal(cached.next_token_logprobs(PROMPTS, [[1], [], [2]]), rows)


def test_rendering_engines_key_prompts_by_their_turns_and_others_by_their_fields(tmp_path):
    """The hf key of the system style is the wave-1 key (system, user); the reference prompt is
    one entry under every style; a field-reading engine keys every field (topics included)."""
    assert cache_module._prompt_key(PROMPTS[0], rendered=True) == [
        "Answer the question advertising ShopA, selling a.",
        "query",
    ]
    user, system = reference_prompt("q", "user"), reference_prompt("q", "system")
    assert cache_module._prompt_key(user, True) == cache_module._prompt_key(system, True)
    assert cache_module._prompt_key(user, False) != cache_module._prompt_key(system, False)
    topic = reference_prompt(Query("q", "music"))
    assert cache_module._prompt_key(topic, False) != cache_module._prompt_key(system, False)

    class Rendering(CountingEngine):
        renders_prompts = True

    styled = EngineInfo(engine="counting", model="m", extra={"prompt_style": "user"})
    plain = EngineInfo(engine="counting", model="m")
    assert cache_module._engine_identity(styled) == cache_module._engine_identity(plain)
    inner = Rendering()
    cached = CachedEngine(inner, tmp_path)
    cached.score([reference_prompt("q", "system")], ["a"])
    cached.score([reference_prompt("q", "user")], ["a"])
    assert cached.stats == CacheStats(score_hits=1, score_misses=1)
