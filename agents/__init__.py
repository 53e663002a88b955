"""Advertiser side of the market: histories, entry policies and report strategies.

Kept light (numpy only) so that ``scenarios`` can validate policies and strategies without
importing mesa; the Mesa agent lives in ``agents.advertiser``.
"""

from agents.policies import (
    POLICIES,
    TARGETING,
    EntryPolicy,
    EntryRule,
    TopicTargeting,
    build_policy,
    check_policy,
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
    "check_policy",
    "register_policy",
    "register_strategy",
]
