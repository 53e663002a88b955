"""What an advertiser remembers of one round: the history its entry policy learns from."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundRecord:
    """One round from one advertiser's point of view.

    ``utility`` is the ex-interim expected utility the mechanism reports (expected reward minus
    payment); ``realized_utility`` is the reward of the reply actually returned minus the payment.
    When the advertiser stayed out, payment and both utilities are 0, and ``outside_reward`` holds
    the reward of the reply shown without it (NaN unless the scenario turns the outside option on).
    ``topic`` is the round's query topic (what a topic-targeting policy splits its history by).
    ``expected_reward_without`` is, when she entered, her expected reward under the allocation
    the others' reports give on the same candidates (eq. 15's counterfactual); NaN otherwise.
    """

    round: int
    entered: bool
    relevant: bool
    expected_reward: float = 0.0
    payment: float = 0.0
    utility: float = 0.0
    realized_reward: float = 0.0
    realized_utility: float = 0.0
    outside_reward: float = math.nan
    mentioned: bool = False
    topic: str = ""
    expected_reward_without: float = math.nan

    def payoff(self, learn_from: str) -> float:
        """The number a policy learns from: ``"expected"`` or ``"realized"`` utility, or the
        utility ``"gain"`` from participation.

        Out of the auction the payoff is the outside option's reward when it was observed, else 0.
        The gain (App. C.4, eq. 15) is the expected utility minus ``expected_reward_without``,
        what the same candidates would have paid her had she stayed out — ≥ 0 with the offset
        (Jensen); staying out gains nothing, so its gain is 0. NaN (ignored by the policies) when
        the mechanism records no counterfactual (the token auction).
        """
        if learn_from == "gain":
            return self.utility - self.expected_reward_without if self.entered else 0.0
        if not self.entered:
            return 0.0 if math.isnan(self.outside_reward) else self.outside_reward
        if learn_from == "expected":
            return self.utility
        if learn_from == "realized":
            return self.realized_utility
        raise ValueError(f"learn_from must be 'expected', 'realized' or 'gain', got {learn_from!r}")
