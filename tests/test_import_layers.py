"""Imports run downward only (issue 12): a module may import its own layer or the ones below.

Layers, bottom to top (docs/architecture.md): the registry, mechanisms, prompt types and the
table spec -> engines -> agents -> scenarios -> auction and model -> studies, the runner and the
sweep -> reports -> the shells (CLI, dashboard, notebook API, benchmarks). Checked for every module
of the project, every import statement, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    (
        "market.registry",
        "market.lru",
        "market.mechanisms",
        "market.prompts",
        "market.columns",
        "agents.records",
    ),
    ("market.engines",),
    ("agents",),
    ("scenarios",),
    ("market.auction", "market.model", "market.reporters", "market.history"),
    (
        "market.studies",
        "market.runner",
        "market.runfolder",
        "market.integrity",
        "market.lock",
        "market.sweep",
        "market.bidding",
        "market.auction_adapter",
        "market.token_vs_mosaic",
        "market.regime",
    ),
    ("reports",),
    (
        "market.cli",
        "market.dashboard",
        "market.api",
        "market.replicate",
        "market.token_vs_mosaic_cli",
        "market.probe",
        "benchmarks",
        "market",
    ),
]

CHECKED = ["market", "agents", "scenarios", "reports", "benchmarks"]


def layer(module: str) -> int | None:
    """The layer of a project module (the longest matching prefix), None for a third party."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def checked_files() -> list[Path]:
    files = []
    for entry in CHECKED:
        path = ROOT / entry
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def test_the_layer_map_places_every_checked_module():
    for path in checked_files():
        assert layer(module_name(path)) is not None, path


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_import(path):
    own = layer(module_name(path))
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for line, name in imports(path)
        if (target := layer(name)) is not None and target > own
    ]
    assert not upward, upward


def test_an_upward_import_is_caught(tmp_path):
    assert layer("market.model") > layer("agents.policies") > layer("market.registry")
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from market.model import MarketModel\n")
    assert imports(sample) == [(2, "market.model.MarketModel")]
