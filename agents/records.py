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

    def payoff(self, learn_from: str) -> float:
        """The number a policy learns from: ``"expected"`` or ``"realized"`` utility.

        Out of the auction the payoff is the outside option's reward when it was observed, else 0.
        """
        if not self.entered:
            return 0.0 if math.isnan(self.outside_reward) else self.outside_reward
        if learn_from == "expected":
            return self.utility
        if learn_from == "realized":
            return self.realized_utility
        raise ValueError(f"learn_from must be 'expected' or 'realized', got {learn_from!r}")
