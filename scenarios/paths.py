"""Dotted paths into a scenario's raw data: ``--set`` overrides and variant overrides.

A path is a dotted list of keys ("mechanism.kwargs.tau"). In a list a segment is an index
("advertisers.0.value") or, for lists of named items, a name ("advertisers.MusicMastery.value").
Setting a path replaces whatever was there (a mapping value replaces the whole block); missing
mapping keys along the way are created, so a typo surfaces as an unknown key at validation.
Inside ``variants`` the variant's own overrides are keyed by whole dotted paths, so a path
``variants.<name>.<rest>`` sets the override ``<rest>`` of variant ``<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from scenarios.errors import FieldError
from scenarios.safe_yaml import check_expansion


@dataclass(frozen=True)
class Override:
    """One ``dotted.path=value`` assignment; ``value`` is parsed as YAML."""

    text: str
    path: tuple[str, ...]
    value: Any


def split_path(path: str) -> tuple[str, ...]:
    """'a.b.0' -> ('a', 'b', '0'); rejects empty paths and empty segments."""
    parts = tuple(path.strip().split("."))
    if not path.strip() or any(not p.strip() for p in parts):
        raise FieldError(
            "", f"bad path {path!r}", "write a dotted path of keys, e.g. mechanism.kwargs.tau"
        )
    return tuple(p.strip() for p in parts)


def parse_override(text: str) -> Override:
    """Parse ``dotted.path=value`` (value as YAML: 0.5, true, synthetic, [a, b], {k: v})."""
    example = "e.g. --set mechanism.kwargs.tau=0.5"
    if "=" not in text:
        raise FieldError("", f"override {text!r} has no '='", f"write path=value, {example}")
    raw_path, _, raw_value = text.partition("=")
    if not raw_path.strip():
        raise FieldError("", f"override {text!r} has no path before '='", example)
    path = split_path(raw_path)
    shown = raw_value if len(raw_value) <= 60 else raw_value[:57] + "..."
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else None
        check_expansion(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        raise FieldError(
            "", f"override value {shown!r} is not valid YAML ({problem})", "quote it"
        ) from err
    except FieldError as err:
        raise FieldError(".".join(path), err.problem, err.fix) from err
    except RecursionError as err:
        raise FieldError(".".join(path), "the value is nested too deeply", "flatten it") from err
    return Override(text=text, path=path, value=value)


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``value`` at ``path`` inside ``data`` in place (see the module docstring)."""
    node: Any = data
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, dict):
            if path[:depth] == ("variants",) and depth == 1 and len(path) > 2:
                variant = node.setdefault(key, {})
                if not isinstance(variant, dict):
                    raise FieldError(where, "is not a mapping", "give the variant a mapping")
                variant[".".join(path[2:])] = value
                return
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        elif isinstance(node, list):
            index = _list_index(node, key, where)
            if last:
                node[index] = value
                return
            node = node[index]
        else:
            raise FieldError(
                where,
                f"cannot go into {type(node).__name__} value {node!r}",
                f"end the path at {'.'.join(path[:depth]) or 'the top'}",
            )


def _list_index(items: list[Any], key: str, where: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if not items:
            raise FieldError(where, "the list is empty", "set the whole list instead")
        if not -len(items) <= index < len(items):
            raise FieldError(
                where,
                f"index {index} is out of range: the list has {len(items)} items",
                f"use an index from 0 to {len(items) - 1}",
            )
        return index % len(items)
    names = [item.get("name") for item in items if isinstance(item, dict)]
    if key in names:
        return names.index(key)
    known = ", ".join(str(n) for n in names if n is not None)
    raise FieldError(
        where,
        f"no item named {key!r} in this list",
        f"use an index or one of the names: {known}" if known else "use an integer index",
    )
