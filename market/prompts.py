"""Prompt templates for the reference, advertiser and context-aware LLMs (paper, App. C.1).

Every engine receives these same `Prompt`s: the hf engine renders them through the model's chat
template, the synthetic engine parses them back with `parse_prompt`. The wording follows the paper:

- reference π_ref(x): the user query alone, under a neutral system prompt;
- advertiser π_i: "Answer the question advertising <name>, <description>.";
- context-aware π_con: "Answer the query. Try to mention <a1>, who <d1> and <a2>, who <d2>."
  listing every entrant (the more entrants, the more diluted the instruction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from market.engines.base import Prompt

REFERENCE_SYSTEM = "You are a helpful assistant. Answer the user's question."
_ADVERTISER_PREFIX = "Answer the question advertising "
_CONTEXT_PREFIX = "Answer the query. Try to mention "


@dataclass(frozen=True)
class Brand:
    """An advertiser as the prompts see it: a name and a short description ("selling ...")."""

    name: str
    description: str


@dataclass(frozen=True)
class ParsedPrompt:
    """What a prompt asks for: its role, the query, and the brands it names (in order)."""

    role: str  # "reference" | "advertiser" | "context"
    query: str
    brands: tuple[Brand, ...] = ()


def _clean(description: str) -> str:
    return description.strip().rstrip(".")


def reference_prompt(query: str) -> Prompt:
    """π_ref(·|x): the platform's reference LLM."""
    return Prompt(system=REFERENCE_SYSTEM, user=query)


def advertiser_prompt(query: str, brand: Brand) -> Prompt:
    """π_i(·|x): the reference model instructed to advertise one brand (App. C.1).

    Brand names are single words without spaces or commas ("MusicMastery"), as in the paper.
    """
    return Prompt(
        system=f"{_ADVERTISER_PREFIX}{brand.name}, {_clean(brand.description)}.", user=query
    )


def context_prompt(query: str, brands: list[Brand] | tuple[Brand, ...]) -> Prompt:
    """π_con(·|x; c): the context-aware generator listing every entrant (footnote 3, App. C.1).

    With no entrants it is the reference prompt: there is nothing to mention.
    """
    if not brands:
        return reference_prompt(query)
    parts = [f"{b.name}, who {_clean(b.description)}" for b in brands]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return Prompt(system=f"{_CONTEXT_PREFIX}{listing}.", user=query)


# Brand names are single words (the scenario schema enforces it), so "<Name>, who " marks an item.
_BRAND_HEAD = re.compile(r"(?:^|, | and )(?P<name>[^\s,]+), who ")


def parse_prompt(prompt: Prompt) -> ParsedPrompt:
    """Invert the templates above: which role a prompt plays and which brands it names."""
    system = prompt.system or ""
    if system.startswith(_ADVERTISER_PREFIX):
        body = system[len(_ADVERTISER_PREFIX) :].rstrip(".")
        name, _, desc = body.partition(", ")
        return ParsedPrompt("advertiser", prompt.user, (Brand(name.strip(), desc.strip()),))
    if system.startswith(_CONTEXT_PREFIX):
        body = system[len(_CONTEXT_PREFIX) :].rstrip(".")
        heads = list(_BRAND_HEAD.finditer(body))
        ends = [h.start() for h in heads[1:]] + [len(body)]
        brands = tuple(
            Brand(h.group("name"), body[h.end() : end].strip())
            for h, end in zip(heads, ends, strict=True)
        )
        return ParsedPrompt("context", prompt.user, brands)
    return ParsedPrompt("reference", prompt.user)
