"""The market the dashboard shows: a `MarketModel` built from the knobs, with running totals.

`LiveMarket` is the CLI's `MarketModel` (same constructor, same `step`), built from the scenario
that `controls.scenario_for` makes of the knobs; SolaraViz rebuilds it on Reset by calling the
class with the knobs as keyword arguments. After each round it reads what the round produced
through the model's public reporters (``model.columns``, by `market.model.ADVERTISER_REPORTERS`)
and keeps, per advertiser, the running totals the panels show, and collects the relevant /
irrelevant entry rates per round with its own named reporters (`LiveMarket.entry`, a Mesa DataCollector).

The utility gain of an entrant is her utility minus her expected reward under the allocation
computed without her, on the same candidates (eq. 15; the paper's Figs. 4–7 plot this gain,
App. C.4). With the offset it is ≥ 0 (Jensen; DESIGN.md, "Utility gain, not utility").
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import mesa
import numpy as np

from market.engines.base import Engine
from market.engines.pool import EnginePool
from market.model import MarketModel
from scenarios.schema import Scenario

from .controls import Knobs, scenario_for, takes_cost

# The model keeps every round's rows (about 26 KiB a round for free_riding, M = 16): a live market
# stops here (SolaraViz stops playing when `running` is False); long runs belong in `admarket run`.
MAX_ROUNDS = 10_000


@dataclass
class Engines:
    """One engine per engine spec, shared by every browser session and every Reset.

    The synthetic engine's world knowledge is the scenario's catalog (brands -> topics), which the
    advertiser counts change, so it is kept per catalog; real LLMs ignore the catalog and load once.
    """

    cache: bool = True
    _pool: EnginePool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, scenario: Scenario) -> Engine:
        with self._lock:
            if self._pool is None:
                self._pool = EnginePool(cache=self.cache)
            return self._pool.get(scenario.engine, catalog=scenario.catalog())


def relevant_entry(model: LiveMarket) -> float:
    """Share of the advertisers relevant to this round's query who entered (NaN: none relevant)."""
    return _entry_share(model, relevant=True)


def irrelevant_entry(model: LiveMarket) -> float:
    """Share of the advertisers irrelevant to this round's query who entered (NaN: none)."""
    return _entry_share(model, relevant=False)


def _entry_share(model: LiveMarket, *, relevant: bool) -> float:
    group = [a.last.entered for a in model.advertisers if a.last.relevant == relevant]
    return float(np.mean(group)) if group else math.nan


def last_round(model: LiveMarket) -> int:
    """The index of the round that just ended (rounds count from 0, as in the run tables)."""
    return model.round - 1


ENTRY_REPORTERS = {
    "round": last_round,
    "relevant_entry": relevant_entry,
    "irrelevant_entry": irrelevant_entry,
}


class LiveMarket(MarketModel):
    """A `MarketModel` of ``base`` under one knob setting (see `controls.Knobs`)."""

    def __init__(
        self,
        *,
        base: Scenario,
        engines: Engines,
        mechanism: str,
        offset: bool,
        tau: float,
        candidates: int,
        entry_cost: float,
        relevant: int,
        irrelevant: int,
        engine: str,
        seed: int,
    ) -> None:
        self.knobs = Knobs(
            mechanism=mechanism,
            offset=bool(offset),
            tau=float(tau),
            candidates=int(candidates),
            entry_cost=float(entry_cost),
            relevant=int(relevant),
            irrelevant=int(irrelevant),
            engine=engine,
            seed=int(seed),
        )
        scenario = scenario_for(base, self.knobs)
        super().__init__(scenario, engines.get(scenario), variant="dashboard")
        n = len(self.advertisers)
        self.entries = np.zeros(n, dtype=int)  # rounds entered
        self.utility = np.zeros(n)  # Σ utility (expected reward − payment) over entered rounds
        self.gain = np.zeros(n)  # Σ (utility − expected_reward_without) over entered rounds
        self.payment = np.zeros(n)  # Σ payment
        self.entry = mesa.DataCollector(model_reporters=ENTRY_REPORTERS)
        # SolaraViz steps in one thread and may render in another: panels read under this lock
        self.lock = threading.RLock()

    @classmethod
    def from_knobs(cls, base: Scenario, engines: Engines, knobs: Knobs) -> LiveMarket:
        return cls(base=base, engines=engines, **knobs.__dict__)

    def step(self) -> None:
        """One market round (`MarketModel.step`), then the panels' running totals."""
        with self.lock:
            super().step()
            self._tally()
            self.running = self.round < MAX_ROUNDS

    def _tally(self) -> None:
        columns = self.columns  # the round's advertisers rows (`ADVERTISER_REPORTERS`)
        entered = np.array(columns["entered"], dtype=bool)
        utility = np.array(columns["utility"])
        without = np.array(columns["expected_reward_without"])
        self.entries += entered
        self.utility[entered] += utility[entered]
        self.payment[entered] += np.array(columns["payment"])[entered]
        counted = entered & ~np.isnan(without)  # NaN under the token auction
        self.gain[counted] += utility[counted] - without[counted]
        self.entry.collect(self)

    @property
    def has_gain(self) -> bool:
        """Whether the mechanism defines the reward without an entrant (MOSAIC does)."""
        return self.scenario.mechanism.type == "mosaic"

    @property
    def has_entry_cost(self) -> bool:
        """Whether some advertiser's entry policy takes an entry cost (the knob's reach)."""
        return any(takes_cost(spec.policy.model_dump()) for spec in self.scenario.advertisers)
