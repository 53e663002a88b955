"""Scenarios: the schema of a simulated market, the loader, the catalog and the built-ins."""

from scenarios.errors import ScenarioError
from scenarios.loader import (
    dump_scenario,
    expand_variants,
    list_scenarios,
    load_scenario,
    scenario_from_dict,
)
from scenarios.schema import (
    AdvertiserSpec,
    ComponentSpec,
    NetworkSpec,
    QuerySpec,
    SamplingSpec,
    Scenario,
)

__all__ = [
    "AdvertiserSpec",
    "ComponentSpec",
    "NetworkSpec",
    "QuerySpec",
    "SamplingSpec",
    "Scenario",
    "ScenarioError",
    "dump_scenario",
    "expand_variants",
    "list_scenarios",
    "load_scenario",
    "scenario_from_dict",
]
