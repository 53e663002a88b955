"""The market's Mesa DataCollector reporters: one small named function per column.

Names, order and types come from the table spec (`market.columns`): ``ROUNDS.named`` and
``ADVERTISERS.named`` refuse a reporter without a column or a column without a reporter. Model
reporters read the round the model just ran (``model.outcome``); agent reporters read the record
the model handed each advertiser for that round (``model.round_records[agent]``, the newest entry
of her history) and the entrants' counterfactuals (``model.counterfactuals``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from market.columns import ADVERTISERS, ROUNDS

if TYPE_CHECKING:
    from agents.advertiser import AdvertiserAgent
    from market.auction import RoundOutcome
    from market.model import MarketModel


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
    return sum(model.relevant_now[name] for name in _outcome(model).entrants)


def n_irrelevant_entrants(model: MarketModel) -> int:
    return n_entrants(model) - n_relevant_entrants(model)


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
    return [name for name in _outcome(model).entrants if name in model.mentioned_now]


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


# --- advertisers: one row per advertiser and round -------------------------------------------


_ABSENT = (math.nan, math.nan)  # no counterfactual and no offset for an advertiser who is out


def agent_variant(agent: AdvertiserAgent) -> str:
    return agent.model.variant


def agent_seed(agent: AdvertiserAgent) -> int:
    return agent.model.root_seed


def agent_round(agent: AdvertiserAgent) -> int:
    return agent.model.round_records[agent].round


def advertiser(agent: AdvertiserAgent) -> str:
    return agent.name


def value(agent: AdvertiserAgent) -> float:
    return agent.value


def policy(agent: AdvertiserAgent) -> str:
    return agent.policy_type


def entered(agent: AdvertiserAgent) -> bool:
    return agent.model.round_records[agent].entered


def relevant(agent: AdvertiserAgent) -> bool:
    return agent.model.round_records[agent].relevant


def agent_topic(agent: AdvertiserAgent) -> str:
    return agent.model.round_records[agent].topic


def payment(agent: AdvertiserAgent) -> float:
    return agent.model.round_records[agent].payment


def expected_reward(agent: AdvertiserAgent) -> float:
    return agent.model.round_records[agent].expected_reward


def expected_reward_without(agent: AdvertiserAgent) -> float:
    return agent.model.counterfactuals.get(agent.name, _ABSENT)[0]


def utility(agent: AdvertiserAgent) -> float:
    return agent.model.round_records[agent].utility


def realized_reward(agent: AdvertiserAgent) -> float:
    return agent.model.round_records[agent].realized_reward


def realized_utility(agent: AdvertiserAgent) -> float:
    return agent.model.round_records[agent].realized_utility


def outside_reward(agent: AdvertiserAgent) -> float:
    return agent.model.round_records[agent].outside_reward


def agent_mentioned(agent: AdvertiserAgent) -> bool:
    return agent.model.round_records[agent].mentioned


def offset(agent: AdvertiserAgent) -> float:
    return agent.model.counterfactuals.get(agent.name, _ABSENT)[1]


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
