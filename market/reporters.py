"""The market's Mesa DataCollector and its reporters: one small named function per column.

Names, order and types come from the table spec (`market.columns`): ``ROUNDS.named``,
``ADVERTISERS.named`` and ``AUCTIONS.named`` refuse a reporter without a column or a column
without a reporter. Round reporters are Mesa model reporters: each reads the round the model just
ran (``model.outcome``) and gives one value. Advertiser and auction reporters are *column*
reporters: each gives its column for every row of the round at once — every advertiser, in
``model.advertisers`` order, or every candidate — computed with numpy from the outcome, so a
round costs one call per column, not one per advertiser and column. The model computes the
advertiser columns once a round (``model.columns``: the rows it collects and the records it hands
the advertisers) and adds both tables' rows to the collector's Mesa tables with
`RoundCollector.add_table_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import mesa
import numpy as np

from market.columns import ADVERTISERS, AUCTIONS, ROUNDS

if TYPE_CHECKING:
    from market.auction import RoundOutcome
    from market.model import MarketModel


class RoundCollector(mesa.DataCollector):
    """Mesa's DataCollector, with a round's rows of a table added column by column.

    Every reporter here returns a value made for the row it reports (a number, a string, a new
    list), never live model state, so `collect` stores each value as it is: Mesa's own collect
    deep-copies every model reporter's value, in case a reporter hands back something the model
    goes on changing.
    """

    def __init__(self, model_reporters: Mapping[str, Callable], tables: Mapping[str, list]) -> None:
        super().__init__(model_reporters=model_reporters, tables=tables)
        self._columns = [
            (self.model_vars[name], reporter) for name, reporter in model_reporters.items()
        ]

    def collect(self, model: mesa.Model) -> None:
        """One row of every model reporter (the rounds table); this collector has no agent
        reporters (the advertisers' and auctions' rows come through `add_table_rows`)."""
        for values, reporter in self._columns:
            values.append(reporter(model))

    def add_table_rows(self, table_name: str, columns: Mapping[str, Sequence]) -> None:
        """Append rows given as columns — every column of the table, all of one length: the
        columnar counterpart of Mesa's ``add_table_row``, one call per table and round."""
        table = self.tables[table_name]
        if columns.keys() != table.keys():
            raise ValueError(f"table {table_name!r} has columns {list(table)}, got {list(columns)}")
        if len({len(values) for values in columns.values()}) > 1:
            raise ValueError(f"table {table_name!r}: columns of different lengths")
        for name, values in columns.items():
            table[name].extend(values)


def _outcome(model: MarketModel) -> RoundOutcome:
    if model.outcome is None:
        raise RuntimeError("no round has run yet: call step() before collecting")
    return model.outcome


# --- rounds: one row per round ---------------------------------------------------------------


def variant(model: MarketModel) -> str:
    return model.variant


def seed(model: MarketModel) -> int:
    return model.root_seed


def round_index(model: MarketModel) -> int:
    return model.round


def query_text(model: MarketModel) -> str:
    return model.query.text


def query_topic(model: MarketModel) -> str:
    return model.query.topic


def mechanism_name(model: MarketModel) -> str:
    return _outcome(model).mechanism


def generator(model: MarketModel) -> str:
    return _outcome(model).generator


def n_entrants(model: MarketModel) -> int:
    return len(_outcome(model).entrants)


def entrants(model: MarketModel) -> list[str]:
    return list(_outcome(model).entrants)


def n_relevant_entrants(model: MarketModel) -> int:
    relevant = model.relevant_now
    return sum([relevant[name] for name in _outcome(model).entrants])


def n_irrelevant_entrants(model: MarketModel) -> int:
    relevant = model.relevant_now
    return sum([not relevant[name] for name in _outcome(model).entrants])


def n_candidates(model: MarketModel) -> int:
    return len(_outcome(model).candidates)


def revenue(model: MarketModel) -> float:
    return _outcome(model).revenue


def welfare(model: MarketModel) -> float:
    return _outcome(model).welfare


def expected_welfare(model: MarketModel) -> float:
    return _outcome(model).expected_welfare


def usefulness(model: MarketModel) -> float:
    return _outcome(model).usefulness


def reply_logprob_ref(model: MarketModel) -> float:
    return _outcome(model).reply_logprob_ref


def reply_tokens(model: MarketModel) -> int:
    return _outcome(model).reply_tokens


def reply_text(model: MarketModel) -> str:
    return _outcome(model).reply.text


def ess(model: MarketModel) -> float:
    return _outcome(model).ess


def mentioned(model: MarketModel) -> list[str]:
    mentioned_now = model.mentioned_now
    return [name for name in _outcome(model).entrants if name in mentioned_now]


def engine_seconds(model: MarketModel) -> float:
    return _outcome(model).engine_seconds


def round_seconds(model: MarketModel) -> float:
    return model.round_seconds


ROUND_REPORTERS = ROUNDS.named(
    {
        "variant": variant,
        "seed": seed,
        "round": round_index,
        "query": query_text,
        "topic": query_topic,
        "mechanism": mechanism_name,
        "generator": generator,
        "n_entrants": n_entrants,
        "entrants": entrants,
        "n_relevant_entrants": n_relevant_entrants,
        "n_irrelevant_entrants": n_irrelevant_entrants,
        "n_candidates": n_candidates,
        "revenue": revenue,
        "welfare": welfare,
        "expected_welfare": expected_welfare,
        "usefulness": usefulness,
        "reply_logprob_ref": reply_logprob_ref,
        "reply_tokens": reply_tokens,
        "reply_text": reply_text,
        "ess": ess,
        "mentioned": mentioned,
        "engine_seconds": engine_seconds,
        "round_seconds": round_seconds,
    }
)


# --- advertisers: one column per reporter, one row per advertiser and round --------------------


def _each(model: MarketModel, value: object) -> list:
    return [value] * len(model.advertisers)


def _entrants(model: MarketModel, values: np.ndarray, absent: float) -> list[float]:
    """An entrants' array (in entrant order) spread over every advertiser; ``absent`` elsewhere."""
    rows = model.entrant_rows
    if len(rows) == len(model.advertisers):  # everyone entered: entrant order is theirs
        return values.tolist()
    column = np.full(len(model.advertisers), absent)
    column[rows] = values
    return column.tolist()


def agent_variant(model: MarketModel) -> list[str]:
    return _each(model, model.variant)


def agent_seed(model: MarketModel) -> list[int]:
    return _each(model, model.root_seed)


def agent_round(model: MarketModel) -> list[int]:
    return _each(model, model.round)


def advertiser(model: MarketModel) -> list[str]:
    return [a.name for a in model.advertisers]


def value(model: MarketModel) -> list[float]:
    return [a.value for a in model.advertisers]


def policy(model: MarketModel) -> list[str]:
    return [a.policy_type for a in model.advertisers]


def entered(model: MarketModel) -> list[bool]:
    return [a.entering for a in model.advertisers]


def relevant(model: MarketModel) -> list[bool]:
    return [model.relevant_now[a.name] for a in model.advertisers]


def agent_topic(model: MarketModel) -> list[str]:
    return _each(model, model.query.topic)


def payment(model: MarketModel) -> list[float]:
    return _entrants(model, _outcome(model).payments, 0.0)


def expected_reward(model: MarketModel) -> list[float]:
    return _entrants(model, _outcome(model).expected_rewards, 0.0)


def expected_reward_without(model: MarketModel) -> list[float]:
    """softmax(β_{-i}) · r_i (eq. 15) for entrants; NaN for the others."""
    return _entrants(model, _outcome(model).expected_rewards_without, math.nan)


def utility(model: MarketModel) -> list[float]:
    return _entrants(model, _outcome(model).utilities, 0.0)


def realized_reward(model: MarketModel) -> list[float]:
    return _entrants(model, _outcome(model).realized_rewards, 0.0)


def realized_utility(model: MarketModel) -> list[float]:
    outcome = _outcome(model)
    return _entrants(model, outcome.realized_rewards - outcome.payments, 0.0)


def outside_reward(model: MarketModel) -> list[float]:
    """An observer's true reward for the reply shown without her; NaN for everyone else."""
    if not len(model.observer_rows):
        return _each(model, math.nan)
    column = np.full(len(model.advertisers), math.nan)
    column[model.observer_rows] = _outcome(model).outside_rewards
    return column.tolist()


def agent_mentioned(model: MarketModel) -> list[bool]:
    return [a.name in model.mentioned_now for a in model.advertisers]


def offset(model: MarketModel) -> list[float]:
    """C_i (Sec. 5.3) for entrants; NaN for the others."""
    return _entrants(model, _outcome(model).offsets, math.nan)


ADVERTISER_REPORTERS = ADVERTISERS.named(
    {
        "variant": agent_variant,
        "seed": agent_seed,
        "round": agent_round,
        "advertiser": advertiser,
        "value": value,
        "policy": policy,
        "entered": entered,
        "relevant": relevant,
        "topic": agent_topic,
        "payment": payment,
        "expected_reward": expected_reward,
        "expected_reward_without": expected_reward_without,
        "utility": utility,
        "realized_reward": realized_reward,
        "realized_utility": realized_utility,
        "outside_reward": outside_reward,
        "mentioned": agent_mentioned,
        "offset": offset,
    }
)


# --- auctions: one column per reporter, one row per candidate and round -----------------------


def _candidates(model: MarketModel, value: object) -> list:
    return [value] * len(_outcome(model).candidates)


def auction_variant(model: MarketModel) -> list[str]:
    return _candidates(model, model.variant)


def auction_seed(model: MarketModel) -> list[int]:
    return _candidates(model, model.root_seed)


def auction_round(model: MarketModel) -> list[int]:
    return _candidates(model, model.round)


def candidate(model: MarketModel) -> list[int]:
    return list(range(len(_outcome(model).candidates)))


def text(model: MarketModel) -> list[str]:
    return [c.text for c in _outcome(model).candidates]


def n_tokens(model: MarketModel) -> list[int]:
    return [len(c.token_ids) for c in _outcome(model).candidates]


def log_ref(model: MarketModel) -> list[float]:
    return _outcome(model).log_ref.tolist()


def log_gen(model: MarketModel) -> list[float]:
    return _outcome(model).log_gen.tolist()


def allocation(model: MarketModel) -> list[float]:
    return _outcome(model).allocation.tolist()


def returned(model: MarketModel) -> list[bool]:
    outcome = _outcome(model)
    return [j == outcome.returned for j in range(len(outcome.candidates))]


def rewards(model: MarketModel) -> list[np.ndarray]:
    """Every entrant's true reward r_i(x, y_j) for candidate j, in entrant order (one array per
    candidate: a list column, as the run folder reads it back)."""
    return list(np.ascontiguousarray(_outcome(model).rewards.T))


def auction_entrants(model: MarketModel) -> list[list[str]]:
    return _candidates(model, list(_outcome(model).entrants))


AUCTION_REPORTERS = AUCTIONS.named(
    {
        "variant": auction_variant,
        "seed": auction_seed,
        "round": auction_round,
        "candidate": candidate,
        "text": text,
        "n_tokens": n_tokens,
        "log_ref": log_ref,
        "log_gen": log_gen,
        "allocation": allocation,
        "returned": returned,
        "rewards": rewards,
        "entrants": auction_entrants,
    }
)
