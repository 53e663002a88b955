"""`admarket replicate`: the MOSAIC paper's one-shot study (Sec. 6, App. C), end to end.

    admarket replicate [--scenario paper_replication] [--engine synthetic|hf|vllm] [--queries Q]
                       [--seeds S] [--m 1 2 4 8 16] [--out DIR] [--set PATH=VALUE ...]

The scenario (default ``scenarios/builtin/paper_replication.yaml``) holds the defaults: engine,
mechanism τ, sampling, the queries and advertisers, ``rounds`` = seeds per instance, ``seed`` =
root seed, ``mechanism.kwargs.candidates`` = M_max (the grid is 1, 2, 4, ... then M_max), and one
variant per generator (π_con "context", π_ref "baseline"). The output folder holds tidy parquet
tables (``instances``, ``advertisers``, ``candidates``, ``optima``), ``figures/*.png`` and
``replication.html``; `build_study_report` re-renders the page from the parquet files alone.
See docs/replication.md for sizing (CPU and GPU) and for what each figure measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from market.engines import create_engine
from market.engines.base import Engine, EngineError, SamplingParams
from market.prompts import Brand
from reports.replication_figures import build_study_figures
from reports.replication_report import (
    contribution_fits,
    shape_checks,
    summary_table,
    tv_summary,
    tv_table,
    write_study_html,
)
from reports.replication_study import Generator, Instance, StudySettings, run_study
from scenarios import ScenarioError, dump_scenario, expand_variants, load_scenario
from scenarios.schema import ENGINE_TYPES, Scenario

DEFAULT_SCENARIO = "paper_replication"
TABLES = ("instances", "advertisers", "candidates", "optima")


def default_m_grid(m_max: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``m_max``, then ``m_max`` itself (20 → 1, 2, 4, 8, 16, 20)."""
    if m_max < 1:
        raise ValueError(f"mechanism.kwargs.candidates must be >= 1, got {m_max}")
    grid = [1 << k for k in range(m_max.bit_length()) if 1 << k < m_max]
    return (*grid, m_max)


def study_instances(scenario: Scenario, n_queries: int | None = None) -> list[Instance]:
    """Queries paired with two advertisers relevant to their topic (App. C.1).

    The k-th query of a topic takes the topic's advertisers k and k+1 (cyclically); later passes
    rotate the pair further, so a topic with 3 advertisers gives each query 3 distinct pairs.
    Instances are ordered pass by pass, round-robin over topics, so the first Q cover as many
    topics as possible. ``n_queries`` = None takes the scenario's queries once (first pass).
    """
    by_topic: dict[str, list] = {}
    for query in scenario.queries:
        by_topic.setdefault(query.topic, []).append(query)
    relevant = {t: [a for a in scenario.advertisers if t in a.topics] for t in by_topic}
    usable = [t for t in by_topic if len(relevant[t]) >= 2]
    if not usable:
        raise ValueError(
            f"scenario {scenario.name!r}: no query topic has two relevant advertisers; every "
            "instance needs two (add advertisers whose topics include the queries' topics)"
        )
    combos, seen = [], set()
    passes = max(len(relevant[t]) for t in usable)
    depth = max(len(by_topic[t]) for t in usable)
    for shift in range(passes):
        for k in range(depth):
            for topic in usable:
                if k >= len(by_topic[topic]):
                    continue
                query, ads = by_topic[topic][k], relevant[topic]
                pair = (ads[(k + shift) % len(ads)], ads[(k + shift + 1) % len(ads)])
                key = (query.text, frozenset(a.name for a in pair))
                if key not in seen:
                    seen.add(key)
                    combos.append((query, pair))
    first_pass = sum(len(by_topic[t]) for t in usable)
    wanted = first_pass if n_queries is None else n_queries
    if not 1 <= wanted <= len(combos):
        raise ValueError(
            f"--queries must be between 1 and {len(combos)} (distinct query/advertiser-pair "
            f"instances in scenario {scenario.name!r}), got {wanted}"
        )
    return [
        Instance(
            index=i,
            query=query.text,
            topic=query.topic,
            brands=tuple(Brand(a.name, a.description) for a in pair),
            values=tuple(float(a.value) for a in pair),
            brand_topics=tuple(tuple(a.topics) for a in pair),
        )
        for i, (query, pair) in enumerate(combos[:wanted])
    ]


@dataclass(frozen=True)
class ReplicationConfig:
    """A resolved replication: the scenario, its instances, the study settings, the output."""

    scenario: Scenario
    instances: tuple[Instance, ...]
    settings: StudySettings
    out_dir: Path


def resolve(
    scenario_name: str = DEFAULT_SCENARIO,
    *,
    engine: str | None = None,
    n_queries: int | None = None,
    n_seeds: int | None = None,
    m_grid: Sequence[int] | None = None,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> ReplicationConfig:
    """Scenario defaults, then ``--engine``, ``--set`` and the size flags."""
    switch = engine is not None and engine != load_scenario(scenario_name).engine.type
    # a different engine type starts from its own defaults; the same type keeps the scenario's kwargs
    sets = ([f"engine.type={engine}", "engine.kwargs={}"] if switch else []) + list(overrides)
    scenario = load_scenario(scenario_name, sets)
    variants = expand_variants(scenario)
    generators = []
    for name, variant in variants.items():
        if variant.mechanism.type != "mosaic":
            raise ValueError(
                f"variant {name!r} uses mechanism {variant.mechanism.type!r}; the replication "
                "compares MOSAIC generators (set mechanism.type: mosaic)"
            )
        generators.append(Generator(name, variant.mechanism.kwargs.get("generator", "context")))
    if n_seeds is not None and n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
    if m_grid is not None:
        grid = tuple(sorted(set(int(m) for m in m_grid)))
        if not grid or grid[0] < 1:
            raise ValueError(f"--m values must be >= 1, got {list(m_grid)}")
    else:
        grid = default_m_grid(int(scenario.mechanism.kwargs.get("candidates", 8)))
    settings = StudySettings(
        m_grid=grid,
        n_seeds=n_seeds if n_seeds is not None else scenario.rounds,
        root_seed=scenario.seed,
        tau=float(scenario.mechanism.kwargs.get("tau", 1.0)),
        sampling=SamplingParams(**scenario.sampling.model_dump()),
        generators=tuple(generators),
    )
    if out_dir is None:
        out_dir = (
            Path("runs") / f"replication-{scenario.engine.type}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    return ReplicationConfig(
        scenario=scenario,
        instances=tuple(study_instances(scenario, n_queries)),
        settings=settings,
        out_dir=Path(out_dir),
    )


def _engine_factory(scenario: Scenario):
    """Synthetic: one exact engine per instance, whose catalog is that instance's query and two
    advertisers (the paper's one-shot world; its support stays small enough to enumerate).
    Other engines: one shared engine, its calls cached on disk."""
    if scenario.engine.type == "synthetic":
        return lambda instance: create_engine(
            scenario.engine, catalog=instance.catalog(), cache=False
        )
    shared: list[Engine] = []

    def engine_for(instance: Instance) -> Engine:
        if not shared:
            shared.append(create_engine(scenario.engine, catalog=scenario.catalog(), cache=True))
        return shared[0]

    return engine_for


def run_replication(config: ReplicationConfig, console: Console | None = None) -> Path:
    """Run the study, write its tables, figures and page into ``config.out_dir``."""
    console = console if console is not None else Console(stderr=True)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    settings = config.settings
    engine_for = _engine_factory(config.scenario)
    pools = len(config.instances) * settings.n_seeds * len(settings.generators)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("candidate pools", total=pools)
        frames = run_study(
            config.instances, settings, engine_for, on_pool=lambda: progress.advance(task)
        )
    for name in TABLES:
        getattr(frames, name).to_parquet(out / f"{name}.parquet", index=False)
    (out / "scenario.yaml").write_text(dump_scenario(config.scenario))
    reference = [g.name for g in settings.generators if g.generator == "reference"]
    meta = {
        "engine": config.scenario.engine.model_dump(mode="json"),
        "engine_info": _engine_info(engine_for(config.instances[0])),
        "queries": len(config.instances),
        "seeds": settings.n_seeds,
        "m_grid": list(settings.m_grid),
        "tau": settings.tau,
        "sampling": config.scenario.sampling.model_dump(mode="json"),
        "generators": {g.name: g.generator for g in settings.generators},
        "reference_generator": reference[0] if reference else None,
        "candidate_pools": pools,
        "engine_seconds": frames.engine_seconds,
        "wall_seconds": frames.wall_seconds,
        "seconds_per_pool": frames.wall_seconds / pools,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return build_study_report(out)


def _engine_info(engine: Engine) -> dict:
    info = engine.info
    return {"engine": info.engine, "model": info.model, "device": info.device, "dtype": info.dtype}


def build_study_report(out_dir: str | Path) -> Path:
    """figures/*.png and replication.html from a replication folder's parquet files alone."""
    out = Path(out_dir)
    missing = [n for n in TABLES if not (out / f"{n}.parquet").is_file()]
    if missing or not (out / "meta.json").is_file():
        raise FileNotFoundError(
            f"{out} is not a replication folder (missing {missing or ['meta.json']}); "
            "run `admarket replicate --out DIR` first"
        )
    meta = json.loads((out / "meta.json").read_text())
    tables = {n: pd.read_parquet(out / f"{n}.parquet") for n in TABLES}
    instances, advertisers, candidates, optima = (tables[n] for n in TABLES)
    exact = bool(optima["exact"].all())
    summary = summary_table(instances)
    m_max = int(instances["M"].max())
    fits = contribution_fits(advertisers, m_max)
    tv = tv_summary(tv_table(candidates, int(meta["seeds"]))) if exact else None
    if exact:
        benchmarks = {
            "optimal_logp": float(optima["optimal_logp"].mean()),
            "reference_logp": float(optima["reference_logp"].mean()),
        }
    else:
        pools = candidates[
            (candidates["generator"] == meta.get("reference_generator"))
            & (candidates["M"] == m_max)
        ]
        benchmarks = {"reference_logp": float(pools["log_ref"].mean()) if len(pools) else np.nan}
    figures = build_study_figures(
        out / "figures", summary, fits, advertisers, benchmarks, tv, exact
    )
    checks = shape_checks(summary, fits, tv, benchmarks)
    summary.to_csv(out / "summary.csv", index=False)
    checks.to_csv(out / "checks.csv", index=False)
    facts = {
        "folder": out.resolve(),
        "engine": " · ".join(f"{k}={v}" for k, v in meta["engine_info"].items()),
        "instances (queries × advertiser pairs)": meta["queries"],
        "seeds per instance": meta["seeds"],
        "M grid (nested candidate sets)": ", ".join(map(str, meta["m_grid"])),
        "generators": ", ".join(f"{k} = π_{v[:3]}" for k, v in meta["generators"].items()),
        "τ, temperature, top-p": f"{meta['tau']}, {meta['sampling']['temperature']}, "
        f"{meta['sampling']['top_p']}",
        "wall time": f"{meta['wall_seconds']:.1f} s ({meta['seconds_per_pool']:.3f} s per "
        "candidate pool)",
    }
    notes = [
        "Candidate sets are nested: the M_max candidates of an (instance, seed, generator) are "
        "drawn once and each M uses the first M of them, so curves over M share randomness.",
        "Normalized reward = allocation·r_i − softmax(β_-i)·r_i on the same candidates (the "
        "MOSAIC outcome's expected_reward_without), not the paper's footnote-5 estimate.",
    ]
    if exact:
        notes.append(
            "Synthetic engine: π_r is exact over each instance's whole support "
            f"({int(optima['support_size'].iloc[0])} replies)."
        )
    else:
        notes.append(
            "π_r is known only up to log Z(x) on this engine: log π_r values are log π_ref + Σ r_i "
            "(footnote 9); the benchmark is footnote 4's proxy."
        )
    scenario_text = (out / "scenario.yaml").read_text() if (out / "scenario.yaml").is_file() else ""
    return write_study_html(
        out / "replication.html", facts, notes, figures, summary, checks, fits, tv, scenario_text
    )


def print_study_summary(out_dir: Path, console: Console) -> None:
    checks = pd.read_csv(out_dir / "checks.csv")
    table = Table(title="MOSAIC paper claims on this replication")
    for column in ("claim", "paper", "ours", "holds"):
        table.add_column(column)
    for row in checks.itertuples():
        table.add_row(row.claim, row.paper, row.ours, row.holds)
    console.print(table)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="admarket replicate",
        description="Replicate the MOSAIC paper's one-shot study (Figures 1a, 1b, 2, 3, 4, 5/6).",
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="built-in name or YAML path")
    p.add_argument("--engine", choices=ENGINE_TYPES, help="engine type (default: the scenario's)")
    p.add_argument("--queries", type=int, help="number of query/advertiser-pair instances")
    p.add_argument("--seeds", type=int, help="seeds per instance (default: scenario rounds)")
    p.add_argument("--m", type=int, nargs="+", help="candidate counts M (default: 1, 2, 4, ...)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/replication-...)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="scenario override, e.g. engine.kwargs.model=HuggingFaceTB/SmolLM2-360M-Instruct",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        config = resolve(
            args.scenario,
            engine=args.engine,
            n_queries=args.queries,
            n_seeds=args.seeds,
            m_grid=args.m,
            out_dir=args.out,
            overrides=args.overrides,
        )
    except (ScenarioError, ValueError) as err:
        print(f"admarket: error: {err}", file=sys.stderr)
        return 2
    console.print(
        f"replicating on {config.scenario.engine.type}: {len(config.instances)} instances × "
        f"{config.settings.n_seeds} seeds × {len(config.settings.generators)} generators, "
        f"M in {list(config.settings.m_grid)} → {config.out_dir}"
    )
    try:
        page = run_replication(config, console)
    except EngineError as err:
        print(f"admarket: error: {err}", file=sys.stderr)
        return 2
    print_study_summary(config.out_dir, Console())
    console.print(f"report: {page}")
    return 0
