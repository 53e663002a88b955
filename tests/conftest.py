"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hf_engine():
    """The embedded SmolLM2-135M-Instruct on CPU, loaded once per test session.

    Tests that use it are marked ``slow``. They may read its state but must restore whatever they
    change (e.g. ``max_batch_tokens``). One torch thread: on a CPU shared with other processes,
    two threads waiting on each other made these tests 10-50× slower than one.
    """
    from market.engines import create_engine

    return create_engine({"type": "hf", "kwargs": {"device": "cpu", "threads": 1}})
