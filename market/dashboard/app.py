"""The Solara page: Mesa's SolaraViz over a `LiveMarket`, its knobs and the live panels.

``configure(scenario)`` fixes the scenario the page starts from (``market.dashboard.server`` calls
it before serving); each browser session gets its own market, built from the scenario's default
knobs. SolaraViz supplies Step, ▶ (play/pause) and Reset, and rebuilds the market from the knobs
on Reset. Run it with ``admarket dashboard``, or ``solara run market.dashboard.app`` (the
``free_riding`` scenario).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import solara

with warnings.catch_warnings():  # Solara's hook check flags a line of Mesa's own SolaraViz
    warnings.filterwarnings("ignore", message=".*found despite early return", category=UserWarning)
    from mesa.visualization import SolaraViz

from scenarios.loader import load_scenario
from scenarios.schema import Scenario

from .controls import Knobs, defaults, model_params
from .live import Engines, LiveMarket
from .panels import PANELS
from .server import DEFAULT_SCENARIO

# While playing, SolaraViz runs RENDER_INTERVAL rounds, renders, sleeps PLAY_INTERVAL_MS. The sleep
# must outlast a render pass started by a click (▶/❚❚ re-render the page from another thread), or
# Solara's renderer gives up on a state that changes during every pass.
PLAY_INTERVAL_MS = 50
RENDER_INTERVAL = 5  # odd: SolaraViz's slider has min 1 and step 2, so it snaps 4 to 5

CSS = """
.am-panel { padding: 4px 12px; width: 100%; }
.am-panel h3 { margin: 4px 0 6px 0; font-size: 1.05rem; }
.am-settings, .am-caption { color: #555; font-size: 0.8rem; margin: 0 0 6px 0; }
.am-query { margin: 0 0 4px 0; }
.am-stop { color: #b00020; font-weight: 600; margin: 0 0 4px 0; }
.am-reply { border-left: 4px solid #1f77b4; background: #f6f8fa; margin: 4px 0 8px 0;
            padding: 6px 10px; white-space: pre-wrap; max-height: 9em; overflow-y: auto; }
.am-reply mark { background: #ffe066; padding: 0 2px; border-radius: 2px; }
.am-table { border-collapse: collapse; font-size: 0.8rem; width: 100%; }
.am-table th, .am-table td { padding: 1px 6px; text-align: right; white-space: nowrap; }
.am-table th:first-child, .am-table td:first-child { text-align: left; }
.am-table tr:nth-child(even) { background: #f3f3f3; }
.vue-grid-item { overflow-y: auto; overflow-x: hidden; }
"""


@dataclass(frozen=True)
class Setup:
    """What every session starts from: the scenario, its default knobs, the shared engines."""

    base: Scenario
    start: Knobs
    engines: Engines

    def market(self, knobs: Knobs | None = None) -> LiveMarket:
        return LiveMarket.from_knobs(self.base, self.engines, knobs or self.start)

    def reactive_market(self) -> solara.Reactive[LiveMarket]:
        """A session's market, as the reactive value SolaraViz replaces on Reset; the market it
        replaces is closed (`MarketModel.close`), or Mesa would keep every one alive."""
        market = solara.reactive(self.market())
        market.subscribe_change(lambda new, old: old.close() if old is not new else None)
        return market


_setup: Setup | None = None


def configure(base: Scenario, engines: Engines | None = None) -> Setup:
    """Serve ``base``: build its default market once, so that bad settings fail here."""
    global _setup
    setup = Setup(base, defaults(base), engines or Engines())
    setup.market()
    _setup = setup
    return setup


def current() -> Setup:
    return _setup if _setup is not None else configure(load_scenario(DEFAULT_SCENARIO))


@solara.component
def Page():
    setup = current()
    market = solara.use_memo(setup.reactive_market, [])
    solara.Style(CSS)
    solara.Title(f"admarket · {setup.base.name}")
    SolaraViz(
        market,
        components=[(panel, 0) for panel in PANELS],
        model_params=model_params(
            setup.base, setup.start, {"base": setup.base, "engines": setup.engines}
        ),
        name=f"admarket dashboard · {setup.base.name}",
        play_interval=PLAY_INTERVAL_MS,
        render_interval=RENDER_INTERVAL,
    )
