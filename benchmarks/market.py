"""Market throughput: rounds/s on the synthetic engine, and the market's overhead on a real LLM.

1. Synthetic engine, 20 advertisers who always enter, M = 16 candidates: rounds per second of the
   whole market (query, entry, auction, histories, data collection, draining rows for the writer)
   and the share of the time spent inside the engine; ``--profile`` adds where the rest goes.
2. Embedded LLM (a few small rounds, no cache): the share of round time spent *outside* the engine
   — the market's overhead on top of the LLM calls. Goal: under 5 %.

3. ``--against REV``: this checkout's synthetic rounds/s against an earlier revision's, both
   measured here, alternately (`benchmarks.against`).

`admarket bench market [--rounds N] [--llm-rounds N] [--skip-llm] [--profile]`
`admarket bench market --against REV [--pairs N] [--rounds N]`
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from market.model import MarketModel
from scenarios.loader import scenario_from_dict

OVERHEAD_GOAL = 0.05
_TEN_TOPICS = [
    "music", "cooking", "travel", "fitness", "finance",
    "privacy", "pets", "gardening", "education", "home",
]  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    """Totals over the timed rounds of one market."""

    label: str
    rounds: int
    wall_seconds: float
    engine_seconds: float

    @property
    def rounds_per_second(self) -> float:
        return self.rounds / self.wall_seconds

    @property
    def outside_engine_share(self) -> float:
        """Share of the wall time not spent inside engine calls (entry decisions, mechanism,
        records, data collection, draining rows for the writer)."""
        return 1.0 - self.engine_seconds / self.wall_seconds


def market_scenario(
    engine_type: str, *, advertisers: int, candidates: int, max_new_tokens: int, rounds: int
):
    """A scenario with ``advertisers`` catalog brands (spread over ten topics) who always enter.

    The catalog holds three brands per topic, so at most 30 advertisers.
    """
    if not 1 <= advertisers <= 3 * len(_TEN_TOPICS):
        raise ValueError(f"advertisers must be in [1, {3 * len(_TEN_TOPICS)}], got {advertisers}")
    per_topic = -(-advertisers // len(_TEN_TOPICS))
    topics = _TEN_TOPICS
    data = {
        "name": "bench_market",
        "description": "market throughput benchmark",
        "rounds": rounds,
        "seed": 0,
        "engine": {"type": engine_type},
        "mechanism": {"type": "mosaic", "kwargs": {"candidates": candidates}},
        "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": max_new_tokens},
        "queries": {"catalog": {"topics": topics, "per_topic": 1}},
        "advertisers": {
            "catalog": {"topics": topics, "per_topic": per_topic, "policy": {"type": "always"}}
        },
        "outside_option": False,
    }
    scenario = scenario_from_dict(data, "<bench>")
    if len(scenario.advertisers) != advertisers:
        scenario = scenario.model_copy(update={"advertisers": scenario.advertisers[:advertisers]})
    return scenario


def measure(label: str, scenario, engine, *, warmup: int, drain_every: int = 500) -> Measurement:
    """Run ``warmup`` untimed rounds, then ``scenario.rounds`` timed ones, draining the collected
    rows into parquet-ready tables every ``drain_every`` rounds as a run's flushes do."""
    with MarketModel(scenario, engine) as model:
        for _ in range(warmup):
            model.step()
        model.drain_rows()
        engine_seconds = 0.0
        start = time.perf_counter()
        for k in range(1, scenario.rounds + 1):
            model.step()
            engine_seconds += model.outcome.engine_seconds
            if k % drain_every == 0 or k == scenario.rounds:
                model.drain_rows()  # Arrow tables in the run folder's schema
        wall = time.perf_counter() - start
    return Measurement(label, scenario.rounds, wall, engine_seconds)


# part of a round -> the functions (file, names) whose cumulative time it is; none calls another's
PROFILED = {
    "engine calls (generate + score)": [("market/engines/", ("generate", "score"))],
    "mechanism (allocation, payments)": [("market/mechanisms/__init__.py", ("outcome",))],
    "reporters and data collection": [
        ("market/model.py", ("_advertiser_columns", "_auction_columns")),
        ("market/reporters.py", ("collect", "add_table_rows")),
    ],
    "histories": [("market/history.py", ("append_row",))],
    "entry decisions": [("mesa/agent.py", ("do",))],
    "query and round streams": [("market/model.py", ("rng", "engine_seed"))],
    "draining rows": [("market/model.py", ("drain_rows",))],
}


def round_shares(label: str, scenario, engine) -> dict[str, float]:
    """cProfile one measurement (`measure`): each part of a round (`PROFILED`) -> its share of
    the time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(measure, label, scenario, engine, warmup=5)
    stats = pstats.Stats(profiler).stats
    total = max(ct for (_, _, name), (_, _, _, ct, _) in stats.items() if name == "measure")
    return {
        part: sum(
            ct
            for (file, _, name), (_, _, _, ct, _) in stats.items()
            if any(name in names and path in file.replace("\\", "/") for path, names in where)
        )
        / total
        for part, where in PROFILED.items()
    }


def profile_shares(label: str, scenario, engine) -> Table:
    """Where a round's time goes (`round_shares`), as a table."""
    table = Table(title=f"where the time goes (cProfile): {label}")
    table.add_column("part of a round")
    table.add_column("share of time", justify="right")
    for part, share in round_shares(label, scenario, engine).items():
        table.add_row(part, f"{share:.1%}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="admarket bench market", description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="synthetic rounds to time")
    parser.add_argument("--advertisers", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=16, help="M on the synthetic engine")
    parser.add_argument("--llm-rounds", type=int, default=3, help="embedded-model rounds to time")
    parser.add_argument("--skip-llm", action="store_true", help="only the synthetic engine")
    parser.add_argument(
        "--profile", action="store_true", help="also show where a synthetic round's time goes"
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="instead: this checkout's synthetic rounds/s against git revision REV's, measured "
        "alternately here (benchmarks/against.py)",
    )
    parser.add_argument("--pairs", type=int, default=5, help="with --against: runs of each")
    args = parser.parse_args(argv)
    if args.against is not None:
        from benchmarks import against

        return against.run(args.against, pairs=args.pairs, rounds=args.rounds)
    from market.engines import create_engine

    console = Console()
    results = []
    synthetic = market_scenario(
        "synthetic",
        advertisers=args.advertisers,
        candidates=args.candidates,
        max_new_tokens=48,
        rounds=args.rounds,
    )
    engine = create_engine(synthetic.engine, catalog=synthetic.catalog(), cache=False)
    label = f"synthetic, {args.advertisers} advertisers, M={args.candidates}"
    results.append(measure(label, synthetic, engine, warmup=5))
    if args.profile:
        console.print(profile_shares(label, synthetic, engine))
    if not args.skip_llm:
        small = market_scenario(
            "hf", advertisers=3, candidates=2, max_new_tokens=12, rounds=args.llm_rounds
        )
        with console.status("loading the embedded model"):
            llm = create_engine(small.engine, catalog=small.catalog(), cache=False)
        results.append(measure("embedded LLM, 3 advertisers, M=2, 12 tokens", small, llm, warmup=1))

    table = Table(title="market throughput")
    for column in ("market", "rounds", "rounds/s", "ms/round", "in engine", "outside engine"):
        table.add_column(column, justify="left" if column == "market" else "right")
    for m in results:
        table.add_row(
            m.label,
            str(m.rounds),
            f"{m.rounds_per_second:,.1f}",
            f"{1000 * m.wall_seconds / m.rounds:,.2f}",
            f"{1 - m.outside_engine_share:.2%}",
            f"{m.outside_engine_share:.2%}",
        )
    console.print(table)
    if not args.skip_llm:
        share = results[-1].outside_engine_share
        verdict = "meets" if share < OVERHEAD_GOAL else "misses"
        console.print(
            f"market overhead on the embedded LLM: {share:.2%} of round time "
            f"({verdict} the goal of < {OVERHEAD_GOAL:.0%})"
        )
    return 0
