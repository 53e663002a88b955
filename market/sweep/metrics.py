"""The headline numbers of one job, per variant: one row of ``summary.parquet`` each.

Computed from the job's run folder alone (its ``rounds`` and ``advertisers`` tables, docs/data.md),
with the run report's definitions (`reports.tables.HEADLINE_METRICS`; a test checks they agree):

- ``entry_relevant_late`` / ``entry_irrelevant_late``: share of advertiser-rounds entered among
  advertisers the query is relevant / irrelevant to, in the second half of the run (rounds
  ``t >= T // 2``), where learning entry policies have settled (free-riding, Sec. 5.3.2);
- ``revenue``: Σ payments per round; ``welfare``: Σ realized rewards of the entrants for the
  returned reply, per round; ``expected_welfare``: the same under the allocation;
- ``total_gain``: the entrants' utility gain from participation summed over advertisers, per
  round. An entrant's gain is her utility minus ``expected_reward_without``, the reward she gets
  when the allocation is computed without her on the same candidates (eq. 15; the gain of the
  paper's Figs. 4–7, App. C.4). NaN when the mechanism has no such counterfactual (token auction);
- ``usefulness``: log π_ref(reply | x) per token of the returned reply (App. C.3), mean over rounds;
- ``mention_rate``: share of entries in which the returned reply names the entrant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .adapter import read_job_table

METRICS: dict[str, str] = {
    "entry_relevant_late": "entry, relevant advertisers, 2nd half (share of advertiser-rounds)",
    "entry_irrelevant_late": "entry, irrelevant advertisers, 2nd half (share of advertiser-rounds)",
    "revenue": "revenue / round",
    "welfare": "welfare / round (realized)",
    "expected_welfare": "expected welfare / round",
    "total_gain": "total utility gain of entrants / round (utility − reward without her, eq. 15)",
    "usefulness": "usefulness (log π_ref / token)",
    "mention_rate": "mention rate (share of entries named in the reply)",
}

_ROUND_COLUMNS = ("variant", "round", "revenue", "welfare", "expected_welfare", "usefulness")
_ADVERTISER_COLUMNS = (
    "variant", "round", "entered", "relevant", "utility", "expected_reward_without", "mentioned",
)  # fmt: skip


def job_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """One dict per variant (in the order the run wrote them): ``variant``, ``rounds`` and every
    key of `METRICS`."""
    rounds = read_job_table(run_dir, "rounds", _ROUND_COLUMNS)
    advertisers = read_job_table(run_dir, "advertisers", _ADVERTISER_COLUMNS)
    return [
        variant_metrics(
            rounds[rounds["variant"] == variant], advertisers[advertisers["variant"] == variant]
        )
        | {"variant": str(variant)}
        for variant in pd.unique(rounds["variant"])
    ]


def variant_metrics(rounds: pd.DataFrame, advertisers: pd.DataFrame) -> dict[str, Any]:
    """The metrics of one variant of one replicate (see the module docstring)."""
    n = int(rounds["round"].nunique())
    late = advertisers["round"].to_numpy() >= n // 2
    entered = advertisers["entered"].to_numpy(dtype=bool)
    relevant = advertisers["relevant"].to_numpy(dtype=bool)
    gains = (
        advertisers["utility"].to_numpy(dtype=float)
        - advertisers["expected_reward_without"].to_numpy(dtype=float)
    )[entered]
    mentioned = advertisers["mentioned"].to_numpy(dtype=bool)[entered]
    return {
        "rounds": n,
        "entry_relevant_late": _share(entered[relevant & late]),
        "entry_irrelevant_late": _share(entered[~relevant & late]),
        "revenue": float(rounds["revenue"].astype(float).mean()),
        "welfare": float(rounds["welfare"].astype(float).mean()),
        "expected_welfare": float(rounds["expected_welfare"].astype(float).mean()),
        "total_gain": float(gains.sum() / n) if np.isfinite(gains).all() else np.nan,
        "usefulness": float(rounds["usefulness"].astype(float).mean()),
        "mention_rate": _share(mentioned),
    }


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else np.nan
