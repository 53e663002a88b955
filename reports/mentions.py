"""How often the returned reply names the advertisers: per advertiser and per number of entrants.

This is the dilution evidence of App. B.4: the context-aware generator is asked to mention every
entrant, so the more entrants share its prompt, the fewer mentions each one gets. A mention is the
market's own record (``mentioned`` in the rounds and advertisers tables: the entrant's name as a
whole word, any case, in the returned reply). Intervals are Wilson 95% intervals over rounds
(per advertiser) or over entrant-rounds / rounds (per number of entrants), pooled over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.data import RunData
from reports.stats import wilson_interval
from reports.tables import format_interval


def _variant_order(data: RunData, table: pd.DataFrame, *by: str) -> pd.DataFrame:
    rank = table["variant"].map({v: k for k, v in enumerate(data.variants)})
    return (
        table.assign(_rank=rank)
        .sort_values(["_rank", *by], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def mention_by_advertiser(data: RunData) -> pd.DataFrame:
    """Per (variant, advertiser): among the rounds she entered, the share whose returned reply
    mentions her, overall (Wilson 95% CI) and split by whether the query was relevant to her."""
    adv = data.advertisers[data.advertisers["entered"]]
    rows = []
    for (variant, name), part in adv.groupby(["variant", "advertiser"], sort=False):
        said = part["mentioned"].to_numpy(bool)
        relevant = part["relevant"].to_numpy(bool)
        low, high = wilson_interval(int(said.sum()), len(part))
        rows.append(
            {
                "variant": variant,
                "advertiser": name,
                "rounds_entered": len(part),
                "mentions": int(said.sum()),
                "mention_rate": said.mean(),
                "mention_low": low,
                "mention_high": high,
                "entered_relevant": int(relevant.sum()),
                "mention_rate_relevant": said[relevant].mean() if relevant.any() else np.nan,
                "mention_rate_irrelevant": said[~relevant].mean() if (~relevant).any() else np.nan,
            }
        )
    columns = [
        "variant", "advertiser", "rounds_entered", "mentions", "mention_rate", "mention_low",
        "mention_high", "entered_relevant", "mention_rate_relevant", "mention_rate_irrelevant",
    ]  # fmt: skip
    return _variant_order(data, pd.DataFrame(rows, columns=columns))


def mention_by_entrants(data: RunData) -> pd.DataFrame:
    """Per (variant, n_entrants ≥ 1): mentions per entrant (mentioned entrants / entrant-rounds)
    and the share of returned replies that mention at least one entrant, each with a Wilson 95%
    CI. Rounds nobody entered are left out (there is nobody to mention)."""
    rounds = data.rounds[data.rounds["n_entrants"] > 0]
    said = rounds["mentioned"].map(len).astype(int)
    helper = pd.DataFrame(
        {
            "variant": rounds["variant"],
            "n_entrants": rounds["n_entrants"].astype(int),
            "said": said,
            "any": said > 0,
        }
    )
    rows = []
    for (variant, n), part in helper.groupby(["variant", "n_entrants"], sort=False):
        entrant_rounds = int(n) * len(part)
        mentions, hits = int(part["said"].sum()), int(part["any"].sum())
        per_low, per_high = wilson_interval(mentions, entrant_rounds)
        any_low, any_high = wilson_interval(hits, len(part))
        rows.append(
            {
                "variant": variant,
                "n_entrants": int(n),
                "rounds": len(part),
                "entrant_rounds": entrant_rounds,
                "mentions_per_entrant": mentions / entrant_rounds,
                "per_entrant_low": per_low,
                "per_entrant_high": per_high,
                "share_any_mention": hits / len(part),
                "any_low": any_low,
                "any_high": any_high,
            }
        )
    columns = [
        "variant", "n_entrants", "rounds", "entrant_rounds", "mentions_per_entrant",
        "per_entrant_low", "per_entrant_high", "share_any_mention", "any_low", "any_high",
    ]  # fmt: skip
    return _variant_order(data, pd.DataFrame(rows, columns=columns), "n_entrants")


def _with_interval(table: pd.DataFrame, label: str, estimate: str, low: str, high: str):
    cells = [
        format_interval(e, lo, hi)
        for e, lo, hi in zip(table[estimate], table[low], table[high], strict=True)
    ]
    at = table.columns.get_loc(estimate)
    shown = table.drop(columns=[estimate, low, high])
    shown.insert(at, label, cells)
    return shown


def advertiser_display(table: pd.DataFrame) -> pd.DataFrame:
    """`mention_by_advertiser` for the page: the rate and its interval in one cell."""
    return _with_interval(
        table, "mention rate [95% CI]", "mention_rate", "mention_low", "mention_high"
    )


def entrants_display(table: pd.DataFrame) -> pd.DataFrame:
    """`mention_by_entrants` for the page: each estimate and its interval in one cell."""
    shown = _with_interval(
        table,
        "mentions per entrant [95% CI]",
        "mentions_per_entrant",
        "per_entrant_low",
        "per_entrant_high",
    )
    return _with_interval(
        shown, "share mentioning ≥ 1 entrant [95% CI]", "share_any_mention", "any_low", "any_high"
    )
