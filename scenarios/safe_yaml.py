"""Reading scenario YAML a user may get wrong or an attacker may craft: UTF-8 text only, no key
repeated in a mapping, and anchors/aliases that expand to a bounded size.

PyYAML builds an alias as a second reference to the same object, so a "billion laughs" file is
small in memory until something walks it as a tree (validation, ``repr``, a YAML dump of the
resolved scenario): the size an alias expands to is counted here, over the shared object graph,
before anything else reads the data.
"""

from __future__ import annotations

from typing import Any

import yaml

from scenarios.errors import FieldError

# Values in one scenario with every alias expanded. The largest honest files (thousands of
# queries or advertisers, a few keys each) stay below 10^5; 10^6 still validates in about a second.
MAX_YAML_NODES = 1_000_000
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_ANCHORS_FIX = "write the values out; anchors and aliases may share a block, not multiply it"


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping instead of keeping the last."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def decode(data: bytes) -> str:
    """The text of a scenario file, or FieldError("file", ...) for binary or non-UTF-8 bytes."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise FieldError("file", f"is {encoding} text, not UTF-8", "save it as UTF-8 YAML")
    if b"\x00" in data:
        raise FieldError(
            "file",
            "is a binary file (NUL bytes), not YAML text",
            "give a scenario YAML file; save it as UTF-8 YAML",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FieldError(
            "file",
            f"is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})",
            "save it as UTF-8 YAML",
        ) from err


def check_expansion(data: Any, limit: int = MAX_YAML_NODES) -> None:
    """FieldError naming the top-level key whose value refers to itself or expands (aliases
    counted every time they are used) to more than ``limit`` values."""
    sizes: dict[int, int] = {}
    items = data.items() if isinstance(data, dict) else [("", data)]
    total = 1
    for key, value in items:
        try:
            size = 1 + _expanded_size(value, sizes, limit)
        except RecursionError as err:  # a cycle: the value contains itself
            raise FieldError(
                str(key), "a YAML alias refers to itself (a recursive value)", _ANCHORS_FIX
            ) from err
        total = min(total + size, limit + 1)
        if size > limit or total > limit:
            raise FieldError(
                str(key) if size > limit else "",
                f"YAML aliases expand this value to more than {limit:,} values",
                _ANCHORS_FIX,
            )


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    return list(node)


def _expanded_size(root: Any, sizes: dict[int, int], limit: int) -> int:
    """Values in ``root`` with aliases expanded, capped at limit + 1; iterative post-order over
    the object graph with the size of every shared container memoized in ``sizes``. A container
    met again while still open is a cycle: RecursionError."""
    if not isinstance(root, (dict, list)):
        return 1
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            size = 1 + sum(sizes.get(id(c), 1) for c in _children(node))
            sizes[key] = min(size, limit + 1)
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if isinstance(child, (dict, list)) and id(child) not in sizes:
                if id(child) in open_nodes:
                    raise RecursionError("a YAML value contains itself")
                stack.append((child, False))
    return sizes[id(root)]
