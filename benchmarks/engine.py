"""Engine throughput on one MOSAIC round: the batched engine against the naive way, same run.

A round, as the auction makes it: M candidates sampled from the context-aware generator, then the
log-probability of every candidate under the reference, each advertiser and the generator prompt,
all in the engine's prompt style (``--style``; default: the engine's own, for the embedded model
the measured best, `market.engines.chat.EMBEDDED_PROMPT_STYLE`).

- engine, shared prefix: one ``generate`` of M sequences and one ``score`` of M replies × (2 +
  advertisers) prompts, the KV cache of the prompts' shared prefix (chat header, system turn, query: the
  user-turn styles put the instruction after it) computed once per call;
- engine, prefix not shared: the same calls, every prompt prefilled in full;
- naive: M ``generate`` calls of one sequence each and one forward pass per prompt–reply pair.

Every path's round time is printed as a ratio against the naive loop, measured in the same run, and
the shared-prefix scores are checked equal to the unshared ones (max abs difference printed).

Measured on the shared 2-core CPU (load average 4-6 from other jobs, so CPU seconds are the
steadier figure), torch 1 thread, the embedded model in its default 'user' style, 1 repeat:

- ``--threads 1 --repeats 1`` (M = 8, 48 tokens, 3 advertisers, 36 shared prefix tokens of 310):
  shared 15.65 s, not shared 15.10 s, naive 65.40 s a round: 4.18× / 4.33× wall (3.43× / 3.55×
  CPU) over the naive loop; sharing does not pay here (0.96×): reply tokens (367 × 5) dominate.
- ``--threads 1 --repeats 1 --advertisers 10 --context 4 --candidates 4 --tokens 16`` (12 prompts,
  200 shared prefix tokens): shared 29.58 s, not shared 44.10 s, naive 208.94 s: 7.06× / 4.74×
  wall over the naive loop; sharing 1.72× on scoring (1.47× CPU), 1.49× on the round.

Run with ``python -m benchmarks.engine`` (flags: --candidates, --tokens, --repeats, --skip-naive,
--threads, --style, --advertisers, --context). Prints wall and CPU seconds, the speed-ups, tokens
per second and peak resident memory; also rounds per second of the synthetic engine when it is
installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from market.engines import Catalog, Prompt, SamplingParams, create_engine
from market.engines.base import prompt_style
from market.prompts import (
    PROMPT_STYLES,
    Brand,
    Query,
    advertiser_prompt,
    context_prompt,
    reference_prompt,
)

QUERY = Query("What is the best way to learn to play the guitar as an adult beginner?", "music")
BRANDS = (
    Brand("MusicMastery", "selling online guitar lessons with personal teachers", ("music",)),
    Brand("StringHouse", "selling acoustic and electric guitars for beginners", ("music",)),
    Brand("TuneUp", "selling a tuner and chord-practice app", ("music",)),
)
CONTEXT = (
    "I work full time, have two kids, can practise twenty minutes on weekday evenings and an "
    "hour on weekends, own a cheap acoustic guitar, read a little sheet music, and get bored "
    "with scales. "
)
TARGET_SPEEDUP = 4.0


def round_inputs(advertisers: int = 3, context: int = 0) -> tuple[Query, tuple[Brand, ...]]:
    """The benchmark's query (after ``context`` sentences about the user: a longer shared prefix)
    and ``advertisers`` brands (the three of `BRANDS`, then numbered guitar shops)."""
    extra = tuple(
        Brand(f"GuitarShop{k}", f"selling guitar gear line number {k} for beginners", ("music",))
        for k in range(max(0, advertisers - len(BRANDS)))
    )
    query = Query(CONTEXT * context + QUERY.text, QUERY.topic) if context else QUERY
    return query, (BRANDS + extra)[:advertisers]


TARGET_RSS_GIB = 3.0


@dataclass(frozen=True)
class RoundTiming:
    """Seconds (median over repeats) and token counts of one round done one way."""

    label: str
    generate_s: float
    score_s: float
    cpu_s: float
    generated_tokens: int
    scored_tokens: int

    @property
    def round_s(self) -> float:
        return self.generate_s + self.score_s


@dataclass(frozen=True)
class RoundPrompts:
    generator: Prompt
    scorers: tuple[Prompt, ...]  # reference, each advertiser, generator


def round_prompts(
    query: Query = QUERY, brands: tuple[Brand, ...] = BRANDS, style: str = "system"
) -> RoundPrompts:
    generator = context_prompt(query, list(brands), style)
    scorers = (
        reference_prompt(query, style),
        *(advertiser_prompt(query, b, style) for b in brands),
        generator,
    )
    return RoundPrompts(generator=generator, scorers=scorers)


def _timed(action: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _median_timing(label: str, runs: list[tuple[float, float, float, int, int]]) -> RoundTiming:
    return RoundTiming(
        label=label,
        generate_s=statistics.median(r[0] for r in runs),
        score_s=statistics.median(r[1] for r in runs),
        cpu_s=statistics.median(r[2] for r in runs),
        generated_tokens=runs[0][3],
        scored_tokens=runs[0][4],
    )


def time_engine_round(
    engine,
    prompts: RoundPrompts,
    m: int,
    params: SamplingParams,
    seeds,
    *,
    share_prefix: bool = True,
    scores: list | None = None,
) -> RoundTiming:
    """The engine's round: one batched generate, one batched score (its prompts' shared prefix
    computed once, or every prompt in full). Each round's score matrix is appended to ``scores``.
    """
    runs = []
    shared = engine.share_prefix
    engine.share_prefix = share_prefix
    try:
        for seed in seeds:
            generated, gen_s, gen_cpu = _timed(
                lambda seed=seed: engine.generate([prompts.generator], m, params, seed)[0]
            )
            matrix, score_s, score_cpu = _timed(
                lambda g=generated: engine.score(prompts.scorers, g)
            )
            if scores is not None:
                scores.append(np.asarray(matrix))
            tokens = sum(len(c.token_ids) for c in generated)
            runs.append(
                (gen_s, score_s, gen_cpu + score_cpu, tokens, tokens * len(prompts.scorers))
            )
    finally:
        engine.share_prefix = shared
    label = "engine, shared prefix" if share_prefix else "engine, prefix not shared"
    return _median_timing(label, runs)


def naive_pair_logprob(engine, prompt: Prompt, reply_ids: tuple[int, ...]) -> float:
    """log π(reply | prompt) from one full forward pass of prompt + reply, no cache, no batching."""
    import torch

    prompt_ids = engine.prompt_token_ids(prompt)
    ids = torch.tensor([prompt_ids + reply_ids], device=engine.device)
    with torch.inference_mode():
        logits = engine.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    targets = torch.tensor(reply_ids, device=engine.device)
    return float(logprobs.gather(1, targets[:, None]).double().sum())


def time_naive_round(
    engine, prompts: RoundPrompts, m: int, params: SamplingParams, seeds
) -> RoundTiming:
    """The naive round: one sequence per generate call, one prompt–reply pair per forward pass."""
    runs = []
    for seed in seeds:
        generated, gen_s, gen_cpu = _timed(
            lambda seed=seed: [
                engine.generate([prompts.generator], 1, params, seed * 1000 + k)[0][0]
                for k in range(m)
            ]
        )
        _, score_s, score_cpu = _timed(
            lambda g=generated: [
                naive_pair_logprob(engine, p, c.token_ids) for p in prompts.scorers for c in g
            ]
        )
        tokens = sum(len(c.token_ids) for c in generated)
        runs.append((gen_s, score_s, gen_cpu + score_cpu, tokens, tokens * len(prompts.scorers)))
    return _median_timing("naive (one at a time)", runs)


def time_synthetic(prompts: RoundPrompts, m: int, params: SamplingParams, rounds: int) -> str:
    """Rounds per second of the synthetic engine on the same shapes, or why it was skipped."""
    if importlib.util.find_spec("market.engines.synthetic") is None:
        return "skipped: market.engines.synthetic is not installed"
    query = prompts.generator.query
    catalog = Catalog(
        brand_topics={b.name: b.topics for b in prompts.generator.brands},
        query_topics={query.text: query.topic},
    )
    try:
        engine = create_engine({"type": "synthetic"}, catalog=catalog)
        start = time.perf_counter()
        for seed in range(rounds):
            generated = engine.generate([prompts.generator], m, params, seed)[0]
            engine.score(prompts.scorers, generated)
        elapsed = time.perf_counter() - start
    except Exception as exc:  # a benchmark reports a broken engine instead of stopping
        return f"failed: {type(exc).__name__}: {exc}"
    return f"{rounds / elapsed:,.1f} rounds/s ({rounds} rounds in {elapsed:.2f} s)"


def _shared_prefix_tokens(engine, prompts: RoundPrompts) -> int:
    from market.engines.chat import shared_prefix_length

    return shared_prefix_length([engine.prompt_token_ids(p) for p in prompts.scorers])


def peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024**3 if sys.platform == "darwin" else 1024**2)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--candidates", type=int, default=8, help="candidates M per round (8)")
    parser.add_argument("--tokens", type=int, default=48, help="max new tokens per reply (48)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds timed per path (2)")
    parser.add_argument("--skip-naive", action="store_true", help="time the engine only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--style",
        choices=list(PROMPT_STYLES),
        default=None,
        help="prompt style of the round (default: the engine's)",
    )
    parser.add_argument(
        "--advertisers", type=int, default=3, help="advertisers listed and scored (3)"
    )
    parser.add_argument(
        "--context",
        type=int,
        default=0,
        help="sentences of user context before the query: a longer shared prefix (0)",
    )
    args = parser.parse_args(argv)
    if args.context < 0:
        parser.error("--context must be >= 0")
    for name in ("candidates", "tokens", "repeats", "advertisers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def main(argv: list[str] | None = None, *, engine=None) -> int:
    """Run the benchmark; ``engine`` reuses an already loaded hf engine (tests do)."""
    args = _parse(argv)
    console = Console(width=110)
    if engine is None:
        kwargs = {} if args.threads is None else {"threads": args.threads}
        engine, load_s, _ = _timed(lambda: create_engine({"type": "hf", "kwargs": kwargs}))
        console.print(f"loaded {engine.info.model} on {engine.info.device} in {load_s:.1f} s")
    style = args.style or prompt_style(engine)
    query, brands = round_inputs(args.advertisers, args.context)
    prompts = round_prompts(query, brands, style=style)
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.tokens)
    engine.generate([prompts.generator], 2, SamplingParams(max_new_tokens=2), seed=0)  # warm-up
    seeds = range(1, args.repeats + 1)
    shared_scores: list = []
    plain_scores: list = []
    timings = [
        time_engine_round(engine, prompts, args.candidates, params, seeds, scores=shared_scores),
        time_engine_round(
            engine,
            prompts,
            args.candidates,
            params,
            seeds,
            share_prefix=False,
            scores=plain_scores,
        ),
    ]
    if not args.skip_naive:
        timings.append(time_naive_round(engine, prompts, args.candidates, params, seeds))

    prefix = _shared_prefix_tokens(engine, prompts)
    table = Table(
        title=f"One round: M={args.candidates} candidates, ≤{args.tokens} tokens, "
        f"{len(prompts.scorers)} scoring prompts, {style!r} style, shared prefix {prefix} "
        f"tokens (median of {args.repeats})"
    )
    for column in ("path", "generate s", "score s", "round s", "CPU s", "gen tok/s", "score tok/s"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for t in timings:
        table.add_row(
            t.label,
            f"{t.generate_s:.2f}",
            f"{t.score_s:.2f}",
            f"{t.round_s:.2f}",
            f"{t.cpu_s:.2f}",
            f"{t.generated_tokens / t.generate_s:,.0f}",
            f"{t.scored_tokens / t.score_s:,.0f}",
        )
    console.print(table)
    difference = max(
        float(np.max(np.abs(a - b))) for a, b in zip(shared_scores, plain_scores, strict=True)
    )
    console.print(
        f"shared prefix vs not shared: {timings[1].score_s / timings[0].score_s:.2f}× score wall, "
        f"{timings[1].round_s / timings[0].round_s:.2f}× round wall; scores equal to "
        f"{difference:.1e} (max abs difference)"
    )
    if not args.skip_naive:
        naive = timings[-1]
        for engine_timing in timings[:2]:
            wall_ratio = naive.round_s / engine_timing.round_s
            cpu_ratio = naive.cpu_s / engine_timing.cpu_s
            verdict = "met" if wall_ratio >= TARGET_SPEEDUP else "NOT met"
            console.print(
                f"speed-up: {engine_timing.label} over the naive loop {wall_ratio:.2f}× wall, "
                f"{cpu_ratio:.2f}× CPU (target ≥ {TARGET_SPEEDUP:.0f}× wall: {verdict})"
            )
    rss = peak_rss_gib()
    verdict = "met" if rss < TARGET_RSS_GIB else "NOT met"
    console.print(f"peak RSS: {rss:.2f} GiB (target < {TARGET_RSS_GIB:.0f} GiB: {verdict})")
    console.print(
        f"synthetic engine: {time_synthetic(prompts, args.candidates, params, rounds=50)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
