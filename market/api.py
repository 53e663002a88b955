"""admarket from Python (notebooks): run a scenario or a sweep, get pandas tables back.

    from market import api

    run = api.run("free_riding", overrides={"rounds": 50}, seed=3)
    run.rounds            # one row per variant × round (docs/data.md)
    summary = api.sweep("free_riding", grid={"mechanism.kwargs.tau": [0.5, 1, 2]}, seeds=3)

Both write the same folders as the command line (``admarket run`` / ``admarket sweep --grid``)
and read their results back from them, so a notebook and a terminal see the same data; docs/api.md
is the guide. Engines are built once per Python process and reused by later calls (the embedded
LLM loads once per notebook). Bad input raises ``ScenarioError`` or ``SweepError`` with the same
one-line messages the command line prints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from market.sweep import Grid, make_backend, start_sweep
from market.sweep.adapter import FLUSH_SECONDS, RunError, check_job, job_started, run_job
from market.sweep.grid import format_value
from market.sweep.worker import engines_for
from scenarios.loader import load_scenario

__all__ = ["Run", "load_run", "run", "sweep"]

Overrides = Mapping[str, Any] | Sequence[str] | None


@dataclass(frozen=True)
class Run:
    """A finished run folder; its tables are read on first access (docs/data.md)."""

    path: Path

    @cached_property
    def rounds(self) -> pd.DataFrame:
        return _table(self.path, "rounds")

    @cached_property
    def advertisers(self) -> pd.DataFrame:
        return _table(self.path, "advertisers")

    @cached_property
    def auctions(self) -> pd.DataFrame:
        return _table(self.path, "auctions")

    @cached_property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text(encoding="utf-8"))

    @cached_property
    def scenario(self) -> Any:
        """The resolved scenario the run used."""
        return load_scenario(self.path / "scenario.yaml")

    def report(self) -> Path:
        """Write ``report.html`` (and its figures) into the run folder; returns its path."""
        from reports import build_report

        return build_report(self.path)


def _table(path: Path, name: str) -> pd.DataFrame:
    from market.runner import read_table

    return read_table(path, name)


def override_texts(overrides: Overrides) -> list[str]:
    """``{"mechanism.kwargs.tau": 0.5}`` or ``["mechanism.kwargs.tau=0.5"]`` -> ``--set`` texts
    (a value is written as the YAML the loader reads back to the same value)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={format_value(value)}" for key, value in overrides.items()]
    return [str(text) for text in overrides]


def _settings(overrides: Overrides, seed: int | None, rounds: int | None) -> list[str]:
    texts = override_texts(overrides)
    if seed is not None:
        texts.append(f"seed={int(seed)}")
    if rounds is not None:
        texts.append(f"rounds={int(rounds)}")
    return texts


def _fresh_folder(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<timestamp>``, with a suffix when that folder exists already."""
    stem = Path(root) / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, k = stem, 1
    while path.exists():
        k += 1
        path = stem.with_name(f"{stem.name}-{k}")
    return path


def run(
    scenario: str | Path,
    *,
    overrides: Overrides = None,
    seed: int | None = None,
    rounds: int | None = None,
    out: str | Path | None = None,
    cache: bool = True,
    flush_seconds: float = FLUSH_SECONDS,
) -> Run:
    """Run a scenario (every variant) with one seed into a new run folder, like
    ``admarket run``. ``overrides``: ``{dotted.path: value}`` or ``["path=value", ...]``;
    ``seed`` and ``rounds`` override the scenario's."""
    resolved = load_scenario(scenario, _settings(overrides, seed, rounds))
    path = Path(out) if out is not None else _fresh_folder(resolved.name)
    if job_started(path):
        raise RunError(
            f"{path} already holds a run; read it with api.load_run({str(path)!r}) or pick "
            "another out"
        )
    engines = engines_for(resolved, cache=cache)
    check_job(resolved, engines, resolved.seed)  # nothing is written for a bad scenario
    run_job(resolved, resolved.seed, path, engines, flush_seconds=flush_seconds)
    return Run(path)


def load_run(path: str | Path) -> Run:
    """An existing run folder (``admarket run --out DIR``, or a sweep's ``runs/<job>``)."""
    path = Path(path)
    if not job_started(path):
        raise RunError(f"{path} is not a run folder (no meta.json); pass the out of a run")
    return Run(path)


def sweep(
    scenario: str | Path,
    *,
    grid: Mapping[str, Any],
    seeds: int = 1,
    workers: int | None = None,
    overrides: Overrides = None,
    seed: int | None = None,
    rounds: int | None = None,
    out: str | Path | None = None,
    backend: str = "process",
    address: str | None = None,
    cache: bool = True,
    report: bool = False,
) -> pd.DataFrame:
    """Run every cell of ``grid`` ({dotted.path: [values]}) × ``seeds`` seeds, like
    ``admarket sweep --grid``, and return the summary: one row per cell × seed × variant with the
    grid keys and the headline metrics (`market.sweep.METRICS`). ``workers``: processes (default:
    the cores; 1 runs in this process); ``backend="ray"`` runs the jobs as Ray tasks. The sweep
    folder is ``summary.attrs["sweep_dir"]``; ``report=True`` also writes its ``sweep.html``."""
    settings = _settings(overrides, seed, rounds)
    name = load_scenario(scenario, settings).name
    result = start_sweep(
        scenario,
        Grid.from_mapping(grid),
        seeds=seeds,
        out=Path(out) if out is not None else _fresh_folder(f"{name}-sweep"),
        overrides=settings,
        backend=make_backend(backend, workers, address),
        cache=cache,
    )
    if report:
        from reports.sweep_report import build_sweep_report

        build_sweep_report(result.path)
    summary = result.summary.copy()
    summary.attrs["sweep_dir"] = str(result.path.resolve())
    return summary
