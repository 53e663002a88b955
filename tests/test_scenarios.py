"""Scenarios: built-ins, one-line errors, overrides, variants, catalog expansion, graphs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import networkx as nx
import pytest
import yaml

from market.engines.base import Catalog
from scenarios import (
    Scenario,
    ScenarioError,
    dump_scenario,
    expand_variants,
    list_scenarios,
    load_scenario,
    scenario_from_dict,
)
from scenarios.compact import load_catalog

BUILTINS = [name for name, _ in list_scenarios()]

MINIMAL = """\
name: mini
description: a small market
rounds: 3
queries:
  - {text: "How can I learn to play the guitar?", topic: music}
advertisers:
  - {name: MusicMastery, description: offering online music lessons, topics: [music]}
  - {name: KitchenFix, description: producing kitchen appliances, topics: [cooking]}
"""


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "scenario.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- built-ins -------------------------------------------------------------------------------


def test_the_documented_builtins_exist_with_one_line_descriptions():
    assert {"demo", "free_riding", "dilution", "policies", "token_vs_mosaic", "misreport"} <= set(
        BUILTINS
    )
    for name, description in list_scenarios():
        assert description and "\n" not in description, name


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads_and_resolves_with_the_synthetic_engine(name):
    scenario = load_scenario(name)
    assert scenario.name == name
    synthetic = load_scenario(name, ["engine.type=synthetic"])
    assert synthetic.engine.type == "synthetic"
    for variant in expand_variants(synthetic).values():
        assert variant.engine.type == "synthetic"
        assert variant.variants == {}
        assert variant.advertisers and variant.queries


def test_demo_matches_the_make_run_brief():
    demo = load_scenario("demo")
    assert demo.engine.type == "hf"
    assert demo.mechanism.type == "mosaic"
    assert demo.mechanism.kwargs == {
        "generator": "context",
        "offset": True,
        "candidates": 4,
        "tau": 1.0,
        "listing": "shuffled",  # the small model favours the first-listed brand
    }
    assert 3 <= len(demo.advertisers) <= 4 and 2 <= len(demo.queries) <= 3
    assert demo.sampling.max_new_tokens <= 40 and 15 <= demo.rounds <= 30
    assert {a.policy.type for a in demo.advertisers} == {"epsilon_greedy"}
    relevant = {a.name for a in demo.advertisers for q in demo.queries if q.topic in a.topics}
    assert relevant and relevant != {a.name for a in demo.advertisers}
    # what a mention is worth separates the groups, and the description says so
    values = {a.name: a.value for a in demo.advertisers}
    assert min(values[n] for n in relevant) > max(v for n, v in values.items() if n not in relevant)
    assert "worth less to the unrelated brands" in demo.description


def test_free_riding_compares_offset_on_and_off():
    variants = expand_variants(load_scenario("free_riding"))
    assert variants["offset"].mechanism.kwargs["offset"] is True
    assert variants["no_offset"].mechanism.kwargs["offset"] is False
    base = variants["offset"]
    assert 8 <= len(base.advertisers) <= 12
    assert {a.policy.type for a in base.advertisers} <= {"threshold", "epsilon_greedy"}
    assert all(
        a.policy.kwargs.get("learn_from", "expected") == "expected" for a in base.advertisers
    )


def test_dilution_variants_grow_the_number_of_always_entering_advertisers_then_learn():
    variants = expand_variants(load_scenario("dilution"))
    always = {k: v for k, v in variants.items() if k.startswith("entrants_")}
    sizes = [len(v.advertisers) for v in always.values()]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] >= 8
    assert all(a.policy.type == "always" for v in always.values() for a in v.advertisers)
    learning = [v for k, v in variants.items() if k not in always]
    assert learning and all(len(v.advertisers) == sizes[-1] for v in learning)
    assert all(
        a.policy.type != "always" and a.policy.kwargs.get("learn_from") == "gain"
        for v in learning
        for a in v.advertisers
    )


def test_policies_tournament_has_every_policy_type():
    from agents.policies import POLICIES

    scenario = load_scenario("policies")
    assert {a.policy.type for a in scenario.advertisers} == set(POLICIES)


def test_token_vs_mosaic_replaces_the_whole_mechanism_block():
    variants = expand_variants(load_scenario("token_vs_mosaic"))
    assert variants["mosaic"].mechanism.type == "mosaic"
    token = variants["token_auction"].mechanism
    assert token.type == "token_auction" and "tau" not in token.kwargs
    assert variants["mosaic"].advertisers == variants["token_auction"].advertisers


def test_misreport_variants_change_one_advertisers_strategy():
    variants = expand_variants(load_scenario("misreport"))
    truthful = variants["truthful"].advertiser("MusicMastery").strategy
    assert truthful.type == "truthful"
    scaled = {v.advertiser("MusicMastery").strategy.kwargs.get("factor") for v in variants.values()}
    assert 2.0 in scaled
    others = [a for a in variants["overstate"].advertisers if a.name != "MusicMastery"]
    assert all(a.strategy.type == "truthful" for a in others)


# --- errors: one line naming file, field and fix --------------------------------------------


def test_tau_must_be_positive():
    for tau in ("0", "-1"):
        message = error_of("demo", [f"mechanism.kwargs.tau={tau}"])
        assert message.startswith("builtin/demo.yaml (--set mechanism.kwargs.tau=")
        assert ": mechanism.kwargs.tau: " in message and " — " in message


def test_unknown_keys_suggest_the_closest(write):
    message = error_of(write(MINIMAL + "roundz: 4\n"))
    assert "scenario.yaml: roundz: unknown key — did you mean 'rounds'?" in message
    message = error_of(write(MINIMAL.replace("topics: [music]}", "topics: [music], valeu: 2}")), [])
    assert "advertisers.0.valeu: unknown key — did you mean 'value'?" in message
    message = error_of(write(MINIMAL + "sampling: {temprature: 0.5}\n"))
    assert "sampling.temprature" in message and "'temperature'" in message


def test_component_settings_outside_kwargs_are_pointed_to_kwargs():
    message = error_of("demo", ["advertisers.0.policy={type: threshold, window: 3}"])
    assert "advertisers.0.policy.window: unknown key" in message
    assert "settings go under kwargs" in message


@pytest.mark.parametrize(
    "override, path, listed",
    [
        ("advertisers.0.policy.type=sometimes", "advertisers.0.policy.type", "imitation"),
        ("mechanism.type=vcg", "mechanism.type", "token_auction"),
        ("engine.type=gpt", "engine.type", "synthetic"),
        ("advertisers.0.strategy.type=lie", "advertisers.0.strategy.type", "truthful"),
        ("network.type=star", "network.type", "watts_strogatz"),
    ],
)
def test_unknown_components_list_the_known_ones(override, path, listed):
    message = error_of("demo", [override])
    assert f": {path}: unknown " in message and listed in message


def test_bad_component_kwargs_name_the_kwarg():
    message = error_of("demo", ["advertisers.1.policy.kwargs.epsilom=0.2"])
    assert "advertisers.1.policy.kwargs" in message and "'epsilom'" in message
    assert "did you mean 'epsilon'" in message
    message = error_of("demo", ["mechanism.kwargs.candidats=3"])
    assert "mechanism.kwargs.candidats" in message and "did you mean 'candidates'" in message
    message = error_of("demo", ["mechanism.kwargs.generator=oracle"])
    assert "mechanism.kwargs" in message and "generator" in message
    message = error_of("demo", ["advertisers.0.strategy={type: scale, kwargs: {factor: 0}}"])
    assert "advertisers.0.strategy.kwargs" in message and "factor must be" in message


def test_targeting_must_be_all_or_topic():
    message = error_of("demo", ["advertisers.1.policy.kwargs.targeting=keyword"])
    assert "advertisers.1.policy.kwargs.targeting: unknown targeting 'keyword'" in message
    assert "all, topic" in message
    scenario = load_scenario("demo", ["advertisers.1.policy.kwargs.targeting=topic"])
    assert scenario.advertisers[1].policy.kwargs["targeting"] == "topic"


def test_policies_tournament_has_a_topic_targeting_variant():
    variants = expand_variants(load_scenario("policies"))
    assert set(variants) == {"all_queries", "topic_targeting"}
    every = variants["all_queries"].advertisers
    targeted = variants["topic_targeting"].advertisers
    assert all(a.policy.kwargs.get("targeting", "all") == "all" for a in every)
    assert all(a.policy.kwargs["targeting"] == "topic" for a in targeted)
    assert [a.policy.type for a in every] == [a.policy.type for a in targeted]


def test_missing_queries_or_advertisers(write):
    assert "queries: no queries — " in error_of("demo", ["queries=[]"])
    assert "advertisers: no advertisers — " in error_of("demo", ["advertisers=[]"])
    no_queries = "\n".join(
        line for line in MINIMAL.splitlines() if "queries" not in line and "guitar" not in line
    )
    assert "queries: missing required field" in error_of(write(no_queries))


def test_duplicate_advertiser_names():
    message = error_of("demo", ["advertisers.1.name=MusicMastery"])
    assert "advertisers.1.name: duplicate advertiser name 'MusicMastery'" in message


def test_brand_names_are_one_word():
    message = error_of("demo", ["advertisers.0.name=Music Mastery"])
    assert "advertisers.0.name: brand name 'Music Mastery' must be one word" in message
    assert "advertisers.0.name" in error_of("demo", ["advertisers.0.name=Music,Mastery"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("rounds", "has no '='"),
        ("=3", "no path before '='"),
        ("a..b=3", "bad path 'a..b'"),
        ("rounds=[1", "not valid YAML"),
        ("advertisers.9.value=2", "index 9 is out of range"),
        ("advertisers.Nobody.value=2", "no item named 'Nobody'"),
        ("mechanism.kwargs.tau.x=2", "cannot go into float"),
    ],
)
def test_bad_override_syntax(override, expected):
    message = error_of("demo", [override])
    assert expected in message and "--set" in message and " — " in message


def test_yaml_syntax_error_names_the_line(write):
    path = write(MINIMAL + "rounds: [3\nseed: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}: line 10: ")
    assert "YAML syntax error" in message
    duplicate = error_of(write(MINIMAL + "rounds: 5\n"))
    assert "duplicate key 'rounds'" in duplicate and ": line 9: " in duplicate


def test_file_not_found_lists_the_builtins(tmp_path):
    message = error_of(str(tmp_path / "nothere.yaml"))
    assert "nothere.yaml" in message and "demo" in message and "free_riding" in message
    assert "did you mean 'demo'" in error_of("demmo")
    assert "is a folder" in error_of(str(tmp_path))


def test_empty_file_and_non_mapping(write):
    assert "the file is empty" in error_of(write(""))
    assert "top level must be a mapping" in error_of(write("- a\n- b\n"))


def test_wrong_types_and_ranges_name_the_field():
    assert "rounds: " in error_of("demo", ["rounds=abc"])
    assert "rounds: " in error_of("demo", ["rounds=0"])
    assert "sampling.top_p: " in error_of("demo", ["sampling.top_p=1.5"])
    assert "advertisers.0.value: " in error_of("demo", ["advertisers.0.value=0"])
    assert "queries.0.weight: " in error_of("demo", ["queries.0.weight=-1"])


def test_duplicate_queries_are_rejected():
    message = error_of("demo", ["queries.1.text=How can I learn to play the guitar?"])
    assert "queries.1.text: duplicate query" in message


def test_network_kwargs_are_checked():
    message = error_of("demo", ["network={type: watts_strogatz, kwargs: {k: 9}}"])
    assert "network.kwargs.k" in message
    assert "network.kwargs.q" in error_of("demo", ["network={type: erdos_renyi, kwargs: {q: 1}}"])
    assert "network.kwargs.p" in error_of("demo", ["network={type: erdos_renyi, kwargs: {p: 2}}"])


def test_broken_variants_fail_at_load_time_with_their_path():
    message = error_of("demo", ["variants={v1: {mechanism.kwargs.tau: 0}}"])
    assert ": variants.v1.mechanism.kwargs.tau: " in message
    message = error_of("demo", ["variants={v1: {advertisers.Ghost.value: 2}}"])
    assert "variants.v1.advertisers.Ghost" in message
    message = error_of("demo", ["variants={'bad name': {rounds: 2}}"])
    assert "variants.bad name" in message


# --- overrides and variants -------------------------------------------------------------------


def test_overrides_parse_values_as_yaml():
    scenario = load_scenario(
        "demo",
        [
            "mechanism.kwargs.tau=0.5",
            "engine.type=synthetic",
            "advertisers.0.value=2",
            "advertisers.KitchenFix.policy={type: never}",
            "mechanism.kwargs.offset=false",
            "queries.0.weight=3",
        ],
    )
    assert scenario.mechanism.kwargs["tau"] == 0.5
    assert scenario.mechanism.kwargs["offset"] is False
    assert scenario.engine.type == "synthetic"
    assert scenario.advertisers[0].value == 2.0
    assert scenario.advertiser("KitchenFix").policy.type == "never"
    assert scenario.queries[0].weight == 3.0


def test_overrides_reach_catalog_blocks_and_variants():
    scenario = load_scenario("free_riding", ["advertisers.catalog.per_topic=2"])
    assert len(scenario.advertisers) == 8
    scenario = load_scenario("free_riding", ["variants.no_offset.mechanism.kwargs.tau=2"])
    variants = expand_variants(scenario)
    assert variants["no_offset"].mechanism.kwargs["tau"] == 2
    assert variants["no_offset"].mechanism.kwargs["offset"] is False
    assert variants["offset"].mechanism.kwargs["tau"] == 1.0


def test_overrides_apply_to_the_base_and_reach_every_variant():
    variants = expand_variants(load_scenario("free_riding", ["engine.type=synthetic", "rounds=5"]))
    assert {v.engine.type for v in variants.values()} == {"synthetic"}
    assert {v.rounds for v in variants.values()} == {5}


def test_no_variants_expand_to_base(write):
    scenario = load_scenario(write(MINIMAL))
    assert expand_variants(scenario) == {"base": scenario}


def test_variants_are_applied_on_a_copy_of_the_base(write):
    text = MINIMAL + textwrap.dedent(
        """\
        variants:
          cheap: {mechanism: {type: mosaic, kwargs: {candidates: 2}}, sampling.max_new_tokens: 8}
          rich: {advertisers.MusicMastery.value: 3.0}
        """
    )
    scenario = load_scenario(write(text))
    variants = expand_variants(scenario)
    assert list(variants) == ["cheap", "rich"]
    assert variants["cheap"].mechanism.kwargs == {"candidates": 2}
    assert variants["cheap"].sampling.max_new_tokens == 8
    assert variants["rich"].advertiser("MusicMastery").value == 3.0
    assert variants["rich"].sampling.max_new_tokens == scenario.sampling.max_new_tokens
    assert scenario.advertiser("MusicMastery").value == 1.0


def test_dump_round_trips(write, tmp_path):
    for name in BUILTINS:
        scenario = load_scenario(name)
        text = dump_scenario(scenario)
        assert "catalog" not in yaml.safe_load(text)["advertisers"][0]
        path = tmp_path / f"{name}_dump.yaml"
        path.write_text(text)
        assert load_scenario(path) == scenario


def test_scenario_from_dict_validates_raw_data():
    data = yaml.safe_load(MINIMAL)
    assert scenario_from_dict(data).name == "mini"
    with pytest.raises(ScenarioError, match=r"^<scenario>: rounds: "):
        scenario_from_dict({**data, "rounds": 0})


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_content():
    catalog = load_catalog()
    assert len(catalog.topics) >= 8
    assert len(catalog.brands) >= 24 and len(catalog.queries) >= 20
    for topic in catalog.topics:
        assert sum(b.topics[0] == topic for b in catalog.brands) >= 3, topic
        assert sum(q.topic == topic for q in catalog.queries) >= 2, topic
    names = [b.name for b in catalog.brands]
    assert len(set(names)) == len(names)
    assert {"MusicMastery", "InstaTune", "KitchenFix", "EasySwitch"} <= set(names)
    for brand in catalog.brands:
        assert " " not in brand.name and "," not in brand.name
        assert brand.description.split()[0].endswith("ing"), brand.description


def test_catalog_blocks_expand_into_explicit_lists(write):
    text = """\
    name: compact
    description: drawn from the catalog
    rounds: 2
    queries: {catalog: {topics: [music, travel], per_topic: 1, weight: 2.0}}
    advertisers:
      catalog:
        topics: [music, travel]
        per_topic: 2
        value: 1.5
        policy: {type: threshold, kwargs: {cost: 0.1}}
    """
    scenario = load_scenario(write(text))
    assert [a.name for a in scenario.advertisers] == [
        "MusicMastery",
        "InstaTune",
        "WanderWise",
        "JetSaver",
    ]
    assert all(a.value == 1.5 and a.policy.kwargs == {"cost": 0.1} for a in scenario.advertisers)
    assert [q.topic for q in scenario.queries] == ["music", "travel"]
    assert all(q.weight == 2.0 for q in scenario.queries)


def test_catalog_items_mix_with_explicit_items(write):
    text = """\
    name: mixed
    description: explicit and catalog advertisers
    rounds: 2
    queries: {catalog: {topics: [pets]}}
    advertisers:
      - {name: Acme, description: selling everything, topics: [pets]}
      - catalog: {names: [PawPantry, EasySwitch], policy: {type: never}}
    """
    scenario = load_scenario(write(text))
    assert [a.name for a in scenario.advertisers] == ["Acme", "PawPantry", "EasySwitch"]
    assert scenario.advertiser("Acme").policy.type == "always"
    assert scenario.advertiser("EasySwitch").policy.type == "never"
    assert len(scenario.queries) == sum(q.topic == "pets" for q in load_catalog().queries)


@pytest.mark.parametrize(
    "block, expected",
    [
        ("{catalog: {topics: [astrology]}}", "advertisers.catalog.topics: unknown catalog topic"),
        ("{catalog: {topics: [music], per_topik: 1}}", "did you mean 'per_topic'"),
        ("{catalog: {names: [MusicMastry]}}", "did you mean 'MusicMastery'"),
        ("{catalog: {topics: [music], per_topic: 0}}", "advertisers.catalog.per_topic"),
        ("{catalog: {topics: []}}", "advertisers.catalog.topics: needs a non-empty list"),
        ("{catalog: [music]}", "advertisers.catalog: must be a mapping"),
        ("{catalog: {topics: [music]}, extra: 1}", "advertisers.extra"),
        ("[{catalog: {names: [Nope]}}]", "advertisers.0.catalog.names"),
    ],
)
def test_bad_catalog_blocks(write, block, expected):
    text = MINIMAL.split("advertisers:")[0] + f"advertisers: {block}\n"
    assert expected in error_of(write(text))


# --- graphs -----------------------------------------------------------------------------------


def test_topics_graph_is_bipartite_advertisers_to_topics():
    scenario = load_scenario("demo")
    graph = scenario.topics_graph()
    advertisers = {n for n, d in graph.nodes(data=True) if d["bipartite"] == 0}
    topics = {n for n, d in graph.nodes(data=True) if d["bipartite"] == 1}
    assert advertisers == {a.name for a in scenario.advertisers}
    assert {"music", "privacy", "cooking"} <= topics
    assert all(graph.nodes[n]["kind"] == "advertiser" for n in advertisers)
    assert all(graph.nodes[n]["kind"] == "topic" for n in topics)
    assert nx.is_bipartite(graph)
    assert graph.has_edge("MusicMastery", "music") and not graph.has_edge("MusicMastery", "privacy")
    assert scenario.is_relevant("EasySwitch", "privacy")
    assert not scenario.is_relevant("KitchenFix", "music")
    with pytest.raises(ValueError, match="no advertiser named 'Ghost'"):
        scenario.is_relevant("Ghost", "music")


def test_catalog_for_the_synthetic_engine():
    scenario = load_scenario("demo")
    catalog = scenario.catalog()
    assert isinstance(catalog, Catalog)
    assert catalog.brand_topics["InstaTune"] == ("music",)
    assert len(catalog.query_topics) == len(scenario.queries)
    for query in scenario.queries:  # the demo's queries are all about music
        assert catalog.query_topics[query.text] == query.topic == "music"


def test_advertiser_names_may_not_collide_with_topics():
    assert "is also a topic" in error_of("demo", ["advertisers.0.name=music"])


@pytest.mark.parametrize(
    "network, edges",
    [
        ("{type: complete}", 6),
        ("{type: ring}", 4),
        ("{type: none}", 0),
    ],
)
def test_observation_graph_shapes(network, edges):
    graph = load_scenario("demo", [f"network={network}"]).observation_graph()
    assert sorted(graph.nodes) == sorted(a.name for a in load_scenario("demo").advertisers)
    assert graph.number_of_edges() == edges


def test_random_observation_graphs_are_seeded_by_the_scenario_seed():
    def edges(seed: int, network: str = "{type: erdos_renyi, kwargs: {p: 0.5}}"):
        scenario = load_scenario("free_riding", [f"network={network}", f"seed={seed}"])
        return sorted(scenario.observation_graph().edges)

    assert edges(1) == edges(1)
    assert len({tuple(edges(s)) for s in range(6)}) > 1
    small_world = "{type: watts_strogatz, kwargs: {k: 4, p: 0.3}}"
    assert edges(3, small_world) == edges(3, small_world)
    graph = load_scenario("policies").observation_graph()
    assert graph.number_of_edges() == 7 * 4 // 2


def test_ring_of_one_has_no_self_loop():
    graph = load_scenario(
        "demo", ["advertisers=[{name: Solo, description: x, topics: []}]", "network={type: ring}"]
    ).observation_graph()
    assert list(graph.nodes) == ["Solo"] and graph.number_of_edges() == 0


# --- purity -----------------------------------------------------------------------------------


def test_scenarios_import_neither_torch_nor_mesa():
    code = "import sys, scenarios; scenarios.load_scenario('demo'); print(sorted({'torch', 'mesa'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_scenario_is_frozen():
    scenario = load_scenario("demo")
    with pytest.raises(ValueError):
        scenario.rounds = 5
    assert isinstance(scenario, Scenario)
