"""Advertiser side of the market: histories, entry policies and report strategies.

Kept light (numpy only) so that ``scenarios`` can validate policies and strategies without
importing mesa.
"""

from agents.policies import POLICIES, EntryPolicy, build_policy, register_policy
from agents.records import RoundRecord
from agents.strategies import STRATEGIES, ReportStrategy, build_strategy, register_strategy

__all__ = [
    "POLICIES",
    "STRATEGIES",
    "EntryPolicy",
    "ReportStrategy",
    "RoundRecord",
    "build_policy",
    "build_strategy",
    "register_policy",
    "register_strategy",
]
