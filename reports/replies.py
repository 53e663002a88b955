"""Returned replies a person can read: a few sampled rounds per variant, with brand mentions marked.

For each variant the report shows, from the run's first seed, the first and the last round, the
round with the highest revenue and the one with the lowest revenue among rounds with at least one
entrant (a round nobody enters has revenue 0 by construction and tells nothing about the auction);
a round picked for several reasons is shown once. Ties go to the earliest round. When none of
these replies mentions an entrant but some reply of the run does, the first such round is added,
so that the reader sees what a mention looks like.

Each round shows the query, the entrants, the returned reply with every entrant's name marked
where the market counts it as a mention (`market.auction.mentions`: a whole word, any case), the
allocation weight of the returned candidate (auctions table), and per entrant the payment, the
ex-interim utility E[r] − p (eq. 13; eq. 5 with the offset) and the utility gain from
participation, utility − E[r without her] (App. C.4, eq. 15: the reward the allocation computed
without her report gives her on the same candidates).
"""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

from reports.colours import advertiser_colours, advertiser_names, tint
from reports.data import KEYS, RunData
from reports.gain import utility_gain
from reports.template import meta_list, scroll_box

REASONS = ("first", "last", "highest revenue", "lowest revenue")
MENTION = "first reply that mentions an entrant"


def _names(value: object) -> list[str]:
    """A list column's cell (numpy array, list or missing) as a list of names."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(v) for v in value]


def sample_rounds(data: RunData, seed: int | None = None) -> pd.DataFrame:
    """The sampled rounds of every variant for ``seed`` (default: the run's first seed).

    One row per (variant, round), rounds in order, with ``why``: the reasons it was picked, from
    `REASONS` and `MENTION`, joined by ", ".
    """
    seed = data.seeds[0] if seed is None else seed
    rows = []
    for variant in data.variants:
        part = data.rounds[(data.rounds["variant"] == variant) & (data.rounds["seed"] == seed)]
        if part.empty:
            continue
        part = part.sort_values("round")
        revenue = part["revenue"].astype(float)
        entered = part[part["n_entrants"] > 0]
        low_pool = revenue[entered.index] if not entered.empty else revenue
        picks = {
            "first": part["round"].iloc[0],
            "last": part["round"].iloc[-1],
            "highest revenue": part.loc[revenue.idxmax(), "round"],
            "lowest revenue": part.loc[low_pool.idxmin(), "round"],
        }
        said = part["mentioned"].map(len) > 0
        if said.any() and not said[part["round"].isin(picks.values())].any():
            picks[MENTION] = part.loc[said, "round"].iloc[0]
        why: dict[int, list[str]] = {}
        for reason in (*REASONS, MENTION):
            if reason in picks:
                why.setdefault(int(picks[reason]), []).append(reason)
        rows += [
            {"variant": variant, "seed": int(seed), "round": r, "why": ", ".join(why[r])}
            for r in sorted(why)
        ]
    return pd.DataFrame(rows, columns=[*KEYS, "why"])


def mention_pattern(names: list[str]) -> re.Pattern[str] | None:
    """Any of ``names`` as a whole word, ignoring case, longest name first (so that "Kitchen Fix"
    wins over "Fix"); the same rule as `market.auction.mentions`."""
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", flags=re.IGNORECASE)


def highlight_mentions(text: str, names: list[str], colours: dict[str, str]) -> str:
    """``text`` as escaped HTML with every whole-word, case-insensitive mention of one of
    ``names`` wrapped in ``<mark>``, tinted with that advertiser's colour (``colours``: name →
    CSS colour)."""
    pattern = mention_pattern(names)
    if pattern is None:
        return html.escape(text)
    by_key = {n.casefold(): n for n in names}
    out, end = [], 0
    for match in pattern.finditer(text):
        name = by_key.get(match.group(0).casefold(), match.group(0))
        out.append(html.escape(text[end : match.start()]))
        out.append(_mark(match.group(0), name, colours.get(name, "#ffef9f")))
        end = match.end()
    out.append(html.escape(text[end:]))
    return "".join(out)


def _mark(text: str, name: str, colour: str) -> str:
    return (
        f'<mark style="background:{html.escape(colour)}" title="{html.escape(name)}">'
        f"{html.escape(text)}</mark>"
    )


def entrant_table(data: RunData, variant: str, seed: int, round_: int) -> pd.DataFrame:
    """The entrants of one round, in the round's ``entrants`` order: payment, E[r], utility
    (E[r] − p), E[r] without her (eq. 15) and the utility gain (utility − that; NaN for the token
    auction, which records no counterfactual)."""
    adv = data.advertisers
    part = adv[
        (adv["variant"] == variant) & (adv["seed"] == seed) & (adv["round"] == round_)
    ].set_index("advertiser")
    row = _round_row(data, variant, seed, round_)
    order = [n for n in _names(row["entrants"]) if n in part.index]
    part = part.loc[order]
    utility = part["utility"].astype(float)
    without = part["expected_reward_without"].astype(float)
    return pd.DataFrame(
        {
            "advertiser": order,
            "relevant": part["relevant"].to_numpy(bool),
            "mentioned": part["mentioned"].to_numpy(bool),
            "payment": part["payment"].to_numpy(float),
            "E[r]": part["expected_reward"].to_numpy(float),
            "utility (E[r] − p)": utility.to_numpy(),
            "E[r] without her": without.to_numpy(),
            "utility gain": utility_gain(part).to_numpy(),
        }
    )


def returned_allocation(data: RunData, variant: str, seed: int, round_: int) -> float:
    """Allocation probability of the returned candidate (NaN when the auctions table is absent)."""
    auc = data.auctions
    if auc.empty:
        return float("nan")
    hit = auc[
        (auc["variant"] == variant)
        & (auc["seed"] == seed)
        & (auc["round"] == round_)
        & auc["returned"].astype(bool)
    ]
    return float(hit["allocation"].iloc[0]) if len(hit) else float("nan")


def _round_row(data: RunData, variant: str, seed: int, round_: int) -> pd.Series:
    r = data.rounds
    return r[(r["variant"] == variant) & (r["seed"] == seed) & (r["round"] == round_)].iloc[0]


def _number(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "n/a"


def _entrant_html(table: pd.DataFrame, colours: dict[str, str]) -> str:
    cells = table.copy()
    cells["advertiser"] = [_mark(n, n, colours.get(n, "#ffef9f")) for n in table["advertiser"]]
    for column in ("relevant", "mentioned"):
        cells[column] = np.where(table[column], "yes", "no")
    for column in table.columns[3:]:
        cells[column] = [_number(v) for v in table[column].astype(float)]
    # Every cell is escaped or formatted above, so pandas must not escape the <mark> again.
    return scroll_box(cells.to_html(index=False, escape=False, border=0))


def round_card(data: RunData, variant: str, seed: int, round_: int, why: str, colours) -> str:
    """One sampled round as HTML: facts, the marked reply, the entrants' money."""
    row = _round_row(data, variant, seed, round_)
    entrants = _names(row["entrants"])
    mentioned = _names(row["mentioned"])
    facts = {
        "query": row["query"],
        f"entrants ({len(entrants)})": ", ".join(entrants) or "none (the reference reply)",
        "mentioned in the reply": ", ".join(mentioned) or "none",
        "allocation weight of the returned reply": _number(
            returned_allocation(data, variant, seed, round_)
        ),
        "revenue": _number(float(row["revenue"])),
    }
    parts = [
        '<div class="reply-card">',
        f"<h4>round {round_} · seed {seed} · {html.escape(why)}</h4>",
        meta_list(facts),
        f'<blockquote class="reply">{highlight_mentions(str(row["reply_text"]), entrants, colours)}'
        "</blockquote>",
    ]
    table = entrant_table(data, variant, seed, round_)
    if not table.empty:
        parts.append(_entrant_html(table, colours))
    parts.append("</div>")
    return "\n".join(parts)


def replies_html(data: RunData) -> str:
    """The report section: per variant, the sampled rounds of the first seed as cards."""
    names = advertiser_names(data)
    colours = {n: tint(c) for n, c in advertiser_colours(names).items()}
    sample = sample_rounds(data)
    seed = data.seeds[0]
    parts = [
        "<h2>Returned replies</h2>",
        f"<p>Seed {seed}{' (the first of the run)' if len(data.seeds) > 1 else ''}: per variant "
        "the first and last rounds and the rounds with the highest and the lowest revenue (lowest "
        "among rounds someone entered), and the first reply that mentions an entrant when none of "
        "those does; a round picked twice is shown once. Each entrant's name "
        "is <mark>marked</mark> where the market counts a mention (whole word, any case), in her "
        "own colour. Utility (E[r] − p) is the ex-interim utility (eq. 13); utility gain = utility "
        "− E[r without her], the gain from participation the paper plots (App. C.4, eq. 15), "
        "n/a for the token auction, which has no counterfactual.</p>",
    ]
    for variant in data.variants:
        rounds = sample[sample["variant"] == variant]
        parts.append(f"<h3>{html.escape(variant)}</h3>")
        parts += [
            round_card(data, variant, int(r.seed), int(r.round), r.why, colours)
            for r in rounds.itertuples()
        ]
    return "\n".join(parts)
