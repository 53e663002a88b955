"""Shared prompt prefix vs none, per dtype: do the scores agree, and which is faster?

The context prompt of a music query listing three brands generates M candidates; the reference
prompt and the three advertiser prompts score them, once with the shared prefix's KV cache
computed once (`HFEngine.share_prefix`) and once without. Prints, per dtype and M, the largest
difference of a reply's log-probability between the two paths and the time of each. docs/gpu.md
holds its figures on an H200.

`python -m benchmarks.prefix_check [--device cuda] [--dtypes float32,bfloat16] [--candidates 8,64]`
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from market.engines.base import SamplingParams
from market.prompts import Brand, Query, advertiser_prompt, context_prompt, reference_prompt

QUERY = Query("How can I learn to play the guitar quickly?", "music")
BRANDS = (
    Brand("MusicMastery", "sells online music lessons", ("music",)),
    Brand("KitchenFix", "repairs kitchen appliances", ("home",)),
    Brand("InstaTune", "sells a guitar tuner app", ("music",)),
)
TOKENS = 48


def compare(engine, m: int, sync) -> str:
    """One line: M, identical draws, max / mean |shared − not shared| and the timings."""
    generator = context_prompt(QUERY, BRANDS, "user")
    prompts = [reference_prompt(QUERY, "user")] + [
        advertiser_prompt(QUERY, b, "user") for b in BRANDS
    ]
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=TOKENS)
    drawn, seconds = {}, {}
    for share in (True, False):
        engine.share_prefix = share
        engine.clear_generation_memo()
        sync()
        start = time.perf_counter()
        [candidates] = engine.generate([generator], m, params, seed=1)
        sync()
        generated = time.perf_counter() - start
        engine.clear_generation_memo()
        start = time.perf_counter()
        engine.score(prompts, candidates)
        sync()
        drawn[share], seconds[share] = candidates, (generated, time.perf_counter() - start)
    scores = {}
    for share in (True, False):  # the same replies, scored both ways
        engine.share_prefix = share
        engine.clear_generation_memo()
        scores[share] = np.asarray(engine.score(prompts, drawn[False]))
    same = sum(a.token_ids == b.token_ids for a, b in zip(drawn[True], drawn[False], strict=True))
    gap = np.abs(scores[True] - scores[False])
    return (
        f"M={m}: same replies drawn {same}/{m}; |shared − not shared| max {gap.max():.2e}, mean "
        f"{gap.mean():.2e} (max per token {gap.max() / TOKENS:.1e}); generate s shared "
        f"{seconds[True][0]:.2f} / not {seconds[False][0]:.2f}; score s shared "
        f"{seconds[True][1]:.3f} / not {seconds[False][1]:.3f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefix_check", description=__doc__)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (auto)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    parser.add_argument("--candidates", default="8,64", help="values of M, comma-separated")
    args = parser.parse_args(argv)
    import torch

    from market.engines.hf import HFEngine

    for dtype in args.dtypes.split(","):
        engine = HFEngine(device=args.device, dtype=dtype, prompt_style="user")
        cuda = engine.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        for m in (int(v) for v in args.candidates.split(",")):
            print(f"{dtype} on {engine.device}: {compare(engine, m, sync)}", flush=True)
        del engine
        if cuda:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
