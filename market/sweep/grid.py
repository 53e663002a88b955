"""Parameter grids: ``--grid KEY=V1,V2,...`` flags or a grid file, checked against the scenario
schema and expanded into the cartesian product of cells.

A KEY is any dotted scenario path ``--set`` accepts (``mechanism.kwargs.offset``,
``advertisers.catalog.policy.kwargs.cost``, ``engine.kwargs.shoehorn``); the values are parsed by
the loader's own override parser (`scenarios.paths.parse_override`), as YAML: ``KEY=V1,V2`` is read
as the flow list ``[V1, V2]``, so ``0,0.1`` are numbers, ``true,false`` booleans and
``'{type: hf}','{type: synthetic}'`` mappings. A grid file holds the same content as a YAML
mapping, one key per line:

    mechanism.kwargs.tau: [0.5, 1, 2]
    advertisers.catalog.policy.kwargs.cost: [0, 0.1, 0.3]

`Grid.validate` loads the scenario once per value and once per cell, so the scenario schema judges
every key and value with the same messages as ``--set``; every problem becomes one line of a
`SweepError` (one per bad key, value or cell) before anything is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scenarios.errors import FieldError, ScenarioError
from scenarios.loader import (
    dump_scenario,
    expand_variants,
    load_scenario,
    read_scenario_data,
    scenario_from_dict,
)
from scenarios.paths import Override, parse_override, split_path
from scenarios.schema import Scenario

from .errors import SweepError

FLAG_EXAMPLE = "e.g. --grid mechanism.kwargs.tau=0.5,1,2"
# Set by --seed / --seeds for every cell alike; a grid over it would break the seed derivation.
RESERVED_KEYS = {"seed": "the seeds are --seed (root) and --seeds N; drop seed from the grid"}


def format_value(value: Any) -> str:
    """A grid value as YAML text that ``--set`` and, inside a flow list, ``--grid`` read back
    as the same value (dumped as the item of a flow list, so it is quoted where a list needs).
    Non-ASCII text is written as is when it reads back unchanged, else escaped (a NEL, U+0085,
    is a line break to a YAML reader)."""
    text = _flow_item(value, readable=True)
    return text if yaml.safe_load(f"[{text}]") == [value] else _flow_item(value, readable=False)


def _flow_item(value: Any, *, readable: bool) -> str:
    dumped = yaml.safe_dump([value], default_flow_style=True, width=10**6, allow_unicode=readable)
    return dumped.strip()[1:-1]


@dataclass(frozen=True)
class Axis:
    """One grid key and its values, in the order given; ``source`` names where it was written
    (``--grid`` or the grid file) for messages."""

    key: str
    values: tuple[Any, ...]
    source: str = "--grid"

    def override(self, value: Any) -> Override:
        return Override(f"{self.key}={format_value(value)}", split_path(self.key), value)

    def where(self, value: Any | None = None) -> str:
        shown = self.key if value is None else f"{self.key}={format_value(value)}"
        return f"--grid {shown}" if self.source == "--grid" else f"{self.source}: {shown}"


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a value per key, and its index in the cartesian product."""

    index: int
    assignment: tuple[tuple[str, Any], ...]

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.assignment)

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={format_value(value)}" for key, value in self.assignment)

    def overrides(self) -> list[Override]:
        return [Axis(key, (value,)).override(value) for key, value in self.assignment]


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep; its cells are their cartesian product (first key varies slowest)."""

    axes: tuple[Axis, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(axis.key for axis in self.axes)

    def cells(self) -> tuple[Cell, ...]:
        product = itertools.product(*(axis.values for axis in self.axes))
        return tuple(
            Cell(index, tuple(zip(self.keys, values, strict=True)))
            for index, values in enumerate(product)
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str = "grid") -> Grid:
        """A grid from ``{KEY: [values]}`` (a non-list value is one value), e.g. in Python."""
        if not mapping:
            raise SweepError(f"{source}: the grid is empty — give {{KEY: [values]}}")
        return cls(
            tuple(
                _checked_axis(str(key), list(v) if isinstance(v, list | tuple) else [v], source)
                for key, v in mapping.items()
            )
        )

    def to_json(self) -> list[dict[str, Any]]:
        """The grid for ``sweep.json``: each value as the YAML text `parse_grid_flag` reads."""
        return [{"key": a.key, "values": [format_value(v) for v in a.values]} for a in self.axes]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> Grid:
        return cls(
            tuple(
                Axis(item["key"], tuple(yaml.safe_load(v) for v in item["values"])) for item in data
            )
        )

    def validate(self, scenario: str | Path, overrides: Sequence[str] = ()) -> list:
        """The resolved scenario of every cell, after the schema has accepted every value and
        every cell; otherwise a `SweepError` with one line per bad key, value or cell. A bad
        ``overrides`` (``--set``) raises the loader's own `ScenarioError`."""
        load_scenario(scenario, overrides)
        base = _Base(*read_scenario_data(scenario), overrides)
        lines = [line for axis in self.axes for line in _axis_problems(axis, base)]
        if lines:
            raise SweepError(lines)
        resolved: list[Scenario] = []
        for cell in self.cells():
            try:
                resolved.append(base.load(cell.overrides()))
            except ScenarioError as err:
                lines.append(f"--grid cell {cell.label}: {_problem(err)}")
        if lines:
            raise SweepError(lines)
        _reject_identical_cells(self.cells(), resolved)
        return resolved


class _Base:
    """The scenario's raw data, read once, and its ``--set`` overrides (already validated)."""

    def __init__(self, origin: str, data: dict, overrides: Sequence[str]) -> None:
        self.origin, self.data = origin, data
        self.overrides = [parse_override(text) for text in overrides]

    def load(self, extra: Sequence[Override]) -> Scenario:
        return scenario_from_dict(self.data, self.origin, [*self.overrides, *extra])


def parse_grid_flag(text: str) -> Axis:
    """``KEY=V1,V2,...`` -> an `Axis` (values parsed as YAML, like ``--set`` values)."""
    key, equals, values = text.partition("=")
    if not equals or not key.strip():
        raise SweepError(f"--grid {text}: expected KEY=V1,V2,... — {FLAG_EXAMPLE}")
    if not values.strip():
        raise SweepError(f"--grid {text}: no values after '=' — {FLAG_EXAMPLE}")
    try:
        parsed = parse_override(f"{key}=[{values}]")
    except FieldError as err:
        raise SweepError(f"--grid {text}: {err.problem} — {err.fix}") from err
    return _checked_axis(".".join(parsed.path), parsed.value, "--grid")


def read_grid_file(path: str | Path) -> tuple[Axis, ...]:
    """The axes of a grid file: a YAML mapping KEY -> list of values (a scalar is one value)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise SweepError(f"--grid-file {path}: cannot read ({reason}) — check the path") from err
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise SweepError(
            f"{path}: {where}: YAML syntax error: {getattr(err, 'problem', None) or err} — "
            f"fix the YAML at {where}"
        ) from err
    example = "write one line per key, e.g. mechanism.kwargs.tau: [0.5, 1, 2]"
    if not isinstance(data, dict) or not data:
        raise SweepError(
            f"{path}: the grid file must be a non-empty mapping KEY: [values] — {example}"
        )
    keys = [str(key.value) for key, _ in node.value]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise SweepError(f"{path}: {repeated[0]}: key given twice — keep one line per key")
    return tuple(
        _checked_axis(str(key), values if isinstance(values, list) else [values], str(path))
        for key, values in data.items()
    )


def build_grid(flags: Sequence[str] = (), grid_file: str | Path | None = None) -> Grid:
    """The grid of ``--grid`` flags and an optional ``--grid-file`` (each key once)."""
    axes = [parse_grid_flag(text) for text in flags]
    if grid_file is not None:
        axes.extend(read_grid_file(grid_file))
    if not axes:
        raise SweepError(
            f"the grid is empty — give --grid KEY=V1,V2,... or --grid-file FILE ({FLAG_EXAMPLE})"
        )
    seen: dict[str, Axis] = {}
    for axis in axes:
        if axis.key in seen:
            raise SweepError(
                f"{axis.where()}: key given twice (also in {seen[axis.key].where()}) — "
                "list all its values once"
            )
        seen[axis.key] = axis
    return Grid(tuple(axes))


def _checked_axis(key: str, values: list[Any], source: str) -> Axis:
    try:
        path = split_path(key)
    except FieldError as err:
        raise SweepError(f"{source}: {key!r}: {err.problem} — {err.fix}") from err
    axis = Axis(".".join(path), tuple(values), source)
    if axis.key in RESERVED_KEYS:
        raise SweepError(f"{axis.where()}: not a grid key — {RESERVED_KEYS[axis.key]}")
    if not values:
        raise SweepError(f"{axis.where()}: no values — give at least one, {FLAG_EXAMPLE}")
    shown = [format_value(v) for v in values]
    repeated = sorted({s for s in shown if shown.count(s) > 1})
    if repeated:
        raise SweepError(f"{axis.where()}: value {repeated[0]} given twice — list each value once")
    return axis


def _problem(err: ScenarioError, key: str = "") -> str:
    """The loader's message without its origin; the field is left out when it is the key."""
    where = "" if err.path == key else f"{err.path}: "
    return f"{where}{err.problem} — {err.fix}"


def _axis_problems(axis: Axis, base: _Base) -> list[str]:
    """One line for a key every value fails the same way (an unknown key), else one per value."""
    problems = {}
    for value in axis.values:
        try:
            base.load([axis.override(value)])
        except ScenarioError as err:
            problems[format_value(value)] = err
    if not problems:
        return []
    distinct = {_problem(err, axis.key) for err in problems.values()}
    if len(problems) == len(axis.values) and len(distinct) == 1:
        return [f"{axis.where()}: {distinct.pop()}"]
    return [
        f"{axis.where(value)}: {_problem(problems[format_value(value)], axis.key)}"
        for value in axis.values
        if format_value(value) in problems
    ]


def _reject_identical_cells(cells: Sequence[Cell], resolved: Sequence[Scenario]) -> None:
    """Two cells that resolve to the same market (every variant equal) would run twice: the
    grid key has no effect, e.g. because every variant of the scenario sets it."""
    seen: dict[str, Cell] = {}
    for cell, scenario in zip(cells, resolved, strict=True):
        variants = expand_variants(scenario)
        fingerprint = "\n".join(f"{n}\n{dump_scenario(v)}" for n, v in variants.items())
        if fingerprint in seen:
            first = seen[fingerprint]
            keys = [
                k for k, v in cell.assignment if format_value(first.values[k]) != format_value(v)
            ]
            raise SweepError(
                f"--grid {', '.join(keys)}: cells {first.label} and {cell.label} run the same "
                "market — drop the repeated value, or the key if the scenario's variants set it "
                "(it has no effect)"
            )
        seen[fingerprint] = cell
