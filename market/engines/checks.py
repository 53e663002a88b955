"""Argument checks shared by every engine, torch-free (vLLM checks without importing torch).

Each check raises `EngineError` with one line naming the argument and what to pass instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from market.engines.base import Candidate, EngineError, Prompt, SamplingParams
from market.prompts import PROMPT_STYLES


def brief(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line (its first non-empty line), for one-line error messages."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_prompts(prompts: Sequence[Prompt], argument: str = "prompts") -> list[Prompt]:
    """A non-empty list of `Prompt`."""
    if isinstance(prompts, (str, Prompt)) or not isinstance(prompts, Sequence):
        raise EngineError(f"{argument} must be a list of Prompt, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise EngineError(f"{argument} is empty: pass at least one Prompt")
    for k, prompt in enumerate(prompts):
        if not isinstance(prompt, Prompt):
            raise EngineError(
                f"{argument}[{k}] must be a market.prompts.Prompt (build it with "
                f"reference_prompt, advertiser_prompt or context_prompt), got "
                f"{type(prompt).__name__}"
            )
    return prompts


def check_generate_args(n: int, params: SamplingParams, seed: int) -> None:
    """n sequences per prompt (an integer >= 1), SamplingParams, a seed (an integer >= 0)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise EngineError(f"n (sequences per prompt) must be an integer >= 1, got {n!r}")
    if not isinstance(params, SamplingParams):
        raise EngineError(
            f"params must be a market.engines.SamplingParams, got {type(params).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EngineError(f"seed must be an integer >= 0, got {seed!r}")


def check_replies(replies: Sequence[Candidate | str]) -> list[Candidate | str]:
    """A list of Candidate (scored by token ids) or str (tokenized as is)."""
    if isinstance(replies, (str, Candidate)) or not isinstance(replies, Sequence):
        raise EngineError(
            f"replies must be a list of Candidate or str, got {type(replies).__name__}"
        )
    replies = list(replies)
    for k, reply in enumerate(replies):
        if not isinstance(reply, (Candidate, str)):
            raise EngineError(
                f"replies[{k}] must be a Candidate or a str, got {type(reply).__name__}"
            )
    return replies


def check_prefixes(prompts: list[Prompt], prefixes: Sequence[Sequence[int]]) -> list[list[int]]:
    """One list of integer token ids per prompt."""
    if isinstance(prefixes, str) or not isinstance(prefixes, Sequence):
        raise EngineError(
            f"prefixes must be a list of token-id lists, got {type(prefixes).__name__}"
        )
    if len(prefixes) != len(prompts):
        raise EngineError(
            f"prefixes must hold one token-id prefix per prompt: got {len(prefixes)} prefixes "
            f"for {len(prompts)} prompts"
        )
    try:
        return [[int(t) for t in prefix] for prefix in prefixes]
    except (TypeError, ValueError) as exc:
        raise EngineError(f"prefixes must hold integer token ids ({brief(exc)})") from exc


def check_prompt_style(style: object, default: str) -> str:
    """The engine kwarg ``prompt_style``: None for ``default``, else one of `PROMPT_STYLES`."""
    if style is None:
        return default
    if isinstance(style, str) and style in PROMPT_STYLES:
        return style
    close = difflib.get_close_matches(str(style), list(PROMPT_STYLES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise EngineError(
        f"prompt_style {style!r} is not a prompt style: {hint}use one of "
        f"{', '.join(PROMPT_STYLES)} (unset: {default})",
        field="prompt_style",
    )


def check_positive_int(value: object, name: str, *, optional: bool = False) -> None:
    """An engine kwarg that must be an integer >= 1 (or None when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(
            f"{name} must be an integer >= 1{' or unset' if optional else ''}, got {value!r}",
            field=name,
        )
