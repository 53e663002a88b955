"""Mention rates of each prompt style on a real model: how often the instructed LLM names brands.

For every style and k = 1, 2, 4 listed brands, the context-aware prompt π_con (App. C.1) lists
k brands — the query topic's own brands first, then brands of other topics — and the engine
samples ``replies`` replies per query (one ``generate`` call per style, every prompt in it). Also
the advertiser prompt π_i of the query's first brand. A reply mentions a brand when its name
appears as a word (`market.auction.mentions`). Printed per style and k:

- ``any``: share of π_con's replies naming at least one listed brand;
- ``each``: mean over listed brands of the share of replies naming that brand (dilution);
- ``advertiser``: share of π_i's replies naming brand i;
- ``score``: the mean of ``any`` over k — the number that picks a model's default style.

Run with ``python -m benchmarks.prompt_styles`` (flags: --replies, --tokens, --seed, --queries,
--styles, --threads, --model). The paper's sampler settings are the default: temperature 0.8,
top-p 0.95, 48 new tokens, 8 replies.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from market.auction import mentions
from market.engines import SamplingParams, create_engine
from market.prompts import PROMPT_STYLES, Brand, Query, advertiser_prompt, context_prompt

QUERIES: tuple[tuple[Query, tuple[Brand, ...]], ...] = (
    (
        Query("How can I learn to play the guitar?", "music"),
        (
            Brand("MusicMastery", "offering online music lessons and virtual tutoring", ("music",)),
            Brand("InstaTune", "selling musical instruments and learning aids", ("music",)),
            Brand("ChordCraft", "offering a songwriting and chord practice app", ("music",)),
            Brand("EasySwitch", "offering a comprehensive VPN service", ("privacy",)),
        ),
    ),
    (
        Query("How can I protect my privacy online?", "privacy"),
        (
            Brand("EasySwitch", "offering a comprehensive VPN service", ("privacy",)),
            Brand("LockVault", "offering a password manager for families", ("privacy",)),
            Brand("ShieldMail", "offering encrypted email accounts", ("privacy",)),
            Brand("KitchenFix", "producing kitchen appliances", ("cooking",)),
        ),
    ),
)
LISTED = (1, 2, 4)


@dataclass(frozen=True)
class StyleRates:
    """Mention rates of one style: ``any[k]``, ``each[k]`` (k listed brands), ``advertiser``."""

    style: str
    any: dict[int, float]
    each: dict[int, float]
    advertiser: float
    replies: int

    @property
    def score(self) -> float:
        """The mean over k of the share of π_con's replies naming a listed brand."""
        return sum(self.any.values()) / len(self.any)


def mention_rates(
    engine,
    style: str,
    *,
    queries: Sequence[tuple[Query, tuple[Brand, ...]]] = QUERIES,
    listed: Sequence[int] = LISTED,
    replies: int = 8,
    params: SamplingParams | None = None,
    seed: int = 0,
) -> StyleRates:
    """Mention rates of ``style`` on ``engine``: one generate call of every prompt × ``replies``."""
    params = params or SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=48)
    prompts, listings = [], []
    for query, brands in queries:
        for k in listed:
            prompts.append(context_prompt(query, brands[:k], style))
            listings.append(("context", k, brands[:k]))
        prompts.append(advertiser_prompt(query, brands[0], style))
        listings.append(("advertiser", 1, brands[:1]))
    generated = engine.generate(prompts, replies, params, seed)
    named_any: dict[int, list[bool]] = {k: [] for k in listed}
    named_each: dict[int, list[bool]] = {k: [] for k in listed}
    advertised: list[bool] = []
    for (role, k, brands), candidates in zip(listings, generated, strict=True):
        for candidate in candidates:
            named = [mentions(candidate.text, b.name) for b in brands]
            if role == "advertiser":
                advertised.append(named[0])
            else:
                named_any[k].append(any(named))
                named_each[k].extend(named)
    return StyleRates(
        style=style,
        any={k: sum(v) / len(v) for k, v in named_any.items()},
        each={k: sum(v) / len(v) for k, v in named_each.items()},
        advertiser=sum(advertised) / len(advertised),
        replies=replies * len(queries),
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prompt_styles", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--replies", type=int, default=8, help="replies per prompt (8)")
    parser.add_argument("--tokens", type=int, default=48, help="max new tokens per reply (48)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    parser.add_argument("--queries", type=int, default=len(QUERIES), help="queries (2)")
    parser.add_argument(
        "--styles", default=",".join(PROMPT_STYLES), help="comma-separated styles (all)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--model", default=None, help="hf model (default: the embedded one)")
    args = parser.parse_args(argv)
    if args.replies < 1 or args.tokens < 1 or not 1 <= args.queries <= len(QUERIES):
        parser.error(f"--replies and --tokens must be >= 1, --queries in [1, {len(QUERIES)}]")
    unknown = [s for s in args.styles.split(",") if s not in PROMPT_STYLES]
    if unknown:
        parser.error(f"--styles: unknown {unknown}; use {', '.join(PROMPT_STYLES)}")
    return args


def main(argv: list[str] | None = None, *, engine=None) -> int:
    """Measure and print the mention rates; ``engine`` reuses a loaded hf engine (tests do)."""
    args = _parse(argv)
    console = Console(width=110)
    if engine is None:
        kwargs = {"model": args.model} if args.model else {}
        if args.threads is not None:
            kwargs["threads"] = args.threads
        engine = create_engine({"type": "hf", "kwargs": kwargs})
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.tokens)
    results = [
        mention_rates(
            engine,
            style,
            queries=QUERIES[: args.queries],
            replies=args.replies,
            params=params,
            seed=args.seed,
        )
        for style in args.styles.split(",")
    ]
    table = Table(
        title=f"Mention rates on {engine.info.model}: {args.replies} replies × {args.queries} "
        f"queries per cell, T 0.8, top-p 0.95, {args.tokens} tokens, seed {args.seed}"
    )
    for column in ("style", *(f"any k={k}" for k in LISTED), *(f"each k={k}" for k in LISTED)):
        table.add_column(column, justify="left" if column == "style" else "right")
    table.add_column("advertiser", justify="right")
    table.add_column("score", justify="right")
    for r in results:
        n = r.replies
        table.add_row(
            r.style,
            *(f"{round(r.any[k] * n)}/{n}" for k in LISTED),
            *(f"{r.each[k]:.2f}" for k in LISTED),
            f"{round(r.advertiser * n)}/{n}",
            f"{r.score:.2f}",
        )
    console.print(table)
    best = max(results, key=lambda r: r.score)
    console.print(f"highest mention rate: {best.style} (score {best.score:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
