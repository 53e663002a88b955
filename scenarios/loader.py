"""Load scenarios: built-in names or YAML files, ``--set`` overrides, variants, YAML dumps.

Every problem becomes a ``ScenarioError`` whose message is one line,
``<file>: <field.path>: <problem> — <fix>``, e.g.
``builtin/demo.yaml: mechanism.kwargs.tau: tau must be a finite number > 0, got 0 — ...``.

Order of work: read the YAML; apply ``--set`` overrides (those that index into the advertiser or
query list, ``advertisers.0.value``, after expanding catalog blocks); expand catalog blocks;
validate; resolve every variant once, so that a broken variant fails at load time too.
"""

from __future__ import annotations

import copy
import difflib
import reprlib
import typing
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from scenarios.compact import expand_compact_forms
from scenarios.errors import FieldError, ScenarioError, join_path
from scenarios.paths import Override, parse_override, set_path, split_path
from scenarios.safe_yaml import MAX_YAML_NODES, UniqueKeyLoader, check_expansion, decode
from scenarios.schema import Scenario

__all__ = [
    "MAX_YAML_NODES",
    "ScenarioError",
    "builtin_names",
    "dump_scenario",
    "expand_variants",
    "list_scenarios",
    "load_scenario",
    "read_scenario_data",
    "scenario_from_dict",
]

_LIST_FIELDS = ("advertisers", "queries")


def builtin_names() -> list[str]:
    """Names of the built-in scenarios (``scenarios/builtin/<name>.yaml``)."""
    folder = resources.files("scenarios") / "builtin"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def list_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) of every built-in scenario."""
    listing = []
    for name in builtin_names():
        origin, path = _builtin_path(name)
        data = _read_yaml(path, origin)
        lines = str(data.get("description", "")).strip().splitlines()
        listing.append((name, lines[0] if lines else ""))
    return listing


def load_scenario(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Load a built-in scenario by name ("demo") or a YAML file, with ``dotted.path=value``
    overrides (values parsed as YAML). Raises ScenarioError on any problem."""
    origin, path = _locate(str(name_or_path))
    parsed: list[Override] = []
    for text in overrides:
        try:
            parsed.append(parse_override(text))
        except FieldError as err:
            raise ScenarioError(
                f"--set {_shown(text)}", err.path or "override", err.problem, err.fix
            ) from err
    return scenario_from_dict(_read_yaml(path, origin), origin, parsed)


def read_scenario_data(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """(origin shown in messages, raw data) of a built-in name or a YAML file, not yet validated:
    `scenario_from_dict` validates it, so one file read serves many overrides (a sweep's grid)."""
    origin, path = _locate(str(name_or_path))
    return origin, _read_yaml(path, origin)


def scenario_from_dict(
    data: dict[str, Any], origin: str = "<scenario>", overrides: Sequence[Override] = ()
) -> Scenario:
    """Validate raw scenario data (as read from YAML) into a resolved Scenario."""
    data = copy.deepcopy(data)
    early = [o for o in overrides if not _indexes_list(o.path)]
    late = [o for o in overrides if _indexes_list(o.path)]
    _apply(data, early, origin)
    data = _expand(data, origin, "", overrides)
    _apply(data, late, origin)
    scenario = _validate(data, origin, overrides)
    scenario._source = origin
    expand_variants(scenario)
    return scenario


def expand_variants(scenario: Scenario) -> dict[str, Scenario]:
    """{"base": scenario} when it has no variants; else one resolved Scenario per variant name:
    the base with the variant's overrides applied and ``variants`` emptied."""
    if not scenario.variants:
        return {"base": scenario}
    base = scenario.model_dump(mode="python")
    base["variants"] = {}
    resolved = {}
    for name, overrides in scenario.variants.items():
        where = join_path("variants", name)
        data = copy.deepcopy(base)
        for key, value in overrides.items():
            try:
                set_path(data, split_path(key), copy.deepcopy(value))
            except FieldError as err:
                raise ScenarioError(
                    scenario.source, join_path(where, key), err.problem, err.fix
                ) from err
        data = _expand(data, scenario.source, where)
        variant = _validate(data, scenario.source, (), prefix=where)
        variant._source = f"{scenario.source} [variant {name}]"
        resolved[name] = variant
    return resolved


def dump_scenario(scenario: Scenario) -> str:
    """The fully resolved scenario as YAML (loading it back gives an equal Scenario)."""
    return yaml.safe_dump(
        scenario.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
    )


def _indexes_list(path: tuple[str, ...]) -> bool:
    """'advertisers.0.value', 'advertisers.MusicMastery.value' address items that exist only once
    catalog blocks are expanded; 'advertisers.catalog.per_topic' addresses the block itself."""
    return len(path) > 1 and path[0] in _LIST_FIELDS and "catalog" not in path


def _apply(data: dict[str, Any], overrides: Sequence[Override], origin: str) -> None:
    for override in overrides:
        try:
            set_path(data, override.path, copy.deepcopy(override.value))
        except FieldError as err:
            raise ScenarioError(
                f"{origin} (--set {_shown(override.text)})", err.path, err.problem, err.fix
            ) from err


def _expand(
    data: dict[str, Any], origin: str, prefix: str, overrides: Sequence[Override] = ()
) -> dict[str, Any]:
    try:
        return expand_compact_forms(data)
    except FieldError as err:
        origin = _blame(origin, err.path, overrides)
        raise ScenarioError(origin, join_path(prefix, err.path), err.problem, err.fix) from err


def _validate(
    data: dict[str, Any], origin: str, overrides: Sequence[Override], prefix: str = ""
) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path, problem, fix = _describe(error)
        origin = _blame(origin, path, overrides)
        raise ScenarioError(origin, join_path(prefix, path), problem, fix) from exc


def _blame(origin: str, path: str, overrides: Sequence[Override]) -> str:
    """Name the --set override in the origin when the faulty field lies on its path."""
    faulty = tuple(path.split("."))
    for override in overrides:
        n = min(len(faulty), len(override.path))
        if path and faulty[:n] == override.path[:n]:
            return f"{origin} (--set {_shown(override.text)})"
    return origin


def _shown(text: str) -> str:
    """An override as messages show it: on one line, at most 60 characters."""
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: dict[str, Any]) -> tuple[str, str, str]:
    """(dotted path, problem, fix) for one pydantic error."""
    loc = tuple(error["loc"])
    where = join_path(*loc)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        return join_path(where, cause.path), cause.problem, cause.fix
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        fix = (f"did you mean {close[0]!r}? " if close else "") + f"known keys: {', '.join(known)}"
        if set(known) == {"type", "kwargs"}:
            fix += f"; settings go under kwargs ({'.'.join(map(str, loc[:-1]))}.kwargs)"
        return where, "unknown key", fix
    if kind == "missing":
        return where, "missing required field", f"add {loc[-1]}: ..."
    message = error["msg"]
    shown = _SHORT.repr(error.get("input"))  # bounded work and length whatever the input's size
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return where, f"{message}, got {shown}", _FIXES.get(kind, "correct the value")


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60


_FIXES = {
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
    "float_type": "use a number",
    "finite_number": "use a finite number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "use text (quote it in YAML)",
    "list_type": "use a YAML list ([a, b] or '- item' lines)",
    "dict_type": "use a YAML mapping (key: value)",
    "model_type": "use a YAML mapping (key: value)",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "string_too_short": "write a non-empty text",
}


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at ``loc`` inside Scenario (for 'did you mean')."""
    annotation: Any = Scenario
    for key in loc:
        model = _model_in(annotation)
        if model is not None and isinstance(key, str) and key in model.model_fields:
            annotation = model.model_fields[key].annotation
            continue
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) in (list, dict) and args:
            annotation = args[-1]
            continue
        return []
    model = _model_in(annotation)
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _locate(name_or_path: str) -> tuple[str, Path]:
    """(origin shown in messages, file) for a built-in name or a YAML path."""
    if name_or_path in builtin_names():
        return _builtin_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return str(path), path
    builtins = ", ".join(builtin_names())
    close = difflib.get_close_matches(name_or_path, builtin_names(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    problem = "is a folder, not a YAML file" if path.is_dir() else "no such file or built-in"
    raise ScenarioError(
        name_or_path, "scenario", problem, f"{hint}give a YAML path or a built-in: {builtins}"
    )


def _builtin_path(name: str) -> tuple[str, Path]:
    resource = resources.files("scenarios") / "builtin" / f"{name}.yaml"
    return f"builtin/{name}.yaml", Path(str(resource))


def _read_yaml(path: Path, origin: str) -> dict[str, Any]:
    try:
        text = decode(path.read_bytes())
    except OSError as err:
        raise ScenarioError(
            origin, "file", f"cannot read ({err.strerror})", "check the path"
        ) from err
    except FieldError as err:
        raise ScenarioError(origin, err.path, err.problem, err.fix) from err
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
        check_expansion(data)
    except FieldError as err:
        raise ScenarioError(origin, err.path or "file", err.problem, err.fix) from err
    except RecursionError as err:
        raise ScenarioError(
            origin, "file", "the YAML is nested too deeply", "flatten the lists and mappings"
        ) from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = err.problem or err.context or "invalid YAML"
        raise ScenarioError(
            origin, line, f"YAML syntax error: {problem}", f"fix the YAML at {line}"
        ) from err
    except yaml.YAMLError as err:
        raise ScenarioError(origin, "YAML", f"YAML error: {err}", "fix the YAML") from err
    if data is None:
        raise ScenarioError(
            origin,
            "file",
            "the file is empty",
            "a scenario needs name, description, rounds, queries and advertisers",
        )
    if not isinstance(data, dict):
        raise ScenarioError(
            origin,
            "file",
            f"the top level must be a mapping, got {type(data).__name__}",
            "write key: value lines (name:, description:, rounds:, ...)",
        )
    return data
