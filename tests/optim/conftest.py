"""Shared settings for the optimizer tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: a second OpenMP thread only adds contention on shared cores
    (10x-50x slower steps when other processes keep the cores busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
