"""The dashboard's knobs: what they are, their defaults from a scenario, and the scenario they give.

A knob setting becomes a list of scenario overrides (``scenarios.paths.Override``, the objects
``--set`` produces) applied by ``scenarios.loader.scenario_from_dict``, so the scenario schema
validates every combination exactly as it validates a ``--set`` on the command line. A knob left at
the scenario's value adds no override: with every knob at its default (and the scenario's own
engine type) the dashboard's market is the scenario's base market, round for round.

The relevant / irrelevant counts pick advertisers from the scenario first (in its order) and then
from the brand catalog; an advertiser is *relevant* when one of her topics is the topic of one of
the scenario's queries (per round, relevance is still decided by that round's query topic).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

from agents.policies import POLICIES
from market.mechanisms import MosaicMechanism, build_mechanism
from scenarios.compact import load_catalog
from scenarios.loader import scenario_from_dict
from scenarios.paths import Override, parse_override
from scenarios.schema import Scenario

# label shown in the mechanism menu -> (mechanism type, MOSAIC candidate generator)
MECHANISMS: dict[str, tuple[str, str | None]] = {
    "MOSAIC, context generator": ("mosaic", "context"),
    "MOSAIC, baseline generator": ("mosaic", "reference"),
    "token auction": ("token_auction", None),
}

MAX_CANDIDATES = 64
MAX_COST = 2.0
MAX_TAU = 4.0
MAX_SEED = 999


@dataclass(frozen=True)
class Knobs:
    """One setting of every control: the market the dashboard builds on Reset."""

    mechanism: str  # a key of MECHANISMS
    offset: bool  # MOSAIC's payment offset C_i (Sec. 5.3)
    tau: float  # weight of the reference LLM in MOSAIC's objective (eq. 1)
    candidates: int  # M, replies drawn per MOSAIC auction
    entry_cost: float  # cost of entering, for every policy that takes one
    relevant: int  # advertisers relevant to the query mix
    irrelevant: int  # advertisers relevant to none of its topics
    engine: str  # engine type
    seed: int  # root seed of the market's random streams


@dataclass(frozen=True)
class Cast:
    """The advertisers the counts pick from, relevant and irrelevant: in each list the scenario's
    own first, then the catalog's other brands, which take the value, policy and strategy of the
    scenario's first advertiser of the same kind (of any kind when it has none)."""

    relevant: tuple[dict[str, Any], ...]
    irrelevant: tuple[dict[str, Any], ...]
    own: tuple[str, ...]  # the scenario's advertisers' names, in its order


def cast(base: Scenario) -> Cast:
    """Who the relevant / irrelevant counts of ``base`` pick from (see `Cast`)."""
    query_topics = {q.topic for q in base.queries}
    own = [a.model_dump(mode="json") for a in base.advertisers]
    kinds: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for spec in own:
        kinds[bool(query_topics & set(spec["topics"]))].append(spec)
    taken = {a["name"] for a in own} | set(base.topics)
    for brand in load_catalog().brands:
        if brand.name in taken:
            continue
        kind = bool(query_topics & set(brand.topics))
        template = (kinds[kind] or own)[0]
        kinds[kind].append(
            {
                **{k: template[k] for k in ("value", "policy", "strategy")},
                "name": brand.name,
                "description": brand.description,
                "topics": list(brand.topics),
            }
        )
    return Cast(tuple(kinds[True]), tuple(kinds[False]), tuple(a["name"] for a in own))


def takes_cost(policy: dict[str, Any]) -> bool:
    """Whether an entry policy has an entry ``cost`` setting."""
    return "cost" in inspect.signature(POLICIES[policy["type"]].__init__).parameters


def _cost(policy: dict[str, Any]) -> float:
    default = inspect.signature(POLICIES[policy["type"]].__init__).parameters["cost"].default
    return float(policy.get("kwargs", {}).get("cost", default))


def defaults(base: Scenario) -> Knobs:
    """The knobs that reproduce the scenario's base market (on the synthetic engine)."""
    mechanism = build_mechanism(base.mechanism)
    mosaic = mechanism if isinstance(mechanism, MosaicMechanism) else MosaicMechanism()
    kind = (base.mechanism.type, mosaic.generator if base.mechanism.type == "mosaic" else None)
    people = cast(base)
    own = set(people.own)
    costs = [
        _cost(a.policy.model_dump()) for a in base.advertisers if takes_cost(a.policy.model_dump())
    ]
    return Knobs(
        mechanism=next(label for label, value in MECHANISMS.items() if value == kind),
        offset=bool(mosaic.offset),
        tau=float(mosaic.tau),
        candidates=int(mosaic.candidates),
        entry_cost=costs[0] if costs else 0.0,
        relevant=sum(a["name"] in own for a in people.relevant),
        irrelevant=sum(a["name"] in own for a in people.irrelevant),
        engine="synthetic",
        seed=int(base.seed),
    )


def engine_choices(base: Scenario) -> list[str]:
    """Engine types the menu offers: synthetic, the embedded LLM, and the scenario's own."""
    return list(dict.fromkeys(["synthetic", "hf", base.engine.type]))


def overrides(base: Scenario, knobs: Knobs) -> list[Override]:
    """The scenario overrides that turn ``base`` into the market of ``knobs``."""
    start = defaults(base)
    found: list[Override] = [_set("variants", {})]  # the knobs replace the scenario's variants
    found += _mechanism(base, start, knobs)
    if knobs.engine != base.engine.type:
        found.append(_set("engine", {"type": knobs.engine}))
    if knobs.seed != base.seed:
        found.append(_set("seed", knobs.seed))
    people = _advertisers(base, start, knobs)
    if people is not None:
        found.append(
            Override(
                text=(
                    f"advertisers=<{knobs.relevant} relevant, {knobs.irrelevant} irrelevant, "
                    f"entry cost {knobs.entry_cost:g}>"
                ),
                path=("advertisers",),
                value=people,
            )
        )
    return found


def scenario_for(base: Scenario, knobs: Knobs) -> Scenario:
    """The validated scenario of one knob setting (raises ``ScenarioError`` like ``--set``)."""
    return scenario_from_dict(base.model_dump(mode="json"), base.source, overrides(base, knobs))


def _set(path: str, value: Any) -> Override:
    return parse_override(f"{path}={json.dumps(value)}")


def _mechanism(base: Scenario, start: Knobs, knobs: Knobs) -> list[Override]:
    kind, generator = MECHANISMS[knobs.mechanism]
    if kind == "token_auction":
        if base.mechanism.type == kind:
            return []
        return [_set("mechanism", {"type": kind, "kwargs": {}})]
    settings = {
        "generator": generator,
        "offset": knobs.offset,
        "tau": knobs.tau,
        "candidates": knobs.candidates,
    }
    if base.mechanism.type != "mosaic":
        return [_set("mechanism", {"type": "mosaic", "kwargs": settings})]
    was = {
        "generator": MECHANISMS[start.mechanism][1],
        "offset": start.offset,
        "tau": start.tau,
        "candidates": start.candidates,
    }
    return [_set(f"mechanism.kwargs.{k}", v) for k, v in settings.items() if v != was[k]]


def _advertisers(base: Scenario, start: Knobs, knobs: Knobs) -> list[dict[str, Any]] | None:
    """The advertiser list of ``knobs``, or None when it is the scenario's own."""
    if (knobs.relevant, knobs.irrelevant, knobs.entry_cost) == (
        start.relevant,
        start.irrelevant,
        start.entry_cost,
    ):
        return None
    people = cast(base)
    chosen = list(people.relevant[: knobs.relevant]) + list(people.irrelevant[: knobs.irrelevant])
    order = {name: i for i, name in enumerate(people.own)}
    # the scenario's advertisers keep their order (and so their random streams); new ones follow
    chosen.sort(key=lambda a: order.get(a["name"], len(order)))
    if knobs.entry_cost != start.entry_cost:
        for spec in chosen:
            if takes_cost(spec["policy"]):
                kwargs = dict(spec["policy"].get("kwargs") or {})
                spec["policy"] = {**spec["policy"], "kwargs": {**kwargs, "cost": knobs.entry_cost}}
    return chosen


def model_params(base: Scenario, start: Knobs, fixed: dict[str, Any]) -> dict[str, Any]:
    """SolaraViz ``model_params``: one input per knob starting at ``start``, plus ``fixed``
    values passed unchanged to the model on every Reset."""
    from mesa.visualization import Slider

    people = cast(base)
    lowest_relevant = 1 if people.relevant else 0
    return {
        **fixed,
        "mechanism": {
            "type": "Select",
            "value": start.mechanism,
            "values": list(MECHANISMS),
            "label": "Mechanism",
        },
        "offset": {"type": "Checkbox", "value": start.offset, "label": "Payment offset (MOSAIC)"},
        "tau": Slider("τ (reference weight)", start.tau, 0.1, max(MAX_TAU, start.tau), 0.1),
        "candidates": Slider(
            "M (candidates)", start.candidates, 1, max(MAX_CANDIDATES, start.candidates), 1
        ),
        "entry_cost": Slider(
            "Entry cost", start.entry_cost, 0.0, max(MAX_COST, start.entry_cost), 0.05, float
        ),
        "relevant": Slider(
            "Relevant advertisers", start.relevant, lowest_relevant, len(people.relevant), 1, int
        ),
        "irrelevant": Slider(
            "Irrelevant advertisers",
            start.irrelevant,
            0 if people.relevant else 1,
            len(people.irrelevant),
            1,
            int,
        ),
        "engine": {
            "type": "Select",
            "value": start.engine,
            "values": engine_choices(base),
            "label": "Engine (hf: embedded LLM, slow)",
        },
        "seed": Slider("Seed", start.seed, 0, max(MAX_SEED, start.seed), 1, int),
    }
