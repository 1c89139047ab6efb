"""ClassificationMeter on six hand-made scores."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from medseg.metrics import ClassificationMeter

PROBS = torch.tensor([0.9, 0.8, 0.4, 0.6, 0.3, 0.1])
LABELS = torch.tensor([1, 1, 1, 0, 0, 0])


def test_scores_by_hand() -> None:
    meter = ClassificationMeter()
    meter.update(PROBS, LABELS)
    result = meter.compute()
    # predicted positive (>= 0.5): 0.9, 0.8, 0.6 -> TP = 2, FN = 1 (0.4), FP = 1 (0.6), TN = 2
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(2 / 3)
    # 9 positive-negative pairs; 0.4 < 0.6 is the only discordant one
    assert result["auc"] == pytest.approx(8 / 9)
    assert (result["n"], result["n_positive"]) == (6, 3)


def test_column_shapes_and_batches_accumulate() -> None:
    meter = ClassificationMeter()
    meter.update(PROBS[:4, None], LABELS[:4, None].float())
    meter.update(PROBS[4:], LABELS[4:])
    assert meter.compute()["auc"] == pytest.approx(8 / 9)


def test_ties_count_half() -> None:
    meter = ClassificationMeter()
    meter.update(torch.tensor([0.5, 0.5, 0.2]), torch.tensor([1, 0, 0]))
    assert meter.compute()["auc"] == pytest.approx((0.5 + 1) / 2)


def test_threshold_moves_the_decisions() -> None:
    meter = ClassificationMeter(threshold=0.85)
    meter.update(PROBS, LABELS)
    result = meter.compute()
    assert (result["sensitivity"], result["specificity"]) == (pytest.approx(1 / 3), 1.0)
    assert result["auc"] == pytest.approx(8 / 9)  # threshold-free


def test_one_class_gives_nan_without_warning() -> None:
    meter = ClassificationMeter()
    meter.update(torch.tensor([0.7, 0.2]), torch.tensor([1, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = meter.compute()
    assert math.isnan(result["auc"]) and math.isnan(result["specificity"])
    assert (result["accuracy"], result["sensitivity"]) == (0.5, 0.5)


def test_bad_input_is_refused() -> None:
    meter = ClassificationMeter()
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        meter.update(torch.tensor([0.5]), torch.tensor([2]))
    with pytest.raises(ValueError, match="got 2 probs and 1 labels"):
        meter.update(torch.tensor([0.5, 0.1]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, 1\)"):
        meter.update(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="no samples"):
        meter.compute()
