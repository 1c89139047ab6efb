"""benchmarks/bf16_masks.py: the agreement figures of two probability stacks, by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bf16_masks.py"
spec = importlib.util.spec_from_file_location("bf16_masks", SCRIPT)
assert spec is not None and spec.loader is not None
bf16_masks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bf16_masks)


def test_agreement_by_hand():
    fp32 = np.array([[[0.9, 0.2], [0.6, 0.1]], [[0.0, 0.0], [0.0, 0.0]]], dtype=np.float32)
    bf16 = np.array([[[0.9, 0.2], [0.4, 0.1]], [[0.0, 0.0], [0.0, 0.55]]], dtype=np.float32)
    # masks: fp32 {s0 (0,0), s0 (1,0)}, bf16 {s0 (0,0), s1 (1,1)}: tp 1, fp 1, fn 1
    row = bf16_masks.agreement(fp32, bf16, 0.5)
    assert row["dice"] == pytest.approx(0.5)
    assert row["pixels_differ"] == pytest.approx(2 / 8)
    assert row["max_abs_dp"] == pytest.approx(0.55)
    assert row["slices_flipped"] == 1  # slice 1: empty in fp32, not in bf16


def test_identical_empty_stacks_agree_fully():
    zeros = np.zeros((3, 4, 4), dtype=np.float32)
    assert bf16_masks.agreement(zeros, zeros.copy(), 0.5) == {
        "dice": 1.0, "pixels_differ": 0.0, "max_abs_dp": 0.0, "slices_flipped": 0}
