"""The decision rule: binarize (>= threshold) and check_threshold, on hand-made values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.metrics import DEFAULT_THRESHOLD, binarize, check_threshold


def test_a_probability_at_the_threshold_is_positive():
    mask = binarize(np.array([[0.49, 0.5], [0.51, 1.0]]), 0.5)
    assert mask.dtype == np.uint8 and mask.tolist() == [[0, 1], [1, 1]]
    assert binarize([0.2, 0.7], 0.7).tolist() == [0, 1]
    assert bool(binarize(0.7, 0.7)) and not bool(binarize(0.69, 0.7))


def test_tensors_give_bool_tensors_with_the_same_rule():
    probs = torch.tensor([0.1, 0.3, 0.30000001, 0.9])
    assert binarize(probs, 0.3).tolist() == [False, True, True, True]
    assert binarize(probs, 0.3).dtype == torch.bool
    assert binarize(probs.numpy(), 0.3).tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("threshold", [1e-6, 0.05, 0.5, 0.95, 1 - 1e-6])
def test_thresholds_inside_zero_one_pass(threshold):
    assert check_threshold(threshold) == threshold


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, 1.5, float("nan"), float("inf"), True, "0.5"])
def test_thresholds_outside_zero_one_are_refused_naming_the_option(threshold):
    with pytest.raises(MedsegError) as err:
        check_threshold(threshold, "--threshold")
    assert str(err.value) == f"--threshold: {threshold} must be between 0 and 1"


def test_the_default_is_one_half_and_valid():
    assert check_threshold(DEFAULT_THRESHOLD) == 0.5
