"""The report of the paper's replication (`admarket replicate`): figures, claim checks and a page,
read from a replication run folder alone (the study itself runs in `market.studies.replication`).

`build_study_report(DIR)` writes ``DIR/figures/*.png``, ``summary.csv``, ``checks.csv`` and
``replication.html``; `print_study_summary` prints the claim checks. See docs/replication.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from market.columns import REPLICATION_TABLES
from market.runfolder import read_table
from reports.replication_figures import build_study_figures
from reports.replication_report import (
    convergence_summary,
    shape_checks,
    summary_table,
    write_study_html,
)
from reports.replication_tables import COUNTERFACTUALS, gain_table

# Every replication folder has these; ``convergence`` only where it was computed (synthetic).
TABLES = ("instances", "advertisers", "candidates", "optima")
OPTIONAL = tuple(n for n in REPLICATION_TABLES if n not in TABLES)
# The gain table of each counterfactual (`reports.replication_tables`); ``tables.csv`` is eq. 15's.
TABLE_FILES = {
    "same_candidates": "tables.csv",
    "absent_from_prompt": "tables_absent_from_prompt.csv",
}


def _has_table(out: Path, name: str) -> bool:
    return (out / name).is_dir() or (out / f"{name}.parquet").is_file()


def build_study_report(out_dir: str | Path) -> Path:
    """figures/*.png and replication.html from a replication run folder's files alone."""
    out = Path(out_dir)
    missing = [n for n in TABLES if not _has_table(out, n)]
    if missing or not (out / "meta.json").is_file():
        raise FileNotFoundError(
            f"{out} is not a replication folder (missing {missing or ['meta.json']}); "
            "run `admarket replicate --out DIR` first"
        )
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    facts_of_study = meta["study"]["facts"]
    instances, advertisers, candidates, optima = (read_table(out, n) for n in TABLES)
    exact = bool(optima["exact"].all())
    summary = summary_table(instances)
    m_max = int(instances["M"].max())
    gains = {name: gain_table(advertisers, name) for name in COUNTERFACTUALS}
    gains = {name: table for name, table in gains.items() if not table.empty}
    convergence = None
    if all(_has_table(out, n) for n in OPTIONAL):
        rows = read_table(out, "convergence")
        convergence = convergence_summary(rows) if len(rows) else None
    if exact:
        benchmarks = {
            "optimal_logp": float(optima["optimal_logp"].mean()),
            "reference_logp": float(optima["reference_logp"].mean()),
        }
    else:
        pools = candidates[
            (candidates["generator"] == facts_of_study.get("reference_generator"))
            & (candidates["M"] == m_max)
        ]
        benchmarks = {"reference_logp": float(pools["log_ref"].mean()) if len(pools) else np.nan}
    figures = build_study_figures(
        out / "figures", summary, gains, advertisers, benchmarks, convergence, exact
    )
    checks = shape_checks(summary, gains, convergence, benchmarks)
    summary.to_csv(out / "summary.csv", index=False)
    for name, table in gains.items():
        table.to_csv(out / TABLE_FILES[name], index=False)
    checks.to_csv(out / "checks.csv", index=False)
    study = facts_of_study
    engine = next(iter(meta["engines"].values()), {})
    pools = max(1, len(instances[["instance", "seed", "generator"]].drop_duplicates()))
    facts = {
        "folder": out.resolve(),
        "engine": " · ".join(
            f"{k}={engine.get(k)}" for k in ("engine", "model", "device", "dtype")
        ),
        "instances (queries × advertiser pairs)": study["queries"],
        "seeds per instance": study["seeds"],
        "M grid (nested candidate sets)": ", ".join(map(str, study["m_grid"])),
        "generators": ", ".join(f"{k} = π_{v[:3]}" for k, v in study["generators"].items()),
        "τ, temperature, top-p": f"{study['tau']}, {study['sampling']['temperature']}, "
        f"{study['sampling']['top_p']}",
        "wall time": f"{meta['wall_seconds']:.1f} s ({meta['wall_seconds'] / pools:.3f} s per "
        f"candidate pool; {meta.get('engine_seconds', 0.0):.1f} s inside the engine)",
    }
    notes = [
        "Candidate sets are nested: the M_max candidates of an (instance, seed, generator) are "
        "drawn once and each M uses the first M of them, so curves over M share randomness.",
        "Figs. 4–7, the IR check and every Pearson r / slope / R² use the utility gain from "
        "participation (App. C.4): utility minus her reward when she stays out. tables.csv uses "
        "the same-candidates counterfactual (eq. 15: the allocation without her report, "
        "softmax(β_-i)·r_i), under which the gain with the offset is ≥ 0 by Jensen's inequality."
        " The raw utility E[r] − p is kept, labelled as such; below 0 it says nothing about IR, "
        "because staying out is not worth 0.",
    ]
    if "absent_from_prompt" in gains:
        notes.append(
            "tables_absent_from_prompt.csv uses the counterfactual in which she is absent from the"
            " context prompt too: the candidates regenerated without her (same engine seed, so "
            "the reference generator's candidates are unchanged) and the others' allocation over "
            "them — the paper's Fig. 1b normalisation, which its footnote 5 estimates. IR is not "
            "a theorem there."
        )
    if exact:
        notes.append(
            "Synthetic engine: π_r is exact over each instance's whole support "
            f"({int(optima['support_size'].iloc[0])} replies)."
        )
    if convergence is not None:
        notes.append(
            "Fig. 1a is also computed exactly: the distribution π_M of the reply MOSAIC returns "
            "from M candidates (market/studies/convergence.py, a one-dimensional integral over "
            "the enumerated support), for the study's sampler and for the same temperature with "
            "top_p = 1. Theorem A.1's convergence π_M → π_r needs π_ref ≪ π_gen: under top-p < 1 "
            "TV(π_r, π_M) is floored at 1 − π_r(support of the sampler), which it reaches; only "
            "the top_p = 1 panel converges to 0. A reply drawn from π_r has E[log π_r] = −H(π_r):"
            ' that level, not "higher", is what the returned reply\'s log π_r is compared with.'
        )
    else:
        notes.append(
            "π_r is known only up to log Z(x) on this engine: log π_r values are log π_ref + Σ r_i "
            "(footnote 9); the benchmark is footnote 4's proxy."
        )
    scenario_path = out / "scenario.yaml"
    scenario_text = scenario_path.read_text(encoding="utf-8") if scenario_path.is_file() else ""
    return write_study_html(
        out / "replication.html",
        facts,
        notes,
        figures,
        summary,
        checks,
        gains,
        convergence,
        scenario_text,
    )


def print_study_summary(out_dir: Path, console: Console) -> None:
    checks = pd.read_csv(Path(out_dir) / "checks.csv", dtype=str, keep_default_na=False)
    table = Table(title="MOSAIC paper claims on this replication")
    for column in ("claim", "paper", "ours", "holds"):
        table.add_column(column)
    for row in checks.itertuples():
        table.add_row(row.claim, row.paper, row.ours, row.holds)
    console.print(table)
