"""`admarket probe`: how often a real LLM names the brands its prompt asks for — its dilution curve.

MOSAIC's market only works if the advertiser LLM π_i names brand i and the context-aware
generator π_con(·|x; c) names the entrants it lists (App. C.1; footnote 3). The more entrants
share π_con's instruction, the less each is named (dilution, App. B.4). This measures both on a
model and prompt style (`market.prompts.PROMPT_STYLES`) before any auction is run:

- **Listings.** Catalog queries one per topic in turn (``queries``). For each query and listing
  seed s (``seeds``), a generator seeded by ``SeedSequence([seed, s, query index])`` draws one
  brand of the query's topic (the *relevant* entrant, listed first) and then brands of other
  topics; π_con with k entrants lists the first k of them, so the listings of k = 1, 2, 4, 8
  are nested and the curve compares like with like. ``relevant_at="last"`` lists the relevant
  entrant after the k − 1 others instead (the small model favours the first-listed brand).
- **One call per batch** (vLLM offline style): for each style and k, every (query, seed)
  prompt goes into ONE ``generate`` call with ``replies`` replies each; the advertiser prompts
  π_i (brand i: the relevant entrant) are one more call per style.
- **Mentions** are the market's own: `market.auction.mentions` (the name as a whole word, any
  case), the very test behind the ``mentioned`` columns of a run.

Per style and k it reports, each with a Wilson 95% interval: ``relevant`` (replies naming the
relevant entrant), ``others`` (mentions per other listed entrant, brands of other
topics: named / (replies × (k − 1))), ``any`` (replies naming at least one listed entrant) and
``per_entrant`` (mentioned listed entrants / (replies × k)); for π_i the share of replies naming
brand i. `main` prints the table, writes ``probe.csv`` (that table),
``replies.csv`` (every reply and what it names) and ``dilution.png`` (`reports.probe_figure`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from market.auction import mentions
from market.engines import Catalog, EngineError, SamplingParams, create_engine
from market.engines.base import prompt_style
from market.prompts import PROMPT_STYLES, Brand, Query, advertiser_prompt, context_prompt
from reports.probe_figure import dilution_figure
from reports.stats import wilson_interval
from scenarios.compact import BrandCatalog, load_catalog

LISTED = (1, 2, 4, 8)
POSITIONS = ("first", "last")
ADVERTISER = "advertiser"
CONTEXT = "context"


@dataclass(frozen=True)
class Listing:
    """One query and the brands π_con may list for it, the relevant one first."""

    query: Query
    brands: tuple[Brand, ...]
    listing_seed: int


@dataclass(frozen=True)
class ProbeSettings:
    """What to measure: styles, k values, how many queries, listing seeds and replies."""

    styles: tuple[str, ...]
    listed: tuple[int, ...] = LISTED
    queries: int = 10
    seeds: int = 1
    replies: int = 4
    params: SamplingParams = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=48)
    seed: int = 0
    relevant_at: str = "first"

    def __post_init__(self) -> None:
        for name in ("queries", "seeds", "replies"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not self.listed or any(k < 1 for k in self.listed):
            raise ValueError(f"--listed must be numbers >= 1, got {list(self.listed)}")
        if self.relevant_at not in POSITIONS:
            raise ValueError(
                f"--relevant-at must be one of {', '.join(POSITIONS)}, got {self.relevant_at!r}"
            )
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        unknown = [s for s in self.styles if s not in PROMPT_STYLES]
        if unknown or not self.styles:
            raise ValueError(
                f"--style: unknown {unknown or 'none given'}; use one or more of "
                f"{', '.join(PROMPT_STYLES)} (comma-separated)"
            )


def catalog_queries(catalog: BrandCatalog, n: int) -> list[Query]:
    """``n`` catalog queries, one per topic in turn (every topic's first query, then seconds…)."""
    by_topic: dict[str, list[Query]] = {}
    for q in catalog.queries:
        by_topic.setdefault(q.topic, []).append(Query(q.text, q.topic))
    order: list[Query] = []
    for rank in range(max(len(qs) for qs in by_topic.values())):
        order += [qs[rank] for qs in by_topic.values() if rank < len(qs)]
    if n > len(order):
        raise ValueError(f"--queries must be at most {len(order)} (the catalog's), got {n}")
    return order[:n]


def listings(
    catalog: BrandCatalog, queries: Sequence[Query], seeds: int, size: int, seed: int
) -> list[Listing]:
    """For every query and listing seed, the relevant brand then ``size`` − 1 brands of other
    topics, drawn by ``SeedSequence([seed, listing seed, query index])``."""
    brands = [Brand(b.name, b.description, b.topics) for b in catalog.brands]
    out = []
    for s in range(seeds):
        for index, query in enumerate(queries):
            rng = np.random.default_rng(np.random.SeedSequence([seed, s, index]))
            relevant = [b for b in brands if b.is_relevant_to(query)]
            others = [b for b in brands if not b.is_relevant_to(query)]
            if not relevant or len(others) < size - 1:
                raise ValueError(
                    f"the catalog cannot list {size} brands for {query.text!r}: it needs a brand "
                    f"of topic {query.topic} and {size - 1} of other topics"
                )
            first = relevant[int(rng.integers(len(relevant)))]
            rest = [others[i] for i in rng.choice(len(others), size - 1, replace=False)]
            out.append(Listing(query, (first, *rest), s))
    return out


def listed(listing: Listing, k: int, relevant_at: str = "first") -> tuple[Brand, ...]:
    """The k brands π_con lists: the relevant one first (or last), then the others in order."""
    others = listing.brands[1:k]
    return (listing.brands[0], *others) if relevant_at == "first" else (*others, listing.brands[0])


def _reply_rows(style, role, k, listing, candidates, brands) -> list[dict]:
    rows = []
    relevant = listing.brands[0]
    for r, candidate in enumerate(candidates):
        named = [mentions(candidate.text, b.name) for b in brands]
        rows.append(
            {
                "style": style,
                "prompt": role,
                "k": k,
                "query": listing.query.text,
                "topic": listing.query.topic,
                "listing_seed": listing.listing_seed,
                "reply": r,
                "listed": "; ".join(b.name for b in brands),
                "named": "; ".join(b.name for b, n in zip(brands, named, strict=True) if n),
                "n_named": sum(named),
                "any": any(named),
                "relevant": mentions(candidate.text, relevant.name),
                "tokens": len(candidate.token_ids),
                "text": candidate.text,
            }
        )
    return rows


def probe_replies(engine, settings: ProbeSettings, catalog: BrandCatalog | None = None):
    """Every reply of the probe as a row (`_reply_rows`), and the seconds each call took.

    One ``generate`` call per (style, k) over every listing, and one per style for π_i.
    """
    catalog = catalog or load_catalog()
    queries = catalog_queries(catalog, settings.queries)
    batch = listings(catalog, queries, settings.seeds, max(settings.listed), settings.seed)
    rows: list[dict] = []
    seconds: dict[tuple[str, str, int], float] = {}
    for style in settings.styles:
        jobs = [(CONTEXT, k) for k in settings.listed] + [(ADVERTISER, 1)]
        for role, k in jobs:
            if role == CONTEXT:
                lists = [listed(x, k, settings.relevant_at) for x in batch]
                prompts = [
                    context_prompt(x.query, b, style) for x, b in zip(batch, lists, strict=True)
                ]
            else:
                lists = [x.brands[:1] for x in batch]
                prompts = [advertiser_prompt(x.query, x.brands[0], style) for x in batch]
            start = time.perf_counter()
            generated = engine.generate(prompts, settings.replies, settings.params, settings.seed)
            seconds[(style, role, k)] = time.perf_counter() - start
            for listing, brands, candidates in zip(batch, lists, generated, strict=True):
                rows += _reply_rows(style, role, k, listing, candidates, brands)
    return pd.DataFrame(rows), seconds


def summarize(replies: pd.DataFrame) -> pd.DataFrame:
    """Per (style, prompt, k): the three mention rates, each with its Wilson 95% interval."""
    rows = []
    for (style, role, k), part in replies.groupby(["style", "prompt", "k"], sort=False):
        n = len(part)
        counts = {
            "per_entrant": (int(part["n_named"].sum()), n * int(k)),
            "any": (int(part["any"].sum()), n),
            "relevant": (int(part["relevant"].sum()), n),
            "others": (int((part["n_named"] - part["relevant"]).sum()), n * (int(k) - 1)),
        }
        row = {"style": style, "prompt": role, "k": int(k), "replies": n}
        for name, (hits, trials) in counts.items():
            low, high = wilson_interval(hits, trials)
            row |= {
                f"{name}_hits": hits,
                f"{name}_trials": trials,
                name: hits / trials if trials else np.nan,
                f"{name}_low": low,
                f"{name}_high": high,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(row, name: str) -> str:
    if not row[f"{name}_trials"]:
        return "–"
    return (
        f"{row[f'{name}_hits']}/{row[f'{name}_trials']} {row[name]:.0%} "
        f"[{row[f'{name}_low']:.0%}–{row[f'{name}_high']:.0%}]"
    )


def summary_table(summary: pd.DataFrame, title: str) -> Table:
    """The rich table `main` prints: one row per (style, prompt, k)."""
    table = Table(
        title=title, caption="hits/trials rate [Wilson 95% CI]; π_i: replies naming brand i"
    )
    columns = ("style", "prompt", "k", "relevant entrant", "each other listed", "≥ 1 listed",
               "per listed entrant")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("style", "prompt") else "right")
    for _, row in summary.iterrows():
        if row["prompt"] == ADVERTISER:
            table.add_row(row["style"], "π_i", "1", _cell(row, "relevant"), "", "", "")
            continue
        rates = (_cell(row, name) for name in ("relevant", "others", "any", "per_entrant"))
        table.add_row(row["style"], "π_con", str(row["k"]), *rates)
    return table


# -- the command --------------------------------------------------------------------------------


class _ProbeUsage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ProbeUsage(message)


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="admarket probe", description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="hf", choices=("hf", "vllm", "synthetic"), help="(hf)")
    p.add_argument("--model", help="hf/vLLM model folder or hub id (default: the embedded one)")
    p.add_argument("--style", help="prompt style(s), comma-separated (default: the engine's)")
    p.add_argument("--queries", type=int, default=10, help="catalog queries, one per topic (10)")
    p.add_argument("--seeds", type=int, default=1, help="listing seeds per query (1)")
    p.add_argument("--replies", type=int, default=4, help="replies per prompt (4)")
    p.add_argument("--tokens", type=int, default=48, help="max new tokens per reply (48)")
    p.add_argument("--listed", type=_numbers, default=LISTED, help="k values (1,2,4,8)")
    p.add_argument("--seed", type=int, default=0, help="sampling and listing root seed (0)")
    p.add_argument(
        "--relevant-at", default="first", help="where π_con lists the relevant entrant: first|last"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (hf)")
    p.add_argument("--no-cache", action="store_true", help="do not use the engine-call cache")
    p.add_argument("--out", type=Path, help="output folder (default: runs/probe-<timestamp>)")
    return p


def _engine(args: argparse.Namespace, catalog: BrandCatalog):
    kwargs: dict = {}
    if args.model:
        if args.engine == "synthetic":
            raise _ProbeUsage("--model names an hf or vLLM model; the synthetic engine has none")
        kwargs["model"] = args.model
    if args.threads is not None:
        if args.engine != "hf":
            raise _ProbeUsage("--threads applies to the hf engine only")
        kwargs["threads"] = args.threads
    known = Catalog(
        brand_topics={b.name: b.topics for b in catalog.brands},
        query_topics={q.text: q.topic for q in catalog.queries},
    )
    return create_engine(
        {"type": args.engine, "kwargs": kwargs}, catalog=known, cache=not args.no_cache
    )


def main(argv: Sequence[str] | None = None, *, engine=None) -> int:
    """Measure, print the table, write probe.csv, replies.csv and dilution.png; exit code.

    ``engine`` reuses an already built engine (tests); bad flags are one line and exit 2.
    """
    console = Console()
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as done:  # --help
            return int(done.code or 0)
        if args.tokens < 1:
            raise _ProbeUsage(f"--tokens must be >= 1, got {args.tokens}")
        catalog = load_catalog()
        engine = engine if engine is not None else _engine(args, catalog)
        styles = tuple(args.style.split(",")) if args.style else (prompt_style(engine),)
        settings = ProbeSettings(
            styles=styles,
            listed=args.listed,
            queries=args.queries,
            seeds=args.seeds,
            replies=args.replies,
            params=SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.tokens),
            seed=args.seed,
            relevant_at=args.relevant_at,
        )
        catalog_queries(catalog, settings.queries)  # a bad --queries fails before any call
        out = args.out or Path("runs") / time.strftime("probe-%Y%m%d-%H%M%S")
        if out.exists() and not out.is_dir():
            raise _ProbeUsage(f"--out {out} is a file; give a folder")
    except (_ProbeUsage, ValueError, EngineError) as err:
        print(f"admarket probe: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    replies, seconds = probe_replies(engine, settings, catalog)
    elapsed = time.perf_counter() - start
    summary = summarize(replies)
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "probe.csv", index=False)
    replies.to_csv(out / "replies.csv", index=False)
    n = settings.queries * settings.seeds
    title = (
        f"Mentions on {engine.info.model}: {settings.queries} queries × {settings.seeds} listing "
        f"seed(s) × {settings.replies} replies = {n * settings.replies} replies per row; T 0.8, "
        f"top-p 0.95, {settings.params.max_new_tokens} tokens, seed {settings.seed}; relevant "
        f"entrant listed {settings.relevant_at}"
    )
    console.print(summary_table(summary, title))
    figure = dilution_figure(
        summary,
        out / "dilution.png",
        model=engine.info.model,
        note=f"relevant entrant listed {settings.relevant_at}, {settings.params.max_new_tokens} "
        "tokens",
    )
    console.print(
        f"{len(seconds)} generate calls in {elapsed:.1f} s; wrote {out / 'probe.csv'}, "
        f"{out / 'replies.csv'}, {figure}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
