"""Advertiser side of the market: histories, entry policies and report strategies.

Kept light (numpy only) so that ``scenarios`` can validate policies and strategies without
importing mesa.
"""

from agents.policies import (
    POLICIES,
    TARGETING,
    EntryPolicy,
    EntryRule,
    TopicTargeting,
    build_policy,
    register_policy,
)
from agents.records import RoundRecord
from agents.strategies import STRATEGIES, ReportStrategy, build_strategy, register_strategy

__all__ = [
    "POLICIES",
    "STRATEGIES",
    "TARGETING",
    "EntryPolicy",
    "EntryRule",
    "ReportStrategy",
    "RoundRecord",
    "TopicTargeting",
    "build_policy",
    "build_strategy",
    "register_policy",
    "register_strategy",
]
