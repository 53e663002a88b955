"""Plug-in entry policies named by import path, and the guide docs/policies.md, whose code blocks
(the policy module, the scenario and its tests) are written to files and run here."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from market.cli import main
from market.engines.synthetic import SyntheticEngine
from market.model import MarketModel
from market.runner import read_table
from scenarios import ScenarioError, load_scenario

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "policies.md"
PLUGIN = "my_policies:ExploreThenCommit"


def guide_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the guide, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.M | re.S)


def guide_files() -> dict[str, str]:
    """The blocks that start with a comment naming their file: ``# my_policies.py``."""
    files = {}
    for _, code in guide_blocks():
        first = code.splitlines()[0]
        if re.fullmatch(r"# [\w.]+\.(py|yaml)", first):
            files[first[2:]] = code
    return files


@pytest.fixture
def guide(tmp_path, monkeypatch):
    """The guide's files in a folder on sys.path, which is also the working directory."""
    for name, code in guide_files().items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for module in ("my_policies", "test_my_policies", "plugins_bad"):
        sys.modules.pop(module, None)


def test_the_guide_gives_a_module_a_scenario_and_tests():
    assert set(guide_files()) == {"my_policies.py", "my_market.yaml", "test_my_policies.py"}


def test_the_guides_own_tests_pass(guide):
    module = importlib.import_module("test_my_policies")
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 4
    for test in tests:
        test()


def test_the_guides_scenario_runs_the_plugin_by_its_rule(guide):
    scenario = load_scenario("my_market.yaml")
    assert {a.policy.type for a in scenario.advertisers} == {PLUGIN}
    model = MarketModel(scenario, SyntheticEngine(scenario.catalog()))
    for _ in range(scenario.rounds):
        model.step()
    plugin = importlib.import_module("my_policies").ExploreThenCommit
    for agent in model.advertisers:
        assert type(agent.policy) is plugin and agent.policy_type == PLUGIN
        for t, record in enumerate(agent.history):  # the rule, recomputed from the records
            ins = [r.utility for r in agent.history[:t] if r.entered]
            outs = [r.outside_reward for r in agent.history[:t] if not r.entered]
            mean_out = sum(outs) / len(outs) if outs else 0.0
            expected = t < 5 or not ins or sum(ins) / len(ins) - 0.3 >= mean_out
            assert record.entered == expected, (agent.name, t)
    late = {a.name: sum(r.entered for r in a.history[5:]) for a in model.advertisers}
    assert min(late.values()) < len(model.advertisers[0].history[5:]), late  # someone stays out


def test_the_command_line_runs_a_plugin_scenario(guide, capsys):
    assert main(["run", "my_market.yaml", "--out", "run", "--no-report"]) == 0
    assert set(read_table(guide / "run", "advertisers")["policy"]) == {PLUGIN}
    assert "my_policies:ExploreThenCommit" in (guide / "run" / "scenario.yaml").read_text()


def test_the_guides_error_line_is_the_one_users_get(guide):
    [shown] = [code.strip() for lang, code in guide_blocks() if lang == "text"]
    text = (guide / "my_market.yaml").read_text().replace("explore: 5", "explore: 0")
    (guide / "my_market.yaml").write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario("my_market.yaml")
    assert str(info.value) == shown


BAD_PLUGINS = {
    "missing module": ("no_such_package.policies:Mine", "type", "no module named"),
    "missing class": ("my_policies:ExploreThenComit", "type", "did you mean"),
    "not a policy": ("my_policies:math", "type", "not a subclass of agents.EntryPolicy"),
    "abstract": ("plugins_bad:Unfinished", "type", "is abstract: it does not implement _decide"),
    "module raises": ("plugins_bad:Broken", "type", "failed: ZeroDivisionError"),
    "not a path": ("my_policies.ExploreThenCommit", "type", "package.module:ClassName"),
}


@pytest.mark.parametrize(("kind", "field", "expected"), BAD_PLUGINS.values(), ids=BAD_PLUGINS)
def test_bad_plugins_are_one_line_naming_file_and_field(guide, kind, field, expected):
    code = "from agents import EntryPolicy\n\nclass Unfinished(EntryPolicy):\n    pass\n"
    if "Broken" in kind:
        code += "\n1 / 0\n"
    (guide / "plugins_bad.py").write_text(code)
    with pytest.raises(ScenarioError) as info:
        load_scenario("my_market.yaml", [f"advertisers.catalog.policy.type={kind}"])
    message = str(info.value)
    assert message.startswith("my_market.yaml")
    assert f": advertisers.0.policy.{field}: " in message and expected in message
    assert " — " in message and "\n" not in message


def test_bad_plugin_kwargs_are_named(guide):
    message = str(load_error("advertisers.catalog.policy.kwargs.explor=3"))
    assert ": advertisers.0.policy.kwargs.explor: " in message
    assert "did you mean 'explore'? it accepts explore, cost, learn_from, targeting" in message
    message = str(load_error("advertisers.catalog.policy.kwargs.cost=.nan"))
    assert ": advertisers.0.policy.kwargs.cost: " in message and "cost must be a finite" in message


def test_topic_targeting_wraps_a_plugin(guide):
    scenario = load_scenario(
        "my_market.yaml", ["advertisers.catalog.policy.kwargs.targeting=topic"]
    )
    model = MarketModel(scenario, SyntheticEngine(scenario.catalog()))
    model.step()
    agent = model.advertisers[0]
    assert type(agent.policy.inner["music"]).__name__ == "ExploreThenCommit"


def test_a_bad_plugin_exits_2_with_one_line_and_writes_nothing(guide, capsys):
    code = main(["run", "my_market.yaml", "--set", "advertisers.catalog.policy.type=nope:X"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    assert "advertisers.0.policy.type: cannot import 'nope'" in line
    assert not (guide / "runs").exists()


def load_error(override: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario("my_market.yaml", [override])
    return info.value
