"""ClassificationMeter, the ROC curve and the confusion counts on hand-made scores."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.metrics import ClassificationMeter, roc_auc, roc_curve, sample_confusion_counts

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


# ROC curve and confusion counts. Hand-made: five samples, one tie (0.7) between a positive and
# a negative; listed out of order.
ROC_PROBS = [0.4, 0.7, 0.9, 0.2, 0.7]
ROC_LABELS = [0, 0, 1, 1, 1]


def test_roc_curve_by_hand_with_a_tie() -> None:
    fpr, tpr, thresholds = roc_curve(ROC_PROBS, ROC_LABELS)
    # >= 0.9: TP 1; >= 0.7: TP 2, FP 1 (the tie is one step); >= 0.4: FP 2; >= 0.2: TP 3
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert tpr.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 2 / 3, 1.0])
    assert thresholds[0] == math.inf
    assert thresholds[1:].tolist() == pytest.approx([0.9, 0.7, 0.4, 0.2])
    # 6 positive-negative pairs: 0.9 beats both, 0.7 ties one and beats 0.4, 0.2 beats none
    assert np.trapezoid(tpr, fpr) == pytest.approx(3.5 / 6)


def test_roc_points_are_the_confusion_counts_at_each_threshold() -> None:
    fpr, tpr, thresholds = roc_curve(torch.tensor(ROC_PROBS)[:, None], torch.tensor(ROC_LABELS))
    for rate_fp, rate_tp, threshold in zip(fpr[1:], tpr[1:], thresholds[1:], strict=True):
        counts = sample_confusion_counts(ROC_PROBS, ROC_LABELS, float(threshold))
        assert rate_fp == pytest.approx(counts["fp"] / 2)
        assert rate_tp == pytest.approx(counts["tp"] / 3)


def test_confusion_counts_by_hand_at_the_threshold() -> None:
    # a probability equal to the threshold is positive: both 0.7s
    assert sample_confusion_counts(ROC_PROBS, ROC_LABELS, 0.7) == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert sample_confusion_counts(PROBS, LABELS) == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        sample_confusion_counts([0.5], [2])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_random_ties_agree_with_the_meter(threshold: float) -> None:
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 11, 300) / 10  # many ties, some exactly at the threshold
    labels = (rng.random(300) < 0.3 + 0.4 * probs).astype(np.int64)
    meter = ClassificationMeter(threshold)
    meter.update(torch.from_numpy(probs), torch.from_numpy(labels))
    result = meter.compute()
    fpr, tpr, thresholds = roc_curve(probs, labels)
    assert len(thresholds) == len(np.unique(probs)) + 1
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(result["auc"], abs=1e-6)
    counts = sample_confusion_counts(probs, labels, threshold)
    assert sum(counts.values()) == result["n"] == 300
    assert counts["tp"] + counts["fn"] == result["n_positive"]
    assert counts["tp"] / (counts["tp"] + counts["fn"]) == pytest.approx(result["sensitivity"])
    assert counts["tn"] / (counts["tn"] + counts["fp"]) == pytest.approx(result["specificity"])
    assert (counts["tp"] + counts["tn"]) / 300 == pytest.approx(result["accuracy"])


def test_the_auc_is_the_area_under_the_roc_curve_ties_included() -> None:
    # a positive and a negative tie at 0.7, two positives tie at 0.9 (no negative among them)
    probs = [0.9, 0.9, 0.7, 0.7, 0.4, 0.2]
    labels = [1, 1, 1, 0, 0, 0]
    # pairs: the 0.9s beat all 3 negatives (6), the positive 0.7 ties one (0.5) and beats two (2)
    assert roc_auc(probs, labels) == pytest.approx(8.5 / 9)
    fpr, tpr, _ = roc_curve(probs, labels)
    assert fpr.tolist() == pytest.approx([0.0, 0.0, 1 / 3, 2 / 3, 1.0])
    assert tpr.tolist() == pytest.approx([0.0, 2 / 3, 1.0, 1.0, 1.0])
    assert roc_auc(probs, labels) == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-15)
    meter = ClassificationMeter()
    meter.update(torch.tensor(probs), torch.tensor(labels))
    assert meter.compute()["auc"] == roc_auc(probs, labels)
    # every score tied: the curve is the diagonal, area one half
    assert roc_auc([0.3] * 4, [1, 0, 1, 0]) == 0.5


def test_roc_auc_on_random_ties_is_the_area_under_the_curve_the_app_draws() -> None:
    rng = np.random.default_rng(1)
    probs = rng.integers(0, 7, 200) / 6
    labels = (rng.random(200) < 0.2 + 0.6 * probs).astype(np.int64)
    fpr, tpr, _ = roc_curve(probs, labels)
    # the Mann-Whitney count: pairs ranked right, ties counting half
    pos, neg = probs[labels == 1], probs[labels == 0]
    pairs = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    assert roc_auc(probs, labels) == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)
    assert roc_auc(probs, labels) == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 2.0, float("nan")])
def test_a_threshold_outside_zero_one_is_refused(threshold: float) -> None:
    with pytest.raises(MedsegError, match=r"threshold: .* must be between 0 and 1"):
        ClassificationMeter(threshold)


def test_roc_curve_with_one_class_has_nan_rates_for_the_missing_class() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fpr, tpr, _ = roc_curve([0.7, 0.2, 0.7], [1, 1, 1])
        assert np.isnan(fpr).all() and tpr.tolist() == [0.0, 2 / 3, 1.0]
        fpr, tpr, _ = roc_curve([0.7, 0.2], [0, 0])
        assert np.isnan(tpr).all() and fpr.tolist() == [0.0, 0.5, 1.0]
        assert math.isnan(np.trapezoid(tpr, fpr)) and math.isnan(roc_auc([0.7, 0.2], [0, 0]))
    with pytest.raises(ValueError, match="no samples"):
        roc_curve([], [])
