"""Entry policies: behaviour on toy histories, bandit convergence, registry errors, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.policies import (
    POLICIES,
    EntryPolicy,
    ImitationPolicy,
    build_policy,
    register_policy,
)
from agents.records import RoundRecord


def entered(round_: int, utility: float, realized: float | None = None) -> RoundRecord:
    return RoundRecord(
        round=round_,
        entered=True,
        relevant=True,
        utility=utility,
        realized_utility=utility if realized is None else realized,
    )


def stayed_out(round_: int, outside: float = math.nan) -> RoundRecord:
    return RoundRecord(round=round_, entered=False, relevant=True, outside_reward=outside)


def play(policy: EntryPolicy, payoff_in, payoff_out, rounds: int) -> list[bool]:
    """Run a policy against a stationary toy environment; returns its decisions."""
    history: list[RoundRecord] = []
    decisions = []
    for t in range(rounds):
        enter = policy.decide(history)
        decisions.append(enter)
        history.append(entered(t, payoff_in()) if enter else stayed_out(t, payoff_out()))
    return decisions


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_registry_has_every_documented_policy():
    assert {"always", "never", "threshold", "epsilon_greedy", "ucb", "logit", "imitation"} <= set(
        POLICIES
    )


def test_always_and_never():
    history = [entered(0, -5.0), stayed_out(1)]
    assert build_policy({"type": "always"}, rng()).decide(history) is True
    assert build_policy({"type": "never"}, rng()).decide(history) is False
    assert build_policy({"type": "always"}, rng()).decide([]) is True


def test_threshold_stops_entering_after_repeated_negative_payoff():
    policy = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.0, "window": 3}}, rng())
    history: list[RoundRecord] = []
    assert policy.decide(history) is True  # enters before it knows anything
    for t in range(3):
        history.append(entered(t, -1.0))
    assert policy.decide(history) is False
    for t in range(3, 20):
        history.append(stayed_out(t))
        assert policy.decide(history) is False


def test_threshold_keeps_entering_while_average_covers_cost():
    policy = build_policy({"type": "threshold", "kwargs": {"cost": 0.5, "epsilon": 0.0}}, rng())
    history = [entered(0, 1.0), entered(1, 0.2)]  # mean 0.6 >= 0.5
    assert policy.decide(history) is True
    history.append(entered(2, -0.5))  # mean 0.233 < 0.5
    assert policy.decide(history) is False


def test_threshold_window_forgets_old_rounds_and_ema_weights_recent():
    window = build_policy({"type": "threshold", "kwargs": {"window": 2, "epsilon": 0.0}}, rng())
    history = [entered(0, -10.0), entered(1, 1.0), entered(2, 1.0)]
    assert window.decide(history) is True  # only the last 2 count
    ema = build_policy(
        {"type": "threshold", "kwargs": {"average": "ema", "alpha": 0.5, "epsilon": 0.0}}, rng()
    )
    assert ema.decide([entered(0, 1.0), entered(1, -4.0)]) is False  # 1 + 0.5·(−4 − 1) = −1.5
    assert ema.estimate == pytest.approx(-1.5)


def test_threshold_reexplores_with_probability_epsilon():
    policy = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.3}}, rng(1))
    history = [entered(0, -1.0)]
    decisions = []
    for t in range(1, 2001):
        decisions.append(policy.decide(history))
        history.append(stayed_out(t))
    assert np.mean(decisions) == pytest.approx(0.3, abs=0.04)


def test_threshold_learns_from_realized_utility_when_asked():
    history = [entered(0, utility=1.0, realized=-3.0)]
    expected = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.0}}, rng())
    realized = build_policy(
        {"type": "threshold", "kwargs": {"epsilon": 0.0, "learn_from": "realized"}}, rng()
    )
    assert expected.decide(history) is True
    assert realized.decide(history) is False


def test_threshold_compares_with_the_outside_option_when_there_is_one():
    """Entering pays +0.5 a round, staying out +1.0 (observed outside option): it stays out."""
    policy = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.0}}, rng())
    history = [entered(0, 0.5), stayed_out(1, outside=1.0)]
    assert policy.decide(history) is False
    assert policy.outside_estimate == 1.0
    history.append(stayed_out(2, outside=-2.0))  # staying out now averages −0.5 < 0.5
    assert policy.decide(history) is True
    with_cost = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.0, "cost": 0.4}}, rng())
    assert with_cost.decide([entered(0, 0.5), stayed_out(1, outside=0.2)]) is False  # 0.5 < 0.6


def test_threshold_without_an_outside_option_compares_with_the_cost_alone():
    policy = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.0, "cost": 0.4}}, rng())
    assert policy.decide([entered(0, 0.5), stayed_out(1)]) is True  # NaN: nothing observed
    assert policy.outside_estimate is None


def test_threshold_stays_out_once_it_has_seen_a_better_outside_option():
    """Entering pays 0.3 on average, noisily; once a bad stretch sends it out, it observes that
    staying out pays 1.0 and keeps out but for its epsilon re-entries (compared with the cost
    alone, the in-auction average of 0.3 would bring it back)."""
    env = rng(13)
    policy = build_policy({"type": "threshold", "kwargs": {"epsilon": 0.1}}, rng(6))
    decisions = play(policy, lambda: 0.3 + env.normal(0, 1.0), lambda: 1.0, 400)
    assert not all(decisions[:200])
    assert np.mean(decisions[-200:]) < 0.2


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "epsilon_greedy", "kwargs": {"epsilon": 0.1}},
        {"type": "ucb", "kwargs": {"c": 1.0}},
        {"type": "logit", "kwargs": {"temperature": 0.2}},
    ],
    ids=["epsilon_greedy", "ucb", "logit"],
)
@pytest.mark.parametrize("mean_in, better", [(0.5, True), (-0.5, False)])
def test_bandits_converge_to_the_better_arm(spec, mean_in, better):
    env = rng(7)
    policy = build_policy(spec, rng(3))
    decisions = play(policy, lambda: mean_in + env.normal(0, 0.3), lambda: math.nan, 600)
    late = np.mean(decisions[-200:])
    assert late > 0.8 if better else late < 0.2


def test_bandits_use_the_outside_option_as_the_out_arm():
    env = rng(11)
    policy = build_policy({"type": "ucb"}, rng())
    # entering pays +0.3 but staying out observes a better outside reward of +1.0
    decisions = play(policy, lambda: 0.3 + env.normal(0, 0.2), lambda: 1.0, 400)
    assert np.mean(decisions[-100:]) < 0.2


def test_entry_cost_is_subtracted_from_the_in_arm():
    env = rng(5)
    policy = build_policy({"type": "epsilon_greedy", "kwargs": {"cost": 1.0}}, rng(2))
    decisions = play(policy, lambda: 0.5 + env.normal(0, 0.5), lambda: math.nan, 400)
    assert np.mean(decisions[-100:]) < 0.2


def test_ucb_handles_large_negative_payoffs():
    policy = build_policy({"type": "ucb"}, rng())
    history = [entered(0, -1e6), stayed_out(1)]
    for t in range(2, 50):
        decision = policy.decide(history)
        history.append(entered(t, -1e6) if decision else stayed_out(t))
    assert sum(r.entered for r in history[10:]) <= 3


def test_logit_probability_follows_the_sigmoid():
    policy = build_policy({"type": "logit", "kwargs": {"temperature": 2.0, "cost": 0.5}}, rng())
    policy.decide([entered(0, 1.5), stayed_out(1, outside=0.0)])
    assert policy.enter_probability == pytest.approx(1 / (1 + math.exp(-(1.5 - 0.0 - 0.5) / 2)))


def test_logit_never_overflows():
    policy = build_policy({"type": "logit", "kwargs": {"temperature": 1e-3}}, rng())
    assert policy.decide([entered(0, -1e9)]) is False
    assert 0.0 <= policy.enter_probability <= 1.0


def test_imitation_copies_the_best_neighbor():
    policy = build_policy({"type": "imitation", "kwargs": {"epsilon": 0.0}}, rng())
    own = [entered(0, -1.0), entered(1, -1.0)]
    neighbors = {
        "Quiet": [stayed_out(0), stayed_out(1)],  # mean 0: the best
        "Loser": [entered(0, -3.0), entered(1, -2.0)],
    }
    assert policy.best_neighbor(own, neighbors) == "Quiet"
    assert policy.decide(own, neighbors) is False
    neighbors["Winner"] = [stayed_out(0), entered(1, 4.0)]
    assert policy.decide(own, neighbors) is True


def test_imitation_keeps_its_own_choice_when_it_does_best():
    policy = ImitationPolicy(rng(), epsilon=0.0)
    own = [stayed_out(0), stayed_out(1, outside=2.0)]
    neighbors = {"Other": [entered(0, 1.0), entered(1, 1.0)]}
    assert policy.decide(own, neighbors) is False
    assert ImitationPolicy(rng(), epsilon=0.0).decide([], {}) is True


def test_policies_are_deterministic_given_their_rng():
    for kind in POLICIES:
        runs = []
        for _ in range(2):
            env = rng(9)
            policy = build_policy({"type": kind}, rng(42))
            runs.append(play(policy, lambda env=env: env.normal(0, 1), lambda: math.nan, 60))
        assert runs[0] == runs[1], kind


def test_every_decision_draws_the_same_amount_of_randomness():
    """Common random numbers: the stream position depends on the round, not on the branch."""
    for kind in ("threshold", "epsilon_greedy", "logit", "imitation"):
        a, b = rng(1), rng(1)
        build_policy({"type": kind}, a).decide([entered(0, 5.0)])
        build_policy({"type": kind}, b).decide([entered(0, -5.0)])
        assert a.random() == b.random(), kind


def test_unknown_type_and_kwargs_are_named():
    with pytest.raises(ValueError, match=r"unknown policy type 'sometimes'.*threshold"):
        build_policy({"type": "sometimes"}, rng())
    with pytest.raises(ValueError, match=r"no kwarg 'windw'.*did you mean 'window'.*epsilon"):
        build_policy({"type": "threshold", "kwargs": {"windw": 3}}, rng())
    with pytest.raises(ValueError, match=r"epsilon must be a probability"):
        build_policy({"type": "epsilon_greedy", "kwargs": {"epsilon": 1.5}}, rng())
    with pytest.raises(ValueError, match=r"learn_from must be one of"):
        build_policy({"type": "always", "kwargs": {"learn_from": "hope"}}, rng())
    with pytest.raises(ValueError, match=r"rng must be a numpy.random.Generator"):
        build_policy({"type": "always"}, 42)


def test_history_must_be_append_only():
    policy = build_policy({"type": "threshold"}, rng())
    policy.decide([entered(0, 1.0), entered(1, 1.0)])
    with pytest.raises(ValueError, match="append-only"):
        policy.decide([entered(0, 1.0)])


def test_new_policies_plug_in_through_the_registry():
    @register_policy("test_alternate")
    class Alternate(EntryPolicy):
        def _decide(self, history, neighbors):
            return len(history) % 2 == 0

    try:
        policy = build_policy({"type": "test_alternate"}, rng())
        assert policy.decide([]) is True
        assert policy.decide([stayed_out(0)]) is False
    finally:
        del POLICIES["test_alternate"]


def test_build_policy_accepts_component_spec_objects():
    class Spec:
        type = "threshold"
        kwargs = {"cost": 0.2}

    assert build_policy(Spec(), rng()).cost == 0.2


# --- topic targeting -----------------------------------------------------------------------------


def play_topics(policy, rounds: int, seed: int = 3) -> tuple[list[str], list[bool]]:
    """A stationary toy with two topics: entering pays ~ +1 in topic A and ~ −1 in topic B;
    staying out pays nothing. Returns each round's topic and decision."""
    env = rng(seed)
    history: list[RoundRecord] = []
    topics, decisions = [], []
    for t in range(rounds):
        topic = "A" if env.random() < 0.5 else "B"
        noise = env.normal(0.0, 0.3)
        enter = policy.decide(history, topic=topic)
        topics.append(topic)
        decisions.append(enter)
        mean = 1.0 if topic == "A" else -1.0
        record = entered(t, mean + noise) if enter else stayed_out(t)
        history.append(RoundRecord(**{**record.__dict__, "topic": topic}))
    return topics, decisions


def entry_rates(topics: list[str], decisions: list[bool]) -> dict[str, float]:
    half = len(topics) // 2
    rates = {}
    for topic in ("A", "B"):
        picks = [d for t, d in zip(topics[half:], decisions[half:], strict=True) if t == topic]
        rates[topic] = sum(picks) / len(picks)
    return rates


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "epsilon_greedy", "kwargs": {"epsilon": 0.1}},
        {"type": "threshold", "kwargs": {"cost": 0.0, "epsilon": 0.05, "window": 10}},
    ],
)
def test_topic_targeting_learns_to_enter_where_it_pays_and_all_cannot(spec):
    targeted = {**spec, "kwargs": {**spec["kwargs"], "targeting": "topic"}}
    rates = entry_rates(*play_topics(build_policy(targeted, rng(7)), 400))
    assert rates["A"] >= 0.9 and rates["B"] <= 0.15, rates
    blind = entry_rates(*play_topics(build_policy(spec, rng(7)), 400))
    assert abs(blind["A"] - blind["B"]) <= 0.2, blind  # the decision never sees the topic
    assert rates["A"] - rates["B"] > abs(blind["A"] - blind["B"]) + 0.5


def test_targeting_all_ignores_the_topic():
    spec = {"type": "epsilon_greedy", "kwargs": {"epsilon": 0.3}}
    explicit = {"type": "epsilon_greedy", "kwargs": {"epsilon": 0.3, "targeting": "all"}}
    env = rng(2)
    plain = play(build_policy(spec, rng(4)), lambda: env.normal(), lambda: 0.0, 50)
    env = rng(2)
    history: list[RoundRecord] = []
    policy = build_policy(explicit, rng(4))
    with_topic = []
    for t in range(50):
        enter = policy.decide(history, topic="A" if t % 3 else "B")
        with_topic.append(enter)
        history.append(entered(t, env.normal()) if enter else stayed_out(t, 0.0))
    assert with_topic == plain


def test_topic_targeting_is_deterministic_and_spawns_streams_by_first_appearance():
    spec = {"type": "logit", "kwargs": {"targeting": "topic"}}
    runs = [play_topics(build_policy(spec, rng(11)), 120) for _ in range(2)]
    assert runs[0] == runs[1]
    assert play_topics(build_policy(spec, rng(12)), 120)[1] != runs[0][1]

    policy = build_policy({"type": "always", "kwargs": {"targeting": "topic"}}, rng(11))
    policy.decide([], topic="B")
    policy.decide([], topic="A")
    expected = rng(11).spawn(2)
    assert list(policy.inner) == ["B", "A"]
    for topic, child in zip(("B", "A"), expected, strict=True):
        assert policy.inner[topic].rng.random() == child.random()


def test_topic_targeting_inner_policies_see_only_their_topic():
    spec = {"type": "imitation", "kwargs": {"epsilon": 0.0, "targeting": "topic"}}
    policy = build_policy(spec, rng())

    def tagged(record: RoundRecord, topic: str) -> RoundRecord:
        return RoundRecord(**{**record.__dict__, "topic": topic})

    own = [tagged(entered(0, -1.0), "A"), tagged(stayed_out(1, 0.0), "B")]
    # the neighbor does better in A by staying out, worse in B where it entered
    rival = [tagged(stayed_out(0, 2.0), "A"), tagged(entered(1, -3.0), "B")]
    assert policy.decide(own, {"Rival": rival}, topic="A") is False  # copies the rival in A
    assert policy.decide(own, {"Rival": rival}, topic="B") is False  # keeps its own choice in B
    inner_a, inner_b = policy.inner["A"], policy.inner["B"]
    assert [r.round for r in policy._own.of("A")] == [0]
    assert [r.round for r in policy._own.of("B")] == [1]
    assert inner_a.best_neighbor(policy._own.of("A"), {"Rival": rival[:1]}) == "Rival"
    assert inner_b.best_neighbor(policy._own.of("B"), {"Rival": rival[1:]}) is None


def test_topic_targeting_needs_the_topic_and_append_only_histories():
    policy = build_policy({"type": "threshold", "kwargs": {"targeting": "topic"}}, rng())
    with pytest.raises(ValueError, match=r"topic must be the current query's topic"):
        policy.decide([])
    history = [RoundRecord(**{**entered(0, 1.0).__dict__, "topic": "A"})]
    policy.decide(history, topic="A")
    with pytest.raises(ValueError, match="append-only"):
        policy.decide([], topic="A")


def test_bad_targeting_is_named_with_the_valid_values():
    with pytest.raises(ValueError, match=r"targeting must be one of 'all', 'topic', got 'keyword'"):
        build_policy({"type": "ucb", "kwargs": {"targeting": "keyword"}}, rng())
    with pytest.raises(ValueError, match=r"no kwarg 'targetting'.*did you mean 'targeting'"):
        build_policy({"type": "ucb", "kwargs": {"targetting": "topic"}}, rng())
    with pytest.raises(ValueError, match=r"policy 'ucb': c must be"):
        build_policy({"type": "ucb", "kwargs": {"c": -1, "targeting": "topic"}}, rng())
