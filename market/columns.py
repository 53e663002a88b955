"""The run folder's tables and their columns (docs/data.md).

One definition shared by the writer (`market.model`, `market.runner`) and the reader (`reports`).
The model may write more columns than these; it never writes fewer (tests/test_model.py).
"""

KEYS = ("variant", "seed", "round")

ROUND_COLUMNS = (
    *KEYS,
    "query",
    "topic",
    "mechanism",
    "generator",
    "n_entrants",
    "entrants",
    "n_relevant_entrants",
    "n_irrelevant_entrants",
    "n_candidates",
    "revenue",
    "welfare",
    "expected_welfare",
    "usefulness",
    "reply_logprob_ref",
    "reply_tokens",
    "reply_text",
    "ess",
    "mentioned",
    "engine_seconds",
    "round_seconds",
)

ADVERTISER_COLUMNS = (
    *KEYS,
    "advertiser",
    "value",
    "policy",
    "entered",
    "relevant",
    "topic",
    "payment",
    "expected_reward",
    "expected_reward_without",
    "utility",
    "realized_reward",
    "realized_utility",
    "outside_reward",
    "mentioned",
    "offset",
)

AUCTION_COLUMNS = (
    *KEYS,
    "candidate",
    "text",
    "n_tokens",
    "log_ref",
    "log_gen",
    "allocation",
    "returned",
    "rewards",
    "entrants",
)

TABLE_COLUMNS = {
    "rounds": ROUND_COLUMNS,
    "advertisers": ADVERTISER_COLUMNS,
    "auctions": AUCTION_COLUMNS,
}
