"""Shared settings for the optimizer tests."""

from __future__ import annotations

import pytest

from tests.support import one_thread as _one_thread


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: a second OpenMP thread only adds contention on shared cores
    (10x-50x slower steps when other processes keep the cores busy)."""
    with _one_thread():
        yield
