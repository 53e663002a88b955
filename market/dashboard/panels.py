"""The live panels: functions of the model that return Solara elements (SolaraViz components).

Each panel reads the market through public state only: the model's DataCollector
(``model.datacollector.model_vars``, the CLI's round reporters), the dashboard's own collector
(``model.entry``), the latest `RoundOutcome` (``model.outcome``), the agents' recorded rounds
(``agent.history``) and `LiveMarket`'s running totals. Charts are Vega-Lite specs compiled once
by Altair; each render only swaps in the rows (recompiling with Altair costs ~20 ms a chart,
which alone would cap the display below 20 rounds a second).
"""

from __future__ import annotations

import csv
import functools
import html
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import altair as alt
import solara
import solara.widgets

from .live import LiveMarket

WINDOW = 300  # rounds shown in the time-series charts
RECENT = 50  # rounds over which an advertiser's entry rate is shown
SMOOTH = 20  # rounds in the moving averages
KIND_COLORS = {"relevant": "#1f77b4", "irrelevant": "#d62728"}
MONEY_COLORS = {"revenue": "#2ca02c", "welfare": "#9467bd"}


def highlight(text: str, names: Iterable[str]) -> str:
    """``text`` as HTML (escaped) with every mention of a brand wrapped in ``<mark>``.

    A mention is what `market.auction.mentions` counts: the name as a whole word, any case.
    """
    escaped = html.escape(text)
    names = sorted({html.escape(n) for n in names if n}, key=len, reverse=True)
    if not names:
        return escaped
    pattern = "|".join(re.escape(n) for n in names)
    return re.sub(
        rf"(?<!\w)({pattern})(?!\w)",
        lambda m: f"<mark>{m.group(1)}</mark>",
        escaped,
        flags=re.IGNORECASE,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def table(columns: dict[str, Sequence[Any]]) -> str:
    """An HTML table (escaped) of named columns; floats with 3 decimals, NaN as –."""
    header = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in zip(*columns.values(), strict=True)
    )
    return f'<table class="am-table"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


# --- charts: Vega-Lite compiled once, rows swapped in per render --------------------------------


def _rows() -> alt.NamedData:
    return alt.NamedData(name="rows")


@functools.cache
def _participation_chart(height: int) -> dict[str, Any]:
    scale = alt.Scale(domain=list(KIND_COLORS), range=list(KIND_COLORS.values()))
    return (
        alt.Chart(_rows())
        .mark_bar()
        .encode(
            x=alt.X(
                "entry:Q", title=f"entry rate, last {RECENT} rounds", scale=alt.Scale(domain=[0, 1])
            ),
            y=alt.Y("advertiser:N", title=None, sort=None),
            color=alt.Color("kind:N", title=None, scale=scale, legend=alt.Legend(orient="top")),
            tooltip=["advertiser:N", "kind:N", alt.Tooltip("entry:Q", format=".2f")],
        )
        .properties(width="container", height=height)
        .to_dict()
    )


@functools.cache
def _lines_chart(
    y_title: str, colors: tuple[tuple[str, str], ...], domain: tuple[float, float] | None
) -> dict[str, Any]:
    """Per-round values (thin) and their moving average over SMOOTH rounds (thick)."""
    y = alt.Scale(domain=list(domain)) if domain else alt.Scale(zero=False)
    palette = alt.Scale(domain=[name for name, _ in colors], range=[color for _, color in colors])
    base = alt.Chart(_rows()).encode(
        x=alt.X("round:Q", title="round", axis=alt.Axis(format="d")),
        color=alt.Color("series:N", title=None, scale=palette, legend=alt.Legend(orient="right")),
    )
    raw = base.mark_line(opacity=0.3, strokeWidth=1).encode(
        y=alt.Y("value:Q", title=y_title, scale=y)
    )
    smooth = (
        base.transform_window(
            mean="mean(value)",
            frame=[-(SMOOTH - 1), 0],
            groupby=["series"],
            sort=[{"field": "round"}],
        )
        .mark_line(strokeWidth=2.5)
        .encode(y=alt.Y("mean:Q", title=y_title, scale=y))
    )
    return alt.layer(raw, smooth).properties(width="container", height=70).to_dict()


def _chart(spec: dict[str, Any], header: Sequence[str], rows: Iterable[Sequence[Any]]):
    """A Vega-Lite widget of ``spec`` over ``rows``, inlined as CSV text: one string, which
    Solara's renderer passes on as it is (a list of row objects it would walk value by value)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    numbers = {name: "number" for name in header if name in ("round", "value", "entry")}
    data = {"values": text.getvalue(), "format": {"type": "csv", "parse": numbers}}
    return solara.widgets.VegaLite.element(
        spec={**spec, "data": data, "usermeta": {"embedOptions": {"actions": False}}}
    )


def _long(rounds: Sequence[int], series: dict[str, Sequence[float]]) -> list[tuple]:
    """Long-format rows (round, series, value) of the last WINDOW rounds, NaN left out."""
    start = max(0, len(rounds) - WINDOW)
    return [
        (rounds[k], name, values[k])
        for name, values in series.items()
        for k in range(start, len(rounds))
        if not math.isnan(values[k])
    ]


# --- panels ----------------------------------------------------------------------------------


def _ReplyPanel(model: LiveMarket):
    """The latest returned reply, brand mentions marked, and what each entrant got and paid."""
    outcome = model.outcome
    if outcome is None:
        return solara.HTML(
            tag="div",
            classes=["am-panel"],
            unsafe_innerHTML=f'<h3>Round –</h3><p class="am-settings">{html.escape(_settings(model))}</p>'
            "<p>Press <b>Step</b> or ▶ to run the market.</p>",
        )
    entrants = [a for a in model.advertisers if a.name in model.entrant_index]
    rows = model.columns  # the round's advertisers rows
    reward_without = dict(zip(rows["advertiser"], rows["expected_reward_without"], strict=True))
    columns = {
        "entrant": [a.name for a in entrants],
        "relevant": ["yes" if a.last.relevant else "no" for a in entrants],
        "E[reward]": [a.last.expected_reward for a in entrants],
        "payment": [a.last.payment for a in entrants],
        "utility": [a.last.utility for a in entrants],
        "gain": [a.last.utility - reward_without[a.name] for a in entrants],
        "mentioned": ["yes" if a.last.mentioned else "" for a in entrants],
    }
    if outcome.mechanism == "mosaic":
        allocation = (
            f"candidate {outcome.returned + 1} of M = {len(outcome.candidates)} returned, "
            f"its allocation {outcome.allocation[outcome.returned]:.3f}; ESS {outcome.ess:.1f}"
        )
    else:
        allocation = f"token auction, {outcome.reply_tokens} tokens"
    return solara.HTML(
        tag="div",
        classes=["am-panel"],
        unsafe_innerHTML=(
            f'<h3 class="am-round">Round {model.round - 1}</h3>'
            + (
                ""
                if model.running
                else f'<p class="am-stop">Stopped after {model.round} rounds: press Reset.</p>'
            )
            + f'<p class="am-settings">{html.escape(_settings(model))}</p>'
            f'<p class="am-query"><b>Query</b> ({html.escape(model.query.topic)}): '
            f"{html.escape(model.query.text)}</p>"
            f'<blockquote class="am-reply">'
            f"{highlight(outcome.reply.text, [a.name for a in model.advertisers])}</blockquote>"
            f'<p class="am-settings">{html.escape(allocation)}; revenue {outcome.revenue:.3f}, '
            f"welfare {outcome.welfare:.3f}</p>"
            + (table(columns) if entrants else "<p>No advertiser entered this round.</p>")
        ),
    )


def _ParticipationPanel(model: LiveMarket):
    """Each advertiser's entry rate over the last RECENT rounds, relevant ones in blue."""
    mix = {q.topic for q in model.scenario.queries}
    rows = [
        (
            a.name,
            "relevant" if mix & set(a.topics) else "irrelevant",
            _entry_rate(a.history[-RECENT:]),
        )
        for a in model.advertisers
    ]
    with solara.Column(classes=["am-panel"], gap="0px") as panel:
        solara.HTML(
            tag="div",
            unsafe_innerHTML='<h3>Participation per advertiser</h3><p class="am-caption">'
            "relevant: one of her topics is a topic of the scenario's queries</p>",
        )
        _chart(_participation_chart(max(60, 14 * len(rows))), ("advertiser", "kind", "entry"), rows)
    return panel


def _entry_rate(records: Sequence[Any]) -> float:
    return sum(r.entered for r in records) / len(records) if records else 0.0


def _RoundsPanel(model: LiveMarket):
    """Revenue and welfare per round; relevant vs irrelevant entry per round."""
    data = model.datacollector.model_vars
    entry = model.entry.model_vars
    header = ("round", "series", "value")
    with solara.Column(classes=["am-panel"], gap="0px") as panel:
        solara.HTML(
            tag="div",
            unsafe_innerHTML='<h3>Per round</h3><p class="am-caption">revenue = Σ payments, '
            "welfare = Σ entrants' reward for the returned reply; thin: each round, thick: "
            f"mean of the last {SMOOTH}</p>",
        )
        _chart(
            _lines_chart("per round", tuple(MONEY_COLORS.items()), None),
            header,
            _long(data["round"], {"revenue": data["revenue"], "welfare": data["welfare"]}),
        )
        solara.HTML(
            tag="p",
            classes=["am-caption"],
            unsafe_innerHTML="share of the advertisers relevant / irrelevant to the query entering",
        )
        _chart(
            _lines_chart("share entering", tuple(KIND_COLORS.items()), (0.0, 1.0)),
            header,
            _long(
                entry["round"],
                {"relevant": entry["relevant_entry"], "irrelevant": entry["irrelevant_entry"]},
            ),
        )
    return panel


def _UtilityPanel(model: LiveMarket):
    """Each advertiser's cumulative utility, utility gain from participation, and payments."""
    mix = {q.topic for q in model.scenario.queries}
    rounds = max(1, model.round)
    people = model.advertisers  # the scenario's order: rows stay put while the market runs
    columns = {
        "advertiser": [a.name for a in people],
        "relevant": ["yes" if mix & set(a.topics) else "no" for a in people],
        "entered": [f"{n / rounds:.0%}" for n in model.entries],
        "Σ utility": [float(u) for u in model.utility],
        "Σ gain": [float(g) if model.has_gain else math.nan for g in model.gain],
        "Σ payment": [float(p) for p in model.payment],
    }
    return solara.HTML(
        tag="div",
        classes=["am-panel"],
        unsafe_innerHTML=(
            "<h3>Advertisers, cumulative</h3>"
            '<p class="am-caption">utility = expected reward − payment; gain = utility − '
            "expected reward under the allocation without her (eq. 15); sums over the rounds "
            "she entered</p>" + table(columns)
        ),
    )


def _settings(model: LiveMarket) -> str:
    knobs = model.knobs
    mosaic = model.scenario.mechanism.type == "mosaic"
    parts = [model.scenario.name, knobs.mechanism]
    if mosaic:
        parts += [
            f"offset {'on' if knobs.offset else 'off'}",
            f"τ {knobs.tau:g}",
            f"M {knobs.candidates}",
        ]
    parts += [
        f"{knobs.relevant} relevant + {knobs.irrelevant} irrelevant advertisers",
        f"entry cost {knobs.entry_cost:g}"
        if model.has_entry_cost
        else "policies without entry cost",
        f"engine {model.scenario.engine.type}",
        f"seed {model.root_seed}",
    ]
    return " · ".join(parts)


def _locked(panel: Callable[[LiveMarket], Any]) -> Callable[[LiveMarket], Any]:
    """The panel, reading the market under its lock (never half a round)."""

    @functools.wraps(panel)
    def read(model: LiveMarket):
        with model.lock:
            return panel(model)

    read.__name__ = panel.__name__.lstrip("_")
    return read


ReplyPanel = _locked(_ReplyPanel)
ParticipationPanel = _locked(_ParticipationPanel)
RoundsPanel = _locked(_RoundsPanel)
UtilityPanel = _locked(_UtilityPanel)
PANELS = (ReplyPanel, ParticipationPanel, RoundsPanel, UtilityPanel)
