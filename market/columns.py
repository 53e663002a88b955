"""The tables a run writes: every column's name, parquet type and meaning, in one place.

This spec drives the Mesa DataCollector reporters of `market.model` (one named reporter per
column, checked against the spec at import), the parquet schema the run folder is written with
(`TableSpec.schema`), what the reports require of a run folder (`TABLE_COLUMNS`) and the column
tables of docs/data.md, which are generated from it::

    python -m market.columns docs/data.md docs/replication.md   # rewrite generated sections

(tests/test_model.py checks that the file in the repository equals what this writes).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

_STRINGS = pa.list_(pa.string())
_FLOATS = pa.list_(pa.float64())


@dataclass(frozen=True)
class Column:
    """One column: its name, parquet type and what it means (with the paper's notation)."""

    name: str
    type: pa.DataType
    meaning: str


@dataclass(frozen=True)
class TableSpec:
    """One table of a run folder: its name, what one row is, and its columns in order."""

    name: str
    row: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.type) for c in self.columns])

    def named(self, functions: dict) -> dict:
        """``functions`` (one per column, keyed by column name) in the spec's column order.

        Raises ValueError when a column has no function or a function has no column, so the
        reporters of a table cannot drift from its spec.
        """
        missing = [n for n in self.names if n not in functions]
        extra = [n for n in functions if n not in self.names]
        if missing or extra:
            raise ValueError(
                f"table {self.name!r}: reporters do not match the spec in market/columns.py "
                f"(without a reporter: {missing}; not in the spec: {extra})"
            )
        return {n: functions[n] for n in self.names}


_KEYS = (
    Column("variant", pa.string(), "variant name (`base` when the scenario has none)"),
    Column("seed", pa.int64(), "root seed of this replicate"),
    Column("round", pa.int64(), "0-based round index"),
)
KEYS = tuple(c.name for c in _KEYS)

ROUNDS = TableSpec(
    "rounds",
    "variant × seed × round",
    (
        *_KEYS,
        Column("query", pa.string(), "the user query x"),
        Column("topic", pa.string(), "its topic"),
        Column("mechanism", pa.string(), "`mosaic` or `token_auction`"),
        Column(
            "generator",
            pa.string(),
            "`context` / `reference` (MOSAIC's π_gen), `token` for the token auction",
        ),
        Column("n_entrants", pa.int64(), "advertisers that entered"),
        Column("entrants", _STRINGS, "their names"),
        Column(
            "n_relevant_entrants", pa.int64(), "entrants whose topics include the query's topic"
        ),
        Column(
            "n_irrelevant_entrants",
            pa.int64(),
            "entrants whose topics do not include the query's topic",
        ),
        Column("n_candidates", pa.int64(), "M (1 for the token auction)"),
        Column("revenue", pa.float64(), "Σ payments"),
        Column("welfare", pa.float64(), "Σ realized rewards of entrants for the returned reply"),
        Column(
            "expected_welfare", pa.float64(), "Σ expected rewards of entrants under the allocation"
        ),
        Column(
            "usefulness",
            pa.float64(),
            "log π_ref(reply | x) per token (user usefulness, App. C.3)",
        ),
        Column("reply_logprob_ref", pa.float64(), "log π_ref(reply | x), whole reply"),
        Column("reply_tokens", pa.int64(), "length of the returned reply in tokens"),
        Column("reply_text", pa.string(), "the returned reply"),
        Column(
            "ess",
            pa.float64(),
            "effective sample size of the allocation, 1 / Σ allocation² (M for uniform)",
        ),
        Column("mentioned", _STRINGS, "entrants whose name appears in the returned reply"),
        Column("engine_seconds", pa.float64(), "wall time inside engine calls this round"),
        Column("round_seconds", pa.float64(), "wall time of the whole round"),
    ),
)

ADVERTISERS = TableSpec(
    "advertisers",
    "variant × seed × round × advertiser",
    (
        *_KEYS,
        Column("advertiser", pa.string(), "name"),
        Column("value", pa.float64(), "value scale v_i"),
        Column("policy", pa.string(), "entry policy type"),
        Column("entered", pa.bool_(), "took part this round"),
        Column(
            "relevant",
            pa.bool_(),
            "the query's topic is one of its topics (an edge of the advertisers–topics graph)",
        ),
        Column(
            "topic",
            pa.string(),
            "the query's topic this round (what a `targeting: topic` policy learns per)",
        ),
        Column("payment", pa.float64(), "p_i (0 when out)"),
        Column("expected_reward", pa.float64(), "allocation · r_i (true rewards; 0 when out)"),
        Column(
            "expected_reward_without",
            pa.float64(),
            "softmax(β_{-i}) · r_i on the same candidates: what the allocation would give her "
            "without her report (eq. 15; NaN when out and for the token auction)",
        ),
        Column("utility", pa.float64(), "expected_reward − payment (0 when out)"),
        Column("realized_reward", pa.float64(), "r_i of the returned reply (0 when out)"),
        Column("realized_utility", pa.float64(), "realized_reward − payment"),
        Column(
            "outside_reward",
            pa.float64(),
            "when out and the outside option is on: r_i of the reply shown without her; else NaN",
        ),
        Column("mentioned", pa.bool_(), "her name appears in the returned reply"),
        Column(
            "offset",
            pa.float64(),
            "C_i used in her payment (0 without offset; NaN when out and for the token auction)",
        ),
    ),
)

AUCTIONS = TableSpec(
    "auctions",
    "variant × seed × round × candidate",
    (
        *_KEYS,
        Column("candidate", pa.int64(), "j"),
        Column("text", pa.string(), "candidate reply y_j"),
        Column("n_tokens", pa.int64(), "its length in tokens"),
        Column("log_ref", pa.float64(), "log π_ref(y_j | x)"),
        Column("log_gen", pa.float64(), "exact proposal log-probability of y_j under the sampler"),
        Column("allocation", pa.float64(), "probability of returning y_j"),
        Column("returned", pa.bool_(), "y_j was returned"),
        Column("rewards", _FLOATS, "r_i(x, y_j) (true) for each entrant, in `entrants` order"),
        Column("entrants", _STRINGS, "entrant names"),
    ),
)

RUN_TABLES: dict[str, TableSpec] = {t.name: t for t in (ROUNDS, ADVERTISERS, AUCTIONS)}


# --- the paper's one-shot study (`admarket replicate`, docs/replication.md) --------------------

_INSTANCE = (
    Column("instance", pa.int64(), "index of the instance (one query with two advertisers)"),
    Column("query", pa.string(), "the user query x"),
    Column("topic", pa.string(), "its topic"),
    Column("advertisers", pa.string(), "the instance's two advertisers, `A + B`"),
)
_AUCTION = (
    *_INSTANCE,
    Column("seed", pa.int64(), "seed index of the instance (0, 1, …; the run's root seed aside)"),
    Column("generator", pa.string(), "variant: `context` (π_con) or `baseline` (π_ref)"),
    Column("M", pa.int64(), "candidates used: the first M of one M_max draw (nested sets)"),
)

INSTANCES = TableSpec(
    "instances",
    "instance × seed × generator × M",
    (
        *_AUCTION,
        Column(
            "logp_optimal",
            pa.float64(),
            "Σ_j allocation_j · log π_r(y_j): expected log π_r of the returned reply (Fig. 1a; "
            "up to log Z(x) off the synthetic engine)",
        ),
        Column("logp_optimal_returned", pa.float64(), "log π_r of the reply actually drawn"),
        Column(
            "logp_reference",
            pa.float64(),
            "Σ_j allocation_j · log π_ref(y_j) (Fig. 3, App. C.3)",
        ),
        Column("usefulness", pa.float64(), "log π_ref(reply | x) per token of the returned reply"),
        Column("expected_reward", pa.float64(), "Σ_i allocation · r_i"),
        Column(
            "normalized_reward",
            pa.float64(),
            "Σ_i (allocation · r_i − softmax(β_-i) · r_i) on the same candidates (Fig. 1b, eq. 15)",
        ),
        Column(
            "normalized_reward_absent_prompt",
            pa.float64(),
            "Σ_i (allocation · r_i − her reward absent from the prompt): Fig. 1b's normalisation "
            "(NaN off the synthetic engine)",
        ),
        Column(
            "utility_offset",
            pa.float64(),
            "Σ_i utility (E[r] − p) with the offset C_i (raw, eq. 5)",
        ),
        Column(
            "utility_no_offset",
            pa.float64(),
            "Σ_i utility (E[r] − p) under Rochet payments, C_i = 0 (raw, eq. 13)",
        ),
        Column(
            "utility_gain_offset",
            pa.float64(),
            "Σ_i utility gain with the offset: utility − softmax(β_-i) · r_i (Fig. 4, eq. 15)",
        ),
        Column(
            "utility_gain_no_offset",
            pa.float64(),
            "Σ_i utility gain with C_i = 0, same candidates (Fig. 4, eq. 15)",
        ),
        Column(
            "utility_gain_offset_absent_prompt",
            pa.float64(),
            "Σ_i utility gain with the offset, counterfactual absent from the prompt (NaN off "
            "the synthetic engine)",
        ),
        Column(
            "utility_gain_no_offset_absent_prompt",
            pa.float64(),
            "Σ_i utility gain with C_i = 0, counterfactual absent from the prompt",
        ),
        Column("revenue_offset", pa.float64(), "Σ_i payment with the offset (Fig. 2)"),
        Column("revenue_no_offset", pa.float64(), "Σ_i payment with C_i = 0"),
        Column("ess", pa.float64(), "effective sample size of the allocation, 1 / Σ allocation²"),
        Column("mentions", pa.int64(), "advertisers named in the returned reply (of 2)"),
        Column("reply_tokens", pa.int64(), "length of the returned reply in tokens"),
        Column("reply_text", pa.string(), "the returned reply"),
    ),
)

STUDY_ADVERTISERS = TableSpec(
    "advertisers",
    "instance × seed × generator × M × advertiser",
    (
        *_AUCTION,
        Column("advertiser", pa.string(), "name"),
        Column("expected_reward", pa.float64(), "allocation · r_i"),
        Column(
            "expected_reward_without",
            pa.float64(),
            "softmax(β_-i) · r_i: her reward from the allocation without her report (eq. 15)",
        ),
        Column(
            "contribution", pa.float64(), "expected_reward − expected_reward_without (Figs. 5/6)"
        ),
        Column(
            "expected_reward_absent_prompt",
            pa.float64(),
            "her reward had she stayed out of the auction and the context prompt: the others' "
            "allocation over candidates regenerated without her (Fig. 1b; NaN off synthetic)",
        ),
        Column(
            "contribution_absent_prompt",
            pa.float64(),
            "expected_reward − expected_reward_absent_prompt (Fig. 1b's normalized reward)",
        ),
        Column(
            "utility_offset", pa.float64(), "utility (E[r] − p): expected_reward − payment_offset"
        ),
        Column(
            "utility_no_offset",
            pa.float64(),
            "utility (E[r] − p): expected_reward − payment_no_offset",
        ),
        Column(
            "utility_gain_offset",
            pa.float64(),
            "utility_offset − expected_reward_without: gain from participation (Figs. 4–7, eq. 15)",
        ),
        Column(
            "utility_gain_no_offset",
            pa.float64(),
            "utility_no_offset − expected_reward_without (Figs. 4–7, eq. 15)",
        ),
        Column(
            "utility_gain_offset_absent_prompt",
            pa.float64(),
            "utility_offset − expected_reward_absent_prompt",
        ),
        Column(
            "utility_gain_no_offset_absent_prompt",
            pa.float64(),
            "utility_no_offset − expected_reward_absent_prompt",
        ),
        Column("payment_offset", pa.float64(), "p_i with the offset (Sec. 5.3)"),
        Column("payment_no_offset", pa.float64(), "p_i + C_i: the Rochet payment (eq. 13)"),
        Column("offset", pa.float64(), "C_i = −τ·logsumexp(β_-i)"),
        Column("mentioned", pa.bool_(), "her name appears in the returned reply"),
    ),
)

CANDIDATES = TableSpec(
    "candidates",
    "instance × seed × generator × M × candidate",
    (
        *_AUCTION,
        Column("candidate", pa.int64(), "j"),
        Column("reply", pa.string(), "the candidate's token ids, space-separated"),
        Column("allocation", pa.float64(), "probability of returning y_j"),
        Column("log_ref", pa.float64(), "log π_ref(y_j | x)"),
        Column(
            "log_pi_r",
            pa.float64(),
            "log π_r(y_j | x), π_r ∝ π_ref·exp(Σ_i r_i/τ) (eq. 2; up to log Z(x) off synthetic)",
        ),
    ),
)

OPTIMA = TableSpec(
    "optima",
    "instance (written by the first generator's replicate)",
    (
        Column("instance", pa.int64(), "index of the instance"),
        Column("query", pa.string(), "the user query x"),
        Column("advertisers", pa.string(), "the instance's two advertisers, `A + B`"),
        Column("exact", pa.bool_(), "π_r known exactly (synthetic engine: whole support scored)"),
        Column("log_z", pa.float64(), "log Z(x) = log Σ_y π_ref(y)·exp(r(y)/τ) (NaN if not exact)"),
        Column("optimal_logp", pa.float64(), "E_{y~π_r}[log π_r(y)] = −H(π_r) (Fig. 1a benchmark)"),
        Column("reference_logp", pa.float64(), "E_{y~π_ref}[log π_ref(y)] (footnote 4's proxy)"),
        Column("support_size", pa.int64(), "replies in the enumerated support (0 if not exact)"),
    ),
)

CONVERGENCE = TableSpec(
    "convergence",
    "instance × generator × sampler × M (synthetic engine; market/studies/convergence.py)",
    (
        Column("instance", pa.int64(), "index of the instance"),
        Column("query", pa.string(), "the user query x"),
        Column("advertisers", pa.string(), "the instance's two advertisers, `A + B`"),
        Column("generator", pa.string(), "variant: `context` (π_con) or `baseline` (π_ref)"),
        Column(
            "sampler",
            pa.string(),
            "`study` (the scenario's sampling) or `top_p=1` (same temperature, full support)",
        ),
        Column("temperature", pa.float64(), "the sampler's temperature"),
        Column("top_p", pa.float64(), "the sampler's top-p"),
        Column("M", pa.int64(), "candidates"),
        Column(
            "tv",
            pa.float64(),
            "TV(π_r, π_M), π_M the exact distribution of the returned reply (Thm. A.1)",
        ),
        Column(
            "tv_floor",
            pa.float64(),
            "1 − π_r(S), S the sampler's support: TV's limit as M → ∞ (0 for top_p = 1)",
        ),
        Column(
            "logp_induced", pa.float64(), "E_{y~π_M}[log π_r(y)]: the returned reply's (Fig. 1a)"
        ),
        Column("logp_optimal", pa.float64(), "E_{y~π_r}[log π_r(y)] = −H(π_r): a draw from π_r"),
        Column(
            "logp_limit", pa.float64(), "E_{y~π_r restricted to S}[log π_r(y)]: the M → ∞ limit"
        ),
        Column("mass_error", pa.float64(), "|Σ_y π_M(y) − 1|: the quadrature's accuracy"),
    ),
)

REPLICATION_TABLES: dict[str, TableSpec] = {
    t.name: t for t in (INSTANCES, STUDY_ADVERTISERS, CANDIDATES, OPTIMA, CONVERGENCE)
}

# Every table of every study, by the name docs/*.md sections use.
DOC_TABLES: dict[str, TableSpec] = {
    **RUN_TABLES,
    **{f"replication.{name}": t for name, t in REPLICATION_TABLES.items()},
}
SCHEMAS: dict[str, pa.Schema] = {name: t.schema for name, t in RUN_TABLES.items()}

# What the reports read (the writer writes exactly these; reports/data.py checks a folder has them).
ROUND_COLUMNS = ROUNDS.names
ADVERTISER_COLUMNS = ADVERTISERS.names
AUCTION_COLUMNS = AUCTIONS.names
TABLE_COLUMNS = {name: t.names for name, t in RUN_TABLES.items()}


# --- docs/data.md ------------------------------------------------------------------------------

_TYPE_NAMES = {
    pa.string(): "str",
    pa.int64(): "int",
    pa.float64(): "float",
    pa.bool_(): "bool",
    _STRINGS: "list[str]",
    _FLOATS: "list[float]",
}
_SECTION = re.compile(
    r"(<!-- columns: (?P<name>[\w.]+) -->\n).*?(<!-- end of columns -->)", flags=re.DOTALL
)


def markdown_table(spec: TableSpec) -> str:
    """The column table of docs/data.md for one table."""
    lines = [f"One row per {spec.row}.", "", "| column | type | meaning |", "|---|---|---|"]
    for c in spec.columns:
        meaning = c.meaning.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {_TYPE_NAMES.get(c.type, str(c.type))} | {meaning} |")
    return "\n".join(lines) + "\n"


def render_docs(text: str, tables: dict[str, TableSpec] | None = None) -> str:
    """``text`` with every ``<!-- columns: NAME -->`` … ``<!-- end of columns -->`` section
    replaced by the spec's table NAME; ValueError for a section naming no table."""
    tables = DOC_TABLES if tables is None else tables

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in tables:
            raise ValueError(f"docs section names table {name!r}; known: {', '.join(tables)}")
        return f"{match.group(1)}{markdown_table(tables[name])}{match.group(3)}"

    return _SECTION.sub(replace, text)


if __name__ == "__main__":
    for path in map(Path, sys.argv[1:]):
        path.write_text(render_docs(path.read_text(encoding="utf-8")), encoding="utf-8")
