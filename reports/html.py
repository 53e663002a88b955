"""The run report: `build_report(run_dir)` writes run_dir/report.html and run_dir/figures/*.png."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from reports.data import RunData, load_run
from reports.figures import build_figures
from reports.mentions import (
    advertiser_display,
    entrants_display,
    mention_by_advertiser,
    mention_by_entrants,
)
from reports.replies import replies_html
from reports.summary import headline_sentences
from reports.tables import (
    advertiser_table,
    contribution_fits,
    dilution_table,
    headline_table,
    headline_wide,
)
from reports.template import figure_html, meta_list, notes_html, page, table_html


def _engine_text(info: object) -> str:
    if isinstance(info, dict):
        return " · ".join(f"{k}={v}" for k, v in info.items() if k != "extra")
    return str(info)


def _run_facts(data: RunData) -> dict[str, object]:
    """What produced the run, from meta.json (``engines`` per variant, or one ``engine``)."""
    engines = data.meta.get("engines")
    if isinstance(engines, dict) and engines:
        texts = {v: _engine_text(info) for v, info in engines.items()}
        distinct = set(texts.values())
        engine_text = (
            distinct.pop()
            if len(distinct) == 1
            else "; ".join(f"{v}: {t}" for v, t in texts.items())
        )
    elif "engine" in data.meta:
        engine_text = _engine_text(data.meta["engine"])
    else:
        engine_text = "not recorded in meta.json"
    return {
        "run folder": data.run_dir.resolve(),
        "engine": engine_text,
        "status": data.meta.get("status", "n/a"),
        "admarket version": data.meta.get("admarket_version", data.meta.get("version", "n/a")),
        "mechanism": ", ".join(data.mechanisms),
        "generator": ", ".join(_unique(data.rounds["generator"])),
        "variants": ", ".join(data.variants),
        "seeds": ", ".join(str(s) for s in data.seeds),
        "rounds per replicate": data.n_rounds,
        "advertisers": data.advertisers["advertiser"].nunique(),
    }


def _unique(values) -> list[str]:
    return [str(v) for v in dict.fromkeys(values)]


def _notes(data: RunData) -> list[str]:
    notes = []
    token = [
        v
        for v in data.variants
        if not np.isfinite(
            data.advertisers.loc[data.advertisers["variant"] == v, "contribution"].to_numpy(float)
        ).any()
    ]
    if token:
        notes.append(
            f"Variant(s) {', '.join(token)} record no counterfactual expected_reward_without and "
            "no offset (token auction): contribution, utility gain, the IR check, Pearson r and "
            "the gain-vs-contribution scatter do not apply to them and are shown as n/a."
        )
    if len(data.seeds) == 1:
        notes.append(
            "One seed: confidence intervals are percentile bootstrap intervals over rounds, not "
            "over independent replicates; they understate between-run variability."
        )
    return notes


def render_report(data: RunData, out_path: Path) -> Path:
    """Write the figures beside ``out_path`` and the HTML page itself."""
    headline = headline_table(data)
    figures = build_figures(data, out_path.parent / "figures", headline=headline)
    fits = contribution_fits(data)
    lead = "<br>".join(html.escape(s) for s in headline_sentences(data, headline))
    parts = [
        f"<p><strong>{lead}</strong></p>",
        meta_list(_run_facts(data)),
        notes_html(_notes(data)),
    ]

    method = headline["method"].iloc[0]
    parts.append("<h2>Headline per variant</h2>")
    parts.append(f"<p>Estimate [95% CI]; CI: {html.escape(method)}.</p>")
    parts.append(table_html(headline_wide(headline), index=True))
    parts.append(
        "<p>Participation: share of advertiser-rounds entered, among advertisers the query is "
        "relevant / irrelevant to; 2nd half: rounds in the second half of each replicate. Utility "
        "(E[r] − p) is the raw ex-interim utility over entered rounds. Utility gain = utility − "
        "E[r without her], the reward she would expect from the same candidates had she stayed "
        "out (eq. 15): the gain from participation the paper plots (App. C.4). Ex-ante IR is "
        "checked on the gain (gain ≥ 0, up to 1e-9 round-off), not on the raw utility, because "
        "staying out is not worth 0. Pearson r: gain against contribution "
        "(expected_reward − expected_reward_without).</p>"
    )

    parts.append("<h2>Utility gain and contribution to welfare</h2>")
    parts.append(
        "<p>Least-squares fit of the utility gain from participation on the contribution over all "
        "entries (pooled over seeds), with the gain's mean and minimum and the share of entries "
        "with gain ≥ 0. The paper reports Pearson r = 0.8 with the offset and 0.4 with plain "
        "Rochet payments (Sec. 6.2.2, App. C.4 Fig. 7). With the offset and truthful reports the "
        "gain is τ·log E_β[e^{r/τ}] − E_β[r] ≥ 0 on every candidate set (Jensen), so IR holds "
        "exactly there.</p>"
    )
    parts.append(table_html(fits))

    parts.append("<h2>Figures</h2>")
    for fig in figures:
        if fig.path is None:
            parts.append(notes_html([f"{fig.title}: not drawn — {fig.skipped}."]))
            continue
        parts.append(f"<h3>{html.escape(fig.title)}</h3>")
        caption = fig.caption + (f" Not shown: {fig.skipped}." if fig.skipped else "")
        parts.append(figure_html(f"figures/{fig.path.name}", caption, fig.title))

    parts.append("<h2>Per advertiser</h2>")
    parts.append(
        "<p>Pooled over seeds and rounds; cumulative utility and gain are averaged over seeds. "
        "utility_per_entry is the raw utility E[r] − p; gain_per_entry the utility gain from "
        "participation (eq. 15).</p>"
    )
    parts.append(table_html(advertiser_table(data)))

    parts.append(replies_html(data))

    parts.append("<h2>Brand mentions and dilution</h2>")
    parts.append(
        "<p>A mention: the entrant's name, as a whole word in any case, in the returned reply "
        "(the <code>mentioned</code> columns). The context-aware generator is asked to mention "
        "every entrant, so with more entrants each gets fewer mentions (dilution, App. B.4). "
        "Intervals: Wilson 95%, pooled over seeds.</p>"
    )
    parts.append("<h3>Per advertiser: share of the rounds she entered that mention her</h3>")
    parts.append(table_html(advertiser_display(mention_by_advertiser(data))))
    parts.append("<h3>Per number of entrants</h3>")
    parts.append(
        "<p>Mentions per entrant: mentioned entrants / entrant-rounds; the share of returned "
        "replies that mention at least one entrant. Rounds nobody entered are left out.</p>"
    )
    parts.append(table_html(entrants_display(mention_by_entrants(data))))
    parts.append("<h3>Relevant entrants by number of entrants</h3>")
    parts.append(table_html(dilution_table(data)))

    parts.append("<h2>Resolved scenario</h2>")
    scenario = data.scenario_text or "(no scenario.yaml in the run folder)"
    parts.append(f"<pre>{html.escape(scenario)}</pre>")

    out_path.write_text(page(f"admarket run report — {data.run_dir.name}", "\n".join(parts)))
    return out_path


def build_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html and run_dir/figures/*.png from the run's parquet files."""
    data = load_run(run_dir)
    return render_report(data, data.run_dir / "report.html")
