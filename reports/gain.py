"""Utility gain from participation: the quantity of the paper's Figs. 4–7 and its ex-ante IR claim.

An entrant's *utility* is the ex-interim expected utility E[r] − p (eq. 13; eq. 5 with the offset).
What the paper plots (App. C.4, Figs. 4–7; Remark 2) is her *gain from participation*: that
utility minus the reward she would expect had she stayed out, on the same candidates, eq. (15):

    gain_i = U_i − softmax(β_{-i}) · r_i.

With the offset C_i = −τ·logsumexp(β_{-i}) (Sec. 5.3) and truthful reports the gain is
τ·log E_β[e^{r_i/τ}] − E_β[r_i] (E_β: expectation under softmax(β_{-i})), which is ≥ 0 by Jensen's
inequality and 0 exactly when r_i is constant on the candidates the others' allocation can return.
So with the offset ex-ante IR holds on every fixed candidate set, and "gain ≥ 0" is the IR check
the reports print; a raw utility E[r] − p below 0 says nothing about IR, because staying out is not
worth 0 (App. B.2: the outside option's reward, eq. 15, is usually negative).

The gain is undefined (NaN) for advertisers who stayed out and for the token auction, which has no
counterfactual allocation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["GAIN_COLUMN", "IR_TOLERANCE", "gain_is_non_negative", "utility_gain"]

GAIN_COLUMN = "utility_gain"

# Floating-point slack of the IR check: with the offset the gain is ≥ 0 in exact arithmetic, but a
# constant-reward entrant's computed gain can be −1e-15 · |r| after rounding.
IR_TOLERANCE = 1e-9


def utility_gain(frame: pd.DataFrame) -> pd.Series:
    """Per row of an advertisers table: gain = utility − expected_reward_without (eq. 15).

    Uses the table's ``utility_gain`` column when the run wrote one, otherwise computes it from
    ``utility`` and ``expected_reward_without``; rows of advertisers who stayed out (``entered``
    False, when the frame has that column) are NaN either way.
    """
    if GAIN_COLUMN in frame.columns:
        gain = frame[GAIN_COLUMN].astype(float)
    else:
        gain = frame["utility"].astype(float) - frame["expected_reward_without"].astype(float)
    if "entered" in frame.columns:
        gain = gain.where(frame["entered"].astype(bool))
    return gain.rename(GAIN_COLUMN)


def gain_is_non_negative(gain: pd.Series | np.ndarray) -> np.ndarray:
    """The IR check per entry: gain ≥ −``IR_TOLERANCE`` (NaN gains give False)."""
    values = np.asarray(gain, dtype=float)
    with np.errstate(invalid="ignore"):
        return values >= -IR_TOLERANCE
