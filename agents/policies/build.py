"""Building entry policies from ``{type, kwargs}`` specs: a registered name or a plug-in class
(``"package.module:ClassName"``, docs/policies.md), plus the ``targeting`` setting every spec
takes (see ``agents.policies.targeting``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.policies.base import POLICIES, EntryPolicy, EntryRule
from agents.policies.targeting import TopicTargeting, check_targeting
from market.registry import Checked, SpecError, read_spec


def spec_parts(spec: Any, what: str) -> tuple[str, dict[str, Any]]:
    """``(type, kwargs)`` of a ``{type, kwargs}`` spec (``market.registry.read_spec``)."""
    return read_spec(spec, what)


def check_policy(spec: Any) -> Checked:
    """Validate a policy spec without building a policy: the type (a registered name, or a
    plug-in class that is imported and must subclass ``EntryPolicy``), its kwargs against the
    constructor, their values (``check_settings``) and ``targeting`` (in ``Checked.extra``)."""
    checked = POLICIES.check(spec, extra=("targeting",))
    try:
        check_targeting(checked.extra.get("targeting", "all"))
    except ValueError as err:
        raise SpecError("kwargs.targeting", f"policy {checked.type!r}: {err}") from err
    return checked


def build_policy(spec: Any, rng: np.random.Generator) -> EntryRule:
    """Build an entry policy from ``{type: ..., kwargs: {...}}`` (a mapping or a ComponentSpec).

    Besides the policy's own kwargs, ``targeting`` (``"all"`` default, or ``"topic"``) picks
    whether it decides from every round or keeps one policy per query topic (`TopicTargeting`).
    """
    checked = check_policy(spec)

    def make(generator: np.random.Generator) -> EntryPolicy:
        return POLICIES.construct(checked, generator)

    if checked.extra.get("targeting", "all") == "all":
        return make(rng)
    make(np.random.default_rng(0))  # checks a plug-in makes in __init__ fail now, not later
    return TopicTargeting(rng, make, name=checked.type)
