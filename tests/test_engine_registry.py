"""create_engine: spec forms, lazy imports, kwargs and type errors, catalog and cache wiring."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import market.engines as engines
from market.engines import (
    Candidate,
    Catalog,
    EngineError,
    EngineInfo,
    Prompt,
    SamplingParams,
    create_engine,
)
from market.engines.cache import CachedEngine
from market.prompts import reference_prompt


class RecordingEngine:
    """An engine that remembers what it was built with; every reply is `size` copies of token 1."""

    eos_token_id = 0

    def __init__(self, *, catalog: Catalog | None = None, size: int = 1) -> None:
        self.catalog, self.size = catalog, size
        self.info = EngineInfo(engine="recording", model=f"size-{size}")

    def generate(self, prompts, n, params, seed):
        reply = Candidate("a" * self.size, (1,) * self.size, 0.0, 0.0)
        return [[reply] * n for _ in prompts]

    def score(self, prompts, replies):
        return np.zeros((len(prompts), len(replies)))

    def next_token_logprobs(self, prompts, prefixes):
        return np.log(np.full((len(prompts), 2), 0.5))

    def decode(self, token_ids):
        return "a" * len(token_ids)


class PlainEngine:
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.info = EngineInfo(engine="plain", model="plain")


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(engines.ENGINES, "recording", lambda: RecordingEngine)
    monkeypatch.setitem(engines.ENGINES, "plain", lambda: PlainEngine)


def test_the_base_contracts_are_re_exported():
    assert (Candidate, Prompt, SamplingParams) == (
        engines.base.Candidate,
        engines.base.Prompt,
        engines.base.SamplingParams,
    )
    assert {"hf", "synthetic", "vllm"} <= set(engines.ENGINES)


def test_importing_the_package_and_the_cache_does_not_import_torch():
    code = (
        "import sys, market.engines, market.engines.cache; "
        "from market.engines import create_engine; "
        "sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_shared_checks_rendering_and_the_vllm_adapter_do_not_import_torch():
    code = (
        "import sys, market.engines.chat, market.engines.checks, market.engines.timing, "
        "market.engines.hf.loading, market.engines.vllm, market.engines.synthetic; "
        "sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_spec_as_mapping_or_object(registered):
    built = create_engine({"type": "recording", "kwargs": {"size": 3}})
    assert isinstance(built, RecordingEngine) and built.size == 3
    assert create_engine({"type": "recording"}).size == 1
    as_object = create_engine(SimpleNamespace(type="recording", kwargs={"size": 5}))
    assert as_object.size == 5
    assert create_engine(SimpleNamespace(type="recording", kwargs=None)).size == 1


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(EngineError, match=r"unknown engine type 'gpt9'.*hf, synthetic, vllm"):
        create_engine({"type": "gpt9"})


def test_unknown_kwarg_is_named_with_the_accepted_ones(registered):
    with pytest.raises(EngineError, match=r"no kwarg 'colour'.*accepts size"):
        create_engine({"type": "recording", "kwargs": {"colour": "red"}})


def test_unknown_hf_kwarg_fails_before_loading_a_model():
    with pytest.raises(EngineError, match=r"engine 'hf' has no kwarg 'temperature'.*device"):
        create_engine({"type": "hf", "kwargs": {"temperature": 0.5}})


def test_kwarg_errors_name_the_field_with_a_did_you_mean():
    with pytest.raises(
        EngineError, match=r"^engine\.kwargs\.prompt_stlye: .*did you mean 'prompt_style'"
    ):
        create_engine({"type": "hf", "kwargs": {"prompt_stlye": "user"}})
    with pytest.raises(
        EngineError, match=r"^engine\.kwargs\.prompt_style: .*'usr'.*did you mean 'user'"
    ) as raised:
        create_engine({"type": "hf", "kwargs": {"prompt_style": "usr"}})
    assert raised.value.field == "prompt_style"
    with pytest.raises(EngineError, match=r"^engine\.kwargs\.max_len: max_len must be an integer"):
        create_engine({"type": "synthetic", "kwargs": {"max_len": 0}})
    with pytest.raises(EngineError, match=r"^engine\.kwargs\.threads: threads must be"):
        create_engine({"type": "hf", "kwargs": {"threads": 0}})
    with pytest.raises(EngineError, match=r"^engine\.kwargs\.model: model folder"):
        create_engine({"type": "hf", "kwargs": {"model": "./no/such/folder", "device": "cpu"}})


def test_the_prompt_style_is_recorded_in_the_engine_info():
    assert create_engine({"type": "synthetic"}).info.extra["prompt_style"] == "system"
    styled = create_engine({"type": "synthetic", "kwargs": {"prompt_style": "user"}})
    assert styled.info.extra["prompt_style"] == "user"
    assert engines.base.prompt_style(styled) == "user"
    assert engines.base.prompt_style(PlainEngine()) == "system"  # an engine that does not say


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["hf"], "must be a mapping"),
        ({"kwargs": {}}, "needs a 'type'"),
        ({"type": "hf", "kwargs": ["model"]}, "'kwargs' must be a mapping"),
        ({"type": "hf", "args": {}}, "unknown field"),
    ],
)
def test_malformed_specs_say_what_is_wrong(spec, message):
    with pytest.raises(EngineError, match=message):
        create_engine(spec)


def test_catalog_goes_only_to_engines_that_take_it(registered):
    catalog = Catalog(brand_topics={"A": ("music",)}, query_topics={"q": "music"})
    assert create_engine({"type": "recording"}, catalog=catalog).catalog is catalog
    assert isinstance(create_engine({"type": "plain"}, catalog=catalog), PlainEngine)
    with pytest.raises(EngineError, match="catalog="):
        create_engine({"type": "recording", "kwargs": {"catalog": catalog}})


def test_cache_true_uses_the_configured_folder(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("ADMARKET_CACHE", str(tmp_path / "configured"))
    cached = create_engine({"type": "recording"}, cache=True)
    assert isinstance(cached, CachedEngine)
    assert cached.folder == tmp_path / "configured"
    assert cached.info.model == "size-1"
    prompt = reference_prompt("q")
    assert cached.generate([prompt], 2, SamplingParams(), seed=0)[0][0].token_ids == (1,)
    assert cached.score([prompt], ["a"]).tolist() == [[0.0]]
    assert (tmp_path / "configured" / "engine-calls.sqlite").is_file()


def test_cache_path_selects_the_folder(registered, tmp_path):
    cached = create_engine({"type": "recording"}, cache=tmp_path / "here")
    assert cached.folder == tmp_path / "here"
    assert cached.inner.size == 1
    assert not isinstance(create_engine({"type": "recording"}, cache=False), CachedEngine)
    with pytest.raises(EngineError, match="cache must be"):
        create_engine({"type": "recording"}, cache=3)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_without_vllm_says_how_to_install():
    with pytest.raises(EngineError, match=r"pip install 'admarket\[vllm\]'"):
        create_engine({"type": "vllm", "kwargs": {"model": "some/model"}})


@pytest.mark.skipif(
    importlib.util.find_spec("market.engines.synthetic") is None, reason="no synthetic engine"
)
def test_synthetic_is_built_lazily_with_the_catalog():
    catalog = Catalog(brand_topics={"MusicMastery": ("music",)}, query_topics={"q?": "music"})
    engine = create_engine({"type": "synthetic"}, catalog=catalog)
    assert engine.info.engine == "synthetic"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_p": float("nan")}, r"top_p must be a number in \(0, 1\], got nan — use 1"),
        ({"top_p": 1.5}, r"top_p must be a number in \(0, 1\]"),
        ({"temperature": float("nan")}, r"temperature must be a finite number > 0, got nan"),
        ({"max_new_tokens": 0}, r"max_new_tokens must be an integer >= 1"),
    ],
)
def test_sampling_params_say_what_to_use(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_a_nan_top_p_in_a_scenario_asks_for_a_finite_number():
    from scenarios.errors import ScenarioError
    from scenarios.loader import load_scenario

    with pytest.raises(ScenarioError, match=r"sampling\.top_p: .*finite number"):
        load_scenario("demo", ["sampling.top_p=.nan"])


def test_engines_use_the_one_registry_helper():
    from market.engines import ENGINES, create_engine
    from market.registry import Registry, SpecError

    assert (
        isinstance(ENGINES, Registry)
        and ENGINES.lazy
        and sorted(ENGINES)
        == [
            "hf",
            "synthetic",
            "vllm",
        ]
    )
    with pytest.raises(SpecError, match="engine spec needs a 'type'") as caught:
        create_engine({"kwargs": {}})
    assert isinstance(caught.value, EngineError)
