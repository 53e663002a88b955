"""Mechanisms are built from a scenario's ``{type, kwargs}`` block and validate their settings."""

from dataclasses import FrozenInstanceError
from types import SimpleNamespace

import numpy as np
import pytest

from market.mechanisms import (
    MECHANISMS,
    MosaicMechanism,
    TokenAuctionMechanism,
    build_mechanism,
    mosaic_outcome,
    token_step,
)


def test_registry_names_match_the_mechanisms():
    assert MECHANISMS == {"mosaic": MosaicMechanism, "token_auction": TokenAuctionMechanism}
    for name, cls in MECHANISMS.items():
        assert cls.name == name
        assert cls().name == name


def test_build_from_a_mapping_and_from_an_object():
    built = build_mechanism({"type": "mosaic", "kwargs": {"tau": 2.0, "offset": False}})
    assert built == MosaicMechanism(tau=2.0, offset=False, generator="context", candidates=8)
    from_object = build_mechanism(
        SimpleNamespace(type="token_auction", kwargs={"rule": "loglinear", "max_tokens": 16})
    )
    assert from_object == TokenAuctionMechanism(
        rule="loglinear", reference_weight=1.0, max_tokens=16
    )
    assert build_mechanism({"type": "mosaic"}) == MosaicMechanism()
    assert build_mechanism(SimpleNamespace(type="token_auction", kwargs=None)) == (
        TokenAuctionMechanism()
    )


def test_mosaic_mechanism_runs_mosaic_outcome_with_its_settings():
    rewards = np.array([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])
    log_ref, log_gen = np.array([-3.0, -1.0, -2.0]), np.array([-2.0, -2.0, -1.0])
    mechanism = MosaicMechanism(tau=0.5, offset=False, generator="reference", candidates=3)
    got = mechanism.outcome(rewards, log_ref, log_gen)
    expected = mosaic_outcome(rewards, log_ref, log_gen, tau=0.5, offset=False)
    np.testing.assert_array_equal(got.allocation, expected.allocation)
    np.testing.assert_array_equal(got.payments, expected.payments)
    assert got.tau == 0.5 and got.offset is False


def test_token_auction_mechanism_runs_token_step_with_its_settings():
    dists = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    reference = np.array([0.3, 0.4, 0.3])
    bids = np.array([1.0, 2.5])
    mechanism = TokenAuctionMechanism(rule="loglinear", reference_weight=0.5)
    got = mechanism.step(dists, bids, 0.42, reference=reference)
    expected = token_step(
        dists, bids, 0.42, rule="loglinear", reference=reference, reference_weight=0.5
    )
    assert got.token == expected.token
    np.testing.assert_array_equal(got.q, expected.q)
    np.testing.assert_array_equal(got.payments, expected.payments)


def test_mechanisms_are_frozen():
    with pytest.raises(FrozenInstanceError):
        MosaicMechanism().tau = 3.0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        TokenAuctionMechanism().rule = "loglinear"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"tau": float("inf")}, "tau"),
        ({"tau": "1.0"}, "tau"),
        ({"offset": "yes"}, "offset"),
        ({"generator": "oracle"}, "generator"),
        ({"candidates": 0}, "candidates"),
        ({"candidates": 2.5}, "candidates"),
        ({"candidates": True}, "candidates"),
    ],
)
def test_mosaic_settings_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MosaicMechanism(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rule": "median"}, "rule"),
        ({"reference_weight": -0.5}, "reference_weight"),
        ({"reference_weight": float("inf")}, "reference_weight"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 4.0}, "max_tokens"),
    ],
)
def test_token_auction_settings_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TokenAuctionMechanism(**kwargs)


def test_unknown_type_lists_the_known_types():
    with pytest.raises(ValueError, match="unknown mechanism type 'vcg'") as error:
        build_mechanism({"type": "vcg", "kwargs": {}})
    assert "mosaic" in str(error.value) and "token_auction" in str(error.value)


def test_unknown_kwarg_lists_the_known_kwargs():
    with pytest.raises(ValueError, match="temperature") as error:
        build_mechanism({"type": "mosaic", "kwargs": {"temperature": 0.8}})
    for known in ("tau", "offset", "generator", "candidates"):
        assert known in str(error.value)


@pytest.mark.parametrize(
    "spec",
    [
        {"kwargs": {"tau": 1.0}},
        {"type": "mosaic", "kwargs": {}, "extra": 1},
        {"type": "mosaic", "kwargs": [("tau", 1.0)]},
        "mosaic",
    ],
)
def test_malformed_specs_are_clear_errors(spec):
    with pytest.raises(ValueError, match="mechanism"):
        build_mechanism(spec)
