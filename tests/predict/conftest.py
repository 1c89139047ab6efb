"""Fixtures of the prediction tests: one intra-op thread (the trained runs ``trained_lgg`` and
``trained_pcam`` are the session fixtures of ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from tests.support import one_thread as _one_thread


@pytest.fixture(autouse=True)
def one_thread():
    """Every prediction of these tests on one thread (see :func:`tests.support.one_thread`)."""
    with _one_thread():
        yield
