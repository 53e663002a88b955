"""A live dashboard: Mesa's SolaraViz over the market (``admarket dashboard [SCENARIO]``).

- `controls`: the knobs (mechanism, offset, τ, M, entry cost, advertiser counts, engine, seed) and
  the scenario overrides they stand for;
- `live`: `LiveMarket`, the CLI's `MarketModel` built from the knobs, with running totals;
- `panels`: the live panels (reply, participation, revenue and welfare, cumulative utility);
- `app`: the Solara page; `server`: address checks, offline assets, uvicorn;
- `browser`: headless Chromium for the browser test, the screenshot and the display benchmark.

Needs the ``dashboard`` extra (``pip install 'admarket[dashboard]'``); importing this package
imports none of it.
"""
