"""The one registry helper: specs, did-you-mean errors, signature checks that build nothing, lazy
loaders, plug-in classes, and its use for mechanisms, policies, strategies, networks and rounds."""

from __future__ import annotations

import functools
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from agents.policies import POLICIES, EntryPolicy
from agents.strategies import STRATEGIES
from market import auction
from market.mechanisms import MECHANISMS, MosaicMechanism, TokenAuctionMechanism
from market.registry import (
    Checked,
    CheckedSettings,
    Registry,
    SettingError,
    SpecError,
    finite,
    integer,
    one_of,
    positive,
    probability,
)
from scenarios import load_scenario
from scenarios.networks import NETWORKS


class Widget(CheckedSettings):
    """A component that counts how often it is built."""

    built = 0
    checks = {"size": integer(1, 10), "colour": one_of(("red", "blue"))}

    def __init__(self, *, size: int = 1, colour: str = "red") -> None:
        type(self).built += 1
        self.size = self.checked("size", size)
        self.colour = colour


class Gadget:
    def __init__(self, rng, *, speed: float, label: str = "g") -> None:
        self.rng, self.speed, self.label = rng, speed, label


@pytest.fixture
def widgets():
    Widget.built = 0
    registry = Registry("widget", injected=("rng",))
    registry.register("widget")(Widget)
    registry.register("gadget", Gadget)
    return registry


def test_register_names_the_class_and_behaves_like_a_mapping(widgets):
    assert list(widgets) == ["widget", "gadget"] and len(widgets) == 2
    assert widgets["widget"] is Widget and Widget.name == "widget"
    assert widgets == {"widget": Widget, "gadget": Gadget}
    with pytest.raises(ValueError, match="already registered"):
        widgets.register("widget", Gadget)
    with pytest.raises(ValueError, match="without ':'"):
        widgets.register("a:b", Gadget)
    del widgets["gadget"]
    assert "gadget" not in widgets


def test_check_validates_without_building(widgets):
    checked = widgets.check({"type": "widget", "kwargs": {"size": 3}})
    assert checked == Checked("widget", Widget, {"size": 3}, {"size": 3, "colour": "red"}, {})
    assert Widget.built == 0
    assert widgets.check(SimpleNamespace(type="widget", kwargs=None)).kwargs == {}
    built = widgets.build({"type": "widget", "kwargs": {"size": 3}})
    assert isinstance(built, Widget) and built.size == 3 and Widget.built == 1


def test_a_class_s_signature_is_read_once(widgets, monkeypatch):
    import inspect

    import market.registry as registry_module

    reads = []
    real = inspect.signature
    monkeypatch.setattr(
        registry_module.inspect, "signature", lambda obj: reads.append(obj) or real(obj)
    )
    first = widgets.check({"type": "widget", "kwargs": {"size": 3}})
    second = widgets.check({"type": "widget", "kwargs": {"size": 5, "colour": "blue"}})
    assert reads == [Widget]  # read by the first check only
    assert first.settings == {"size": 3, "colour": "red"}
    assert second.settings == {"size": 5, "colour": "blue"}


def test_unknown_type_suggests_the_closest_and_lists_the_known(widgets):
    with pytest.raises(SpecError) as info:
        widgets.check({"type": "widgit"})
    err = info.value
    assert err.field == "type" and err.problem == "unknown widget type 'widgit'"
    assert err.fix == "did you mean 'widget'? known types: gadget, widget"
    assert str(err) == f"{err.problem} — {err.fix}"


def test_unknown_kwargs_suggest_the_closest_and_list_the_accepted(widgets):
    with pytest.raises(SpecError) as info:
        widgets.check({"type": "widget", "kwargs": {"sise": 2}})
    assert info.value.field == "kwargs.sise"
    assert "widget 'widget' has no kwarg 'sise'" in str(info.value)
    assert "did you mean 'size'? it accepts size, colour" in str(info.value)


def test_injected_parameters_and_required_kwargs(widgets):
    with pytest.raises(SpecError, match=r"'rng' is passed by the caller.*rng="):
        widgets.check({"type": "gadget", "kwargs": {"rng": 1, "speed": 1.0}})
    with pytest.raises(SpecError, match=r"widget 'gadget' needs the kwarg 'speed'") as info:
        widgets.check({"type": "gadget"})
    assert info.value.field == "kwargs"
    gadget = widgets.build({"type": "gadget", "kwargs": {"speed": 2.0}}, "my-rng")
    assert (gadget.rng, gadget.speed, gadget.label) == ("my-rng", 2.0, "g")


def test_the_class_validator_runs_on_every_setting_with_defaults(widgets):
    with pytest.raises(SpecError) as info:
        widgets.check({"type": "widget", "kwargs": {"size": 11}})
    assert info.value.field == "kwargs.size"
    assert info.value.problem == "widget 'widget': size must be an integer in [1, 10], got 11"
    assert Widget.built == 0

    class Bad(Widget):
        def __init__(self, *, size: int = 1, colour: str = "green") -> None:
            super().__init__(size=size, colour=colour)

    widgets.register("bad", Bad)
    with pytest.raises(SpecError, match="colour must be one of 'red', 'blue', got 'green'"):
        widgets.check({"type": "bad"})  # the default itself is checked


def test_extra_kwargs_are_accepted_and_handed_back(widgets):
    checked = widgets.check({"type": "widget", "kwargs": {"size": 2, "mode": "x"}}, extra=["mode"])
    assert checked.kwargs == {"size": 2} and checked.extra == {"mode": "x"}
    with pytest.raises(SpecError, match="it accepts size, colour, mode"):
        widgets.check({"type": "widget", "kwargs": {"nope": 1}}, extra=["mode"])


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("widget", "", "widget spec must be a mapping"),
        ({"kwargs": {}}, "type", "widget spec needs a 'type'"),
        ({"type": "widget", "kwargs": [1]}, "kwargs", "'kwargs' must be a mapping"),
        ({"type": "widget", "args": {}}, "args", "unknown field(s) ['args']"),
    ],
)
def test_malformed_specs(widgets, spec, field, message):
    with pytest.raises(SpecError) as info:
        widgets.check(spec)
    assert info.value.field == field and message in str(info.value)
    if field == "type":
        assert info.value.fix == "known types: gadget, widget"


def test_lazy_registries_import_only_what_is_used():
    loaded = []

    def loader(cls):
        def load():
            loaded.append(cls.__name__)
            return cls

        return load

    registry = Registry("engine", lazy=True)
    registry.register("widget", loader(Widget))
    registry.register("gadget", loader(Gadget))
    assert registry["widget"] is not Widget  # the entry is the loader
    assert loaded == []
    assert registry.check({"type": "widget", "kwargs": {"size": 2}}).cls is Widget
    assert loaded == ["Widget"]


def test_an_error_type_of_the_callers_family():
    class EngineError(RuntimeError):
        pass

    class EngineSpecError(SpecError, EngineError):
        pass

    registry = Registry("engine", error=EngineSpecError)
    with pytest.raises(EngineError, match="unknown engine type 'gpt'"):
        registry.check({"type": "gpt"})


def test_setting_checks():
    assert finite()("x", 3) == 3.0 and isinstance(finite()("x", 3), float)
    assert integer(2)("k", np.int64(4)) == 4
    for check, bad in [
        (finite(), float("nan")),
        (finite(), "1"),
        (positive(), 0),
        (probability(), 1.5),
        (probability(open_low=True), 0.0),
        (integer(1), True),
        (integer(1), 2.0),
        (integer(1, 3), 4),
        (one_of(("a",)), "b"),
    ]:
        with pytest.raises(SettingError) as info:
            check("x", bad)
        assert info.value.name == "x" and str(info.value).startswith("x must be")
    assert integer(1, allow_none=True)("m", None) is None


# --- plug-ins ------------------------------------------------------------------------------------


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """Write a module into a folder on sys.path; forget it afterwards."""
    names = []

    def write(name: str, code: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(code))
        names.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def shapes(plugin_module):
    """A registry open to plug-ins, whose base class lives in an importable module."""
    plugin_module(
        "shapes_base",
        """
        from abc import ABC, abstractmethod

        class Shape(ABC):
            @abstractmethod
            def area(self) -> float: ...
        """,
    )
    from shapes_base import Shape

    return Registry("shape", base=Shape, base_name="tests.Shape", plugins=True, guide="the docs")


def test_plugins_are_imported_and_must_subclass_the_base(shapes, plugin_module):
    plugin_module(
        "shapes_ok",
        """
        from shapes_base import Shape

        class Square(Shape):
            def __init__(self, *, side: float = 1.0):
                self.side = side

            def area(self):
                return self.side**2

        class Abstract(Shape):
            pass

        NOT_A_CLASS = 3
        """,
    )
    assert shapes.build({"type": "shapes_ok:Square", "kwargs": {"side": 2.0}}).area() == 4.0
    assert "shapes_ok:Square" not in shapes  # using a plug-in does not register it
    with pytest.raises(SpecError, match="shape 'shapes_ok:Square' has no kwarg 'sid'"):
        shapes.check({"type": "shapes_ok:Square", "kwargs": {"sid": 2.0}})
    with pytest.raises(SpecError, match=r"is a int, not a subclass of tests.Shape") as info:
        shapes.check({"type": "shapes_ok:NOT_A_CLASS"})
    assert info.value.fix == "subclass tests.Shape (see the docs)"
    with pytest.raises(SpecError, match=r"is abstract: it does not implement area"):
        shapes.check({"type": "shapes_ok:Abstract"})
    with pytest.raises(SpecError, match=r"has no 'Sqare'.*did you mean shapes_ok:Square"):
        shapes.check({"type": "shapes_ok:Sqare"})


@pytest.mark.parametrize(
    ("code", "kind", "message", "fix"),
    [
        (None, "no_such_pkg.mod:Cls", "no module named 'no_such_pkg'", "PYTHONPATH"),
        ("import not_installed_dep\n", "{name}:Cls", "it imports 'not_installed_dep'", "install"),
        ("def broken(:\n", "{name}:Cls", "failed: SyntaxError", "python -c 'import"),
        ("raise RuntimeError('boom')\n", "{name}:Cls", "failed: RuntimeError: boom", "fix"),
        (None, "a-b:Cls", "is not an import path", "package.module:ClassName"),
        (None, "pkg.mod:", "is not an import path", "package.module:ClassName"),
    ],
)
def test_plugin_import_errors_are_one_line(shapes, plugin_module, code, kind, message, fix):
    if code is not None:
        kind = kind.format(name=plugin_module(f"shapes_bad_{abs(hash(code))}", code))
    with pytest.raises(SpecError) as info:
        shapes.check({"type": kind})
    assert info.value.field == "type"
    assert message in info.value.problem and fix in info.value.fix
    assert "\n" not in str(info.value)


def test_unknown_names_mention_plugins_only_where_allowed(shapes, widgets):
    with pytest.raises(SpecError, match="package.module:ClassName"):
        shapes.check({"type": "circle"})
    with pytest.raises(SpecError, match="unknown widget type 'a:b'") as info:
        widgets.check({"type": "a:b"})
    assert "ClassName" not in str(info.value)


# --- the registries of the project ---------------------------------------------------------------


@pytest.mark.parametrize("registry", [MECHANISMS, POLICIES, STRATEGIES, NETWORKS])
def test_project_registries_are_registries_with_valid_checks(registry):
    assert isinstance(registry, Registry)
    for name, cls in registry.items():
        assert cls.name == name
        checked = registry.check({"type": name})  # every default passes its own check
        assert set(getattr(cls, "checks", {})) <= set(checked.settings), name


def test_mechanism_rounds_are_chosen_by_registered_name(monkeypatch):
    assert set(auction.ROUNDS) == set(MECHANISMS)
    calls = []
    monkeypatch.setitem(auction.ROUNDS, "mosaic", lambda *args: calls.append(args[1]) or "ran")
    mechanism = MosaicMechanism()
    assert auction.run_round(None, mechanism, "q", [], None, seed=0, rng=None) == "ran"
    assert calls == [mechanism]
    stranger = SimpleNamespace(name="vcg")
    with pytest.raises(TypeError, match="mosaic, token_auction.*build_mechanism"):
        auction.run_round(None, stranger, "q", [], None, seed=0, rng=None)
    assert TokenAuctionMechanism.name in auction.ROUNDS


def test_validating_scenarios_builds_no_component(monkeypatch):
    """Scenario validation goes through the registries' checks: nothing is constructed."""
    from market.mechanisms import _Settings
    from scenarios.networks import Network

    def refusing(method):
        @functools.wraps(method)  # keeps the signature the registry checks kwargs against
        def refuse(*args, **kwargs):
            raise AssertionError("validation built a component")

        return refuse

    monkeypatch.setattr(Registry, "construct", refusing(Registry.construct))
    monkeypatch.setattr(_Settings, "__post_init__", refusing(_Settings.__post_init__))
    monkeypatch.setattr(Network, "__post_init__", refusing(Network.__post_init__))
    monkeypatch.setattr(EntryPolicy, "__init__", refusing(EntryPolicy.__init__))
    for cls in STRATEGIES.values():
        if "__init__" in vars(cls):
            monkeypatch.setattr(cls, "__init__", refusing(cls.__init__))
    for name in ("demo", "free_riding", "policies", "misreport", "token_vs_mosaic", "dilution"):
        load_scenario(name, ["engine.type=synthetic"])
    with pytest.raises(AssertionError, match="built a component"):
        MosaicMechanism()  # the patches do catch a build
