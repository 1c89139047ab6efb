"""Dice / IoU and SegmentationMeter on tiny masks: hand-computed values, MONAI as a reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from monai.metrics import compute_dice, compute_iou

from medseg.errors import MedsegError
from medseg.metrics import SegmentationMeter, dice_score, iou_score, pixel_confusion_counts

PRED = np.array([[1, 1, 0], [0, 0, 0]])
GT = np.array([[1, 0, 0], [1, 0, 0]])
EMPTY = np.zeros((2, 3))


def test_dice_and_iou_by_hand() -> None:
    # TP = 1, FP = 1, FN = 1: Dice = 2*1 / (2 + 2), IoU = 1 / 3
    assert dice_score(PRED, GT) == pytest.approx(0.5)
    assert iou_score(PRED, GT) == pytest.approx(1 / 3)


def test_empty_slice_convention() -> None:
    assert dice_score(EMPTY, EMPTY) == 1.0
    assert iou_score(EMPTY, EMPTY) == 1.0
    assert dice_score(PRED, EMPTY) == 0.0  # a false positive on an empty slice counts
    assert iou_score(PRED, EMPTY) == 0.0
    assert dice_score(EMPTY, GT) == 0.0


def test_mask_types_are_interchangeable() -> None:
    expected = dice_score(PRED, GT)
    assert dice_score(torch.from_numpy(PRED), torch.from_numpy(GT)) == expected
    assert dice_score(PRED.astype(bool), (GT * 255).astype(np.uint8)) == expected


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
        dice_score(PRED, GT.T)


def _batch(*masks: np.ndarray) -> torch.Tensor:
    """Masks -> probabilities (B, 1, H, W): foreground 0.9, background 0.1."""
    return torch.tensor(np.stack(masks)[:, None] * 0.8 + 0.1, dtype=torch.float32)


def _labels(*masks: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.stack(masks)[:, None], dtype=torch.float32)


FULL_ROWS = np.array([[1, 1, 1], [1, 1, 1]])
ONE_PIXEL = np.array([[0, 0, 0], [0, 0, 1]])
TWO_PIXELS = np.array([[0, 0, 0], [1, 1, 0]])


def _filled_meter() -> SegmentationMeter:
    """Patient A: (PRED vs GT), (empty vs empty), (full vs full); B: (FP on empty), (exact)."""
    meter = SegmentationMeter()
    meter.update(_batch(ONE_PIXEL, TWO_PIXELS), _labels(EMPTY, TWO_PIXELS), ["B", "B"], [1, 2])
    meter.update(
        _batch(PRED, EMPTY, FULL_ROWS), _labels(GT, EMPTY, FULL_ROWS), ["A"] * 3, [1, 2, 3]
    )
    return meter


def test_meter_by_hand() -> None:
    result = _filled_meter().compute()
    # slice Dice: A = 0.5, 1, 1; B = 0, 1 -> mean 3.5 / 5
    assert result["dice"] == pytest.approx(0.7)
    # slice IoU: A = 1/3, 1, 1; B = 0, 1 -> mean (10/3) / 5
    assert result["iou"] == pytest.approx(2 / 3)
    # A in 3-D: TP = 1 + 0 + 6, FP = 1, FN = 1 -> 14 / 16; its mean slice Dice is 2.5 / 3
    assert result["per_patient"]["A"] == pytest.approx(0.875)
    assert result["per_patient"]["A"] != pytest.approx(2.5 / 3)
    # B in 3-D: TP = 2, FP = 1, FN = 0 -> 4 / 5
    assert result["per_patient"]["B"] == pytest.approx(0.8)
    assert result["patient_dice"] == pytest.approx((0.875 + 0.8) / 2)
    # 3-D IoU: A = 7 / 9, B = 2 / 3
    assert result["per_patient_iou"] == {"A": pytest.approx(7 / 9), "B": pytest.approx(2 / 3)}
    assert result["patient_iou"] == pytest.approx((7 / 9 + 2 / 3) / 2)
    # empty ground truth: A slice 2 (clean) and B slice 1 (one false-positive pixel)
    assert result["empty_fp_rate"] == 0.5
    assert (result["n_empty_slices"], result["n_empty_fp_slices"]) == (2, 1)
    assert (result["n_slices"], result["n_patients"]) == (5, 2)


def test_patient_scores_are_means_not_medians_over_three_patients() -> None:
    # A: exact (Dice 1, IoU 1). B: slice 1 exact (2 px), slice 2 one false positive ->
    # pooled TP 2, FP 1, FN 0: Dice 4/5, IoU 2/3 (its slices' mean Dice is 0.5).
    # C: one pixel predicted beside the one true pixel: TP 0, FP 1, FN 1 -> Dice 0, IoU 0.
    # Mean Dice (1 + 0.8 + 0) / 3 = 0.6 (the median would be 0.8); mean IoU 5/9 (median 2/3).
    meter = SegmentationMeter()
    meter.update(_batch(FULL_ROWS), _labels(FULL_ROWS), ["A"])
    meter.update(_batch(TWO_PIXELS, ONE_PIXEL), _labels(TWO_PIXELS, EMPTY), ["B", "B"])
    meter.update(_batch(np.array([[0, 0, 0], [0, 1, 0]])), _labels(ONE_PIXEL), ["C"])
    result = meter.compute()
    assert result["per_patient"] == {"A": 1.0, "B": pytest.approx(0.8), "C": 0.0}
    assert result["patient_dice"] == pytest.approx(0.6)
    assert result["patient_iou"] == pytest.approx(5 / 9)
    # slice means: Dice (1 + 1 + 0 + 0) / 4, IoU the same
    assert (result["dice"], result["iou"]) == (pytest.approx(0.5), pytest.approx(0.5))


def test_pixel_confusion_counts_by_hand() -> None:
    pred = torch.from_numpy(np.stack([PRED, EMPTY, FULL_ROWS])).bool()
    truth = torch.from_numpy(np.stack([GT, EMPTY, ONE_PIXEL])).bool()
    # (TP, FP, FN): PRED vs GT (1, 1, 1); empty (0, 0, 0); full vs one pixel (1, 5, 0)
    assert pixel_confusion_counts(pred, truth).tolist() == [[1, 1, 1], [0, 0, 0], [1, 5, 0]]


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_a_threshold_outside_zero_one_is_refused(threshold) -> None:
    with pytest.raises(MedsegError, match=r"threshold: .* must be between 0 and 1"):
        SegmentationMeter(threshold)


def test_per_slice_rows_are_sorted_and_complete() -> None:
    rows = _filled_meter().compute()["per_slice"]
    assert [(row["patient"], row["slice"]) for row in rows] == [
        ("A", 1), ("A", 2), ("A", 3), ("B", 1), ("B", 2)
    ]
    assert rows[0] == {
        "patient": "A", "slice": 1, "dice": pytest.approx(0.5), "iou": pytest.approx(1 / 3),
        "gt_pixels": 2, "pred_pixels": 2,
    }
    assert (rows[3]["dice"], rows[3]["gt_pixels"], rows[3]["pred_pixels"]) == (0.0, 0, 1)


def test_no_empty_slice_gives_a_zero_rate_not_nan() -> None:
    meter = SegmentationMeter()
    meter.update(_batch(PRED), _labels(GT), ["A"])
    result = meter.compute()
    assert (result["empty_fp_rate"], result["n_empty_slices"]) == (0.0, 0)


def test_threshold_is_inclusive() -> None:
    probs = torch.full((1, 1, 2, 2), 0.5)
    labels = torch.ones(1, 1, 2, 2)
    default = SegmentationMeter()
    default.update(probs, labels, ["A"])
    strict = SegmentationMeter(threshold=0.7)
    strict.update(probs, labels, ["A"])
    assert default.compute()["dice"] == 1.0
    assert strict.compute()["dice"] == 0.0


def test_slices_are_numbered_per_patient_when_not_given() -> None:
    meter = SegmentationMeter()
    meter.update(_batch(PRED, PRED), _labels(GT, GT), ["A", "B"])
    meter.update(_batch(PRED), _labels(GT), ["A"])
    keys = [(row["patient"], row["slice"]) for row in meter.compute()["per_slice"]]
    assert keys == [("A", 1), ("A", 2), ("B", 1)]


def test_a_slice_added_twice_is_refused() -> None:
    meter = SegmentationMeter()
    meter.update(_batch(PRED), _labels(GT), ["A"], [4])
    with pytest.raises(ValueError, match="slice 4 of patient A was already added"):
        meter.update(_batch(PRED), _labels(GT), ["A"], [4])
    with pytest.raises(ValueError, match="slice 5 of patient A was already added"):
        meter.update(_batch(PRED, PRED), _labels(GT, GT), ["A", "A"], [5, 5])
    assert meter.compute()["n_slices"] == 1  # a refused batch adds nothing


def test_bad_shapes_are_refused() -> None:
    meter = SegmentationMeter()
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, 1, H, W\)"):
        meter.update(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4), ["A", "A"])
    with pytest.raises(ValueError, match="expected 1 patients"):
        meter.update(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), ["A", "B"])


def test_compute_without_slices_and_reset() -> None:
    meter = _filled_meter()
    meter.reset()
    with pytest.raises(ValueError, match="no slices"):
        meter.compute()


def test_numpy_volumes_without_a_channel_score_like_tensors() -> None:
    as_tensors = SegmentationMeter()
    as_tensors.update(_batch(PRED, EMPTY), _labels(GT, EMPTY), ["A", "A"], [1, 2])
    as_arrays = SegmentationMeter()
    as_arrays.update(_batch(PRED, EMPTY)[:, 0].numpy(), np.stack([GT, EMPTY]).astype(np.uint8),
                     ["A", "A"], [1, 2])
    assert as_arrays.compute() == as_tensors.compute()


masks = arrays(np.uint8, (4, 5), elements=st.integers(0, 1))


@settings(max_examples=50, deadline=None)
@given(pred=masks, gt=masks)
def test_scores_agree_with_monai(pred: np.ndarray, gt: np.ndarray) -> None:
    # MONAI's own Dice and IoU, with the same empty-slice convention, as the reference
    pred_t, gt_t = torch.from_numpy(pred)[None, None].float(), torch.from_numpy(gt)[None, None].float()
    monai_dice = float(compute_dice(pred_t, gt_t, include_background=True, ignore_empty=False))
    monai_iou = float(compute_iou(pred_t, gt_t, include_background=True, ignore_empty=False))
    assert dice_score(pred, gt) == pytest.approx(monai_dice)
    assert iou_score(pred, gt) == pytest.approx(monai_iou)
    meter = SegmentationMeter()
    meter.update(_batch(pred), _labels(gt), ["P"])
    result = meter.compute()
    assert result["per_patient"]["P"] == pytest.approx(result["dice"])  # one slice: 2-D = 3-D
