"""LLM engines behind one protocol, built from a ``{type, kwargs}`` block.

    from market.engines import create_engine
    engine = create_engine({"type": "hf"})                      # embedded SmolLM2-135M-Instruct
    engine = create_engine({"type": "synthetic", "kwargs": {...}}, catalog=catalog)
    engine = create_engine(scenario.engine, cache=True)         # SQLite call cache

Engine classes are imported only when built, so importing this package never imports torch: the
synthetic engine and the mechanisms work without paying for it.

Layout: `base` (the protocol, `SamplingParams`, `Candidate`, `EngineInfo`, `EngineError`; the
structured `Prompt` comes from `market.prompts`); one adapter per engine — `hf` (loading,
sampling, scoring), `vllm`, `synthetic` (world model, engine, exact oracle); torch-free code they
share — `checks` (argument checks) and `chat` (chat-template rendering, the prompts' shared
prefix, the measured default prompt style); and wrappers beside the protocol — `cache` (SQLite
call cache) and `timing` (wall time inside the engine).
"""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path

from market.engines.base import (
    Candidate,
    Catalog,
    Engine,
    EngineError,
    EngineInfo,
    Prompt,
    SamplingParams,
)
from market.registry import Registry, SpecError

__all__ = [
    "ENGINES",
    "Candidate",
    "Catalog",
    "Engine",
    "EngineError",
    "EngineInfo",
    "Prompt",
    "SamplingParams",
    "create_engine",
]


def _hf() -> type:
    from market.engines.hf import HFEngine

    return HFEngine


def _synthetic() -> type:
    from market.engines.synthetic import SyntheticEngine

    return SyntheticEngine


def _vllm() -> type:
    from market.engines.vllm import VLLMEngine

    return VLLMEngine


class EngineSpecError(SpecError, EngineError):
    """A malformed engine ``{type, kwargs}`` block: both a registry `SpecError` and an
    `EngineError`, so callers of either kind catch it."""


# Engine type -> a function returning the engine class (imported on first use), in the one
# registry every ``{type, kwargs}`` component uses (`market.registry`).
ENGINES = Registry("engine", lazy=True, injected=("catalog",), error=EngineSpecError)
ENGINES.register("hf", _hf)
ENGINES.register("synthetic", _synthetic)
ENGINES.register("vllm", _vllm)


def create_engine(
    spec, *, catalog: Catalog | None = None, cache: bool | str | os.PathLike = False
) -> Engine:
    """Build the engine a spec names.

    ``spec``: ``{"type": ..., "kwargs": {...}}`` or any object with ``.type`` / ``.kwargs``;
    ``catalog``: given to engines that take one (synthetic), ignored by real LLMs;
    ``cache``: False, True (the SQLite call cache in ``$ADMARKET_CACHE``, default the user's cache
    folder) or a folder for the cache file.

    Errors are `EngineError`s of one line; one about a kwarg starts with ``engine.kwargs.<name>:``.
    """
    engine_type, kwargs = ENGINES.read(spec)
    if not isinstance(cache, (bool, str, os.PathLike)) and cache is not None:
        raise EngineError(
            f"cache must be False, True or a folder path, got {type(cache).__name__} {cache!r}"
        )
    if engine_type not in ENGINES:
        raise EngineError(
            f"unknown engine type {engine_type!r}: known types are {', '.join(sorted(ENGINES))}"
        )
    engine_class = ENGINES[engine_type]()
    parameters = inspect.signature(engine_class).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = sorted(
        name
        for name, p in parameters.items()
        if name != "catalog"
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    if "catalog" in kwargs:
        raise EngineError(
            f"engine {engine_type!r}: pass the catalog as create_engine(..., catalog=...), "
            "not in kwargs"
        )
    if not takes_any:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), accepted, n=1)
            raise EngineError(
                f"engine.kwargs.{unknown[0]}: engine {engine_type!r} has no kwarg "
                f"{unknown[0]!r} — {f'did you mean {close[0]!r}? ' if close else ''}it accepts "
                f"{', '.join(accepted) or 'no kwargs'} (known engine types: "
                f"{', '.join(sorted(ENGINES))})",
                field=str(unknown[0]),
            )
    if catalog is not None and ("catalog" in parameters or takes_any):
        kwargs["catalog"] = catalog
    try:
        engine = engine_class(**kwargs)
    except EngineError as error:
        if error.field is None or str(error).startswith("engine.kwargs."):
            raise
        raise EngineError(f"engine.kwargs.{error.field}: {error}", field=error.field) from error
    if cache is False or cache is None:
        return engine
    from market.engines.cache import CachedEngine, cache_root

    return CachedEngine(engine, cache_root() if cache is True else Path(cache))
