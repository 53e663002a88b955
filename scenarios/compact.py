"""The brand and query catalog, and the compact scenario forms that draw from it.

A scenario may list advertisers and queries explicitly, or draw them from the catalog
(``scenarios/catalog/brands.yaml``, ``queries.yaml``)::

    advertisers: {catalog: {topics: [music, travel], per_topic: 2, policy: {type: threshold}}}
    queries: {catalog: {topics: [music, travel]}}

A list may also mix explicit items with ``{catalog: {...}}`` items, each expanded in place.
Brands are picked by their primary (first) topic, in catalog order; ``names`` picks brands by
name instead. Every other key (``value``, ``policy``, ``strategy`` for advertisers; ``weight``
for queries) is copied onto each expanded item. The resolved scenario is always explicit.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from scenarios.errors import FieldError, join_path


@dataclass(frozen=True)
class CatalogBrand:
    name: str
    description: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class CatalogQuery:
    text: str
    topic: str


@dataclass(frozen=True)
class BrandCatalog:
    """Everything in ``scenarios/catalog``: brands and queries, in file order."""

    brands: tuple[CatalogBrand, ...]
    queries: tuple[CatalogQuery, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic, in order of first appearance among brands then queries."""
        seen = [b.topics[0] for b in self.brands] + [q.topic for q in self.queries]
        return tuple(dict.fromkeys(seen))


@cache
def load_catalog() -> BrandCatalog:
    """Read the packaged catalog (cached: it is read-only data)."""
    folder = resources.files("scenarios") / "catalog"
    brands = yaml.safe_load((folder / "brands.yaml").read_text(encoding="utf-8"))["brands"]
    queries = yaml.safe_load((folder / "queries.yaml").read_text(encoding="utf-8"))["queries"]
    return BrandCatalog(
        brands=tuple(CatalogBrand(b["name"], b["description"], tuple(b["topics"])) for b in brands),
        queries=tuple(CatalogQuery(q["text"], q["topic"]) for q in queries),
    )


_SELECTORS = {
    "advertisers": ("topics", "per_topic", "names"),
    "queries": ("topics", "per_topic", "texts"),
}
_COPIED = {
    "advertisers": ("value", "policy", "strategy"),
    "queries": ("weight",),
}


def expand_compact_forms(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of raw scenario data with every ``{catalog: ...}`` block expanded into items."""
    data = copy.deepcopy(data)
    for field in ("advertisers", "queries"):
        block = data.get(field)
        if isinstance(block, dict) and "catalog" in block:
            extra = set(block) - {"catalog"}
            if extra:
                raise FieldError(
                    join_path(field, sorted(extra)[0]),
                    "unexpected key next to 'catalog'",
                    f"put selection settings inside {field}.catalog",
                )
            data[field] = _expand(field, block["catalog"], field)
        elif isinstance(block, list):
            expanded: list[Any] = []
            for index, item in enumerate(block):
                if isinstance(item, dict) and "catalog" in item:
                    expanded.extend(_expand(field, item["catalog"], join_path(field, index)))
                else:
                    expanded.append(item)
            data[field] = expanded
    return data


def _expand(field: str, selection: Any, where: str) -> list[dict[str, Any]]:
    where = join_path(where, "catalog")
    if not isinstance(selection, dict):
        raise FieldError(
            where,
            f"must be a mapping, got {type(selection).__name__}",
            "write e.g. catalog: {topics: [music, travel], per_topic: 2}",
        )
    known = _SELECTORS[field] + _COPIED[field]
    for key in selection:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            raise FieldError(
                join_path(where, key),
                "unknown key",
                (f"did you mean {close[0]!r}? " if close else "")
                + f"known keys: {', '.join(known)}",
            )
    shared = {k: copy.deepcopy(selection[k]) for k in _COPIED[field] if k in selection}
    picked = (
        _pick_brands(selection, where)
        if field == "advertisers"
        else _pick_queries(selection, where)
    )
    return [{**item, **copy.deepcopy(shared)} for item in picked]


def _topics_and_count(selection: dict[str, Any], where: str, catalog_topics: tuple[str, ...]):
    topics = selection.get("topics")
    if not isinstance(topics, list) or not topics:
        raise FieldError(
            join_path(where, "topics"),
            "needs a non-empty list of topics (or a list of names)",
            f"choose from: {', '.join(catalog_topics)}",
        )
    for topic in topics:
        if topic not in catalog_topics:
            raise FieldError(
                join_path(where, "topics"),
                f"unknown catalog topic {topic!r}",
                f"choose from: {', '.join(catalog_topics)}",
            )
    per_topic = selection.get("per_topic")
    if per_topic is not None and not (
        isinstance(per_topic, int) and not isinstance(per_topic, bool) and per_topic >= 1
    ):
        raise FieldError(
            join_path(where, "per_topic"),
            f"must be an integer >= 1, got {per_topic!r}",
            "leave it out to take every catalog item of each topic",
        )
    return topics, per_topic


def _pick_brands(selection: dict[str, Any], where: str) -> list[dict[str, Any]]:
    catalog = load_catalog()
    if "names" in selection:
        if "topics" in selection or "per_topic" in selection:
            raise FieldError(where, "names cannot be combined with topics/per_topic", "use one")
        by_name = {b.name: b for b in catalog.brands}
        names = selection["names"]
        if not isinstance(names, list) or not names:
            raise FieldError(join_path(where, "names"), "needs a non-empty list", "list brands")
        for name in names:
            if name not in by_name:
                close = difflib.get_close_matches(str(name), list(by_name), n=1)
                raise FieldError(
                    join_path(where, "names"),
                    f"no catalog brand named {name!r}",
                    f"did you mean {close[0]!r}?" if close else "see scenarios/catalog/brands.yaml",
                )
        brands = [by_name[n] for n in names]
    else:
        topics, per_topic = _topics_and_count(selection, where, catalog.topics)
        brands = []
        for topic in topics:
            of_topic = [b for b in catalog.brands if b.topics[0] == topic]
            brands.extend(of_topic[:per_topic])
    return [
        {"name": b.name, "description": b.description, "topics": list(b.topics)} for b in brands
    ]


def _pick_queries(selection: dict[str, Any], where: str) -> list[dict[str, Any]]:
    catalog = load_catalog()
    if "texts" in selection:
        if "topics" in selection or "per_topic" in selection:
            raise FieldError(where, "texts cannot be combined with topics/per_topic", "use one")
        by_text = {q.text: q for q in catalog.queries}
        texts = selection["texts"]
        if not isinstance(texts, list) or not texts:
            raise FieldError(join_path(where, "texts"), "needs a non-empty list", "list queries")
        for text in texts:
            if text not in by_text:
                raise FieldError(
                    join_path(where, "texts"),
                    f"no catalog query {text!r}",
                    "copy it exactly from scenarios/catalog/queries.yaml",
                )
        queries = [by_text[t] for t in texts]
    else:
        topics, per_topic = _topics_and_count(selection, where, catalog.topics)
        queries = []
        for topic in topics:
            queries.extend([q for q in catalog.queries if q.topic == topic][:per_topic])
    return [{"text": q.text, "topic": q.topic} for q in queries]
