"""`admarket bench market --profile`: every part of a round it names is found in the profile."""

from __future__ import annotations

from benchmarks.market import PROFILED, market_scenario, round_shares
from market.engines import create_engine


def test_every_profiled_part_of_a_round_is_found_and_the_parts_do_not_overlap():
    """A part whose functions were renamed would read 0% (the table once showed Mesa's
    collect and the model's old record helpers at 0.0% for sessions); parts that called one
    another would add up to more than the whole."""
    scenario = market_scenario(
        "synthetic", advertisers=6, candidates=4, max_new_tokens=16, rounds=120
    )
    engine = create_engine(scenario.engine, catalog=scenario.catalog(), cache=False)
    shares = round_shares("test", scenario, engine)
    assert shares.keys() == PROFILED.keys()
    missing = [part for part, share in shares.items() if share <= 0]
    assert not missing, f"parts found in no profiled function: {missing}"
    assert sum(shares.values()) < 1.0
