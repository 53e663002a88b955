"""Entry policies: each round, an advertiser decides to enter the auction or stay out.

One concept a module: ``base`` (the question, the base class, the registry), ``rules`` (always,
never, threshold), ``bandits`` (epsilon-greedy, UCB, logit), ``imitation``, ``targeting`` (one
policy per query topic) and ``build`` (specs to policies). New policies plug in with
``@register_policy("name")`` on an ``EntryPolicy`` subclass, or from a scenario as
``{type: "package.module:ClassName"}`` (docs/policies.md).
"""

from agents.policies.bandits import (
    ArmStats,
    EpsilonGreedyPolicy,
    LogitPolicy,
    TwoArmPolicy,
    UCBPolicy,
)
from agents.policies.base import (
    LEARN_FROM,
    NO_NEIGHBORS,
    POLICIES,
    EntryPolicy,
    EntryRule,
    register_policy,
)
from agents.policies.build import build_policy, check_policy, spec_parts
from agents.policies.imitation import ImitationPolicy
from agents.policies.rules import AlwaysEnter, NeverEnter, ThresholdPolicy
from agents.policies.targeting import TARGETING, TopicTargeting, check_targeting

__all__ = [
    "LEARN_FROM",
    "NO_NEIGHBORS",
    "POLICIES",
    "TARGETING",
    "AlwaysEnter",
    "ArmStats",
    "EntryPolicy",
    "EntryRule",
    "EpsilonGreedyPolicy",
    "ImitationPolicy",
    "LogitPolicy",
    "NeverEnter",
    "ThresholdPolicy",
    "TopicTargeting",
    "TwoArmPolicy",
    "UCBPolicy",
    "build_policy",
    "check_policy",
    "check_targeting",
    "register_policy",
    "spec_parts",
]
