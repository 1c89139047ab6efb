"""Lesion labelling (26-connectivity, largest first) and lesion-wise detection with the
match rule (one shared voxel) and the empty-mask rules, on hand-made stacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.metrics.lesions import label_lesions, lesion_detection, match_lesions


def _two_lesions() -> np.ndarray:
    ref = np.zeros((6, 12, 12), np.uint8)
    ref[1:4, 1:4, 1:4] = 1  # 27 voxels on slices 2-4
    ref[5, 8:10, 8:10] = 1  # 4 voxels on slice 6
    return ref


def test_lesions_are_numbered_largest_first():
    ref = _two_lesions()
    labels, count = label_lesions(ref)
    assert count == 2
    assert int((labels == 1).sum()) == 27 and int((labels == 2).sum()) == 4
    assert labels[5, 8, 8] == 2 and labels[2, 2, 2] == 1


def test_equal_lesions_are_numbered_by_their_first_slice():
    mask = np.zeros((5, 8, 8), np.uint8)
    mask[3, 0, 0] = 1
    mask[0, 6, 6] = 1
    labels, _ = label_lesions(mask)
    assert labels[0, 6, 6] == 1 and labels[3, 0, 0] == 2


def test_voxels_touching_at_a_corner_across_slices_are_one_lesion():
    mask = np.zeros((3, 5, 5), np.uint8)
    for k in range(3):
        mask[k, k + 1, k + 1] = 1
    assert label_lesions(mask)[1] == 1


def test_one_of_two_lesions_missed_gives_sensitivity_one_half():
    ref = _two_lesions()
    pred = np.zeros_like(ref)
    pred[2, 2, 2:6] = 1  # one voxel row, partly inside the large lesion
    matching = match_lesions(pred, ref)
    big, small = matching.reference
    assert big.matched and big.partners == (1,) and not small.matched
    assert (small.slices, small.widest_slice, small.voxels) == ((6, 6), 6, 4)
    assert (big.slices, big.widest_slice) == ((2, 4), 2)
    assert lesion_detection(matching) == {
        "ref_lesions": 2, "pred_lesions": 1, "detected_lesions": 1, "missed_lesions": 1,
        "spurious_lesions": 0, "lesion_sensitivity": 0.5, "lesion_precision": 1.0,
        "lesion_f1": pytest.approx(2 / 3),
    }


def test_a_lesion_on_healthy_tissue_is_spurious():
    ref = _two_lesions()
    pred = ref.copy()
    pred[0, 10, 0] = 1
    detection = lesion_detection(match_lesions(pred, ref))
    assert detection["spurious_lesions"] == 1 and detection["missed_lesions"] == 0
    assert (detection["lesion_sensitivity"], detection["lesion_precision"]) == (1.0, pytest.approx(2 / 3))
    assert detection["lesion_f1"] == pytest.approx(0.8)


def test_one_prediction_bridging_two_lesions_detects_both():
    ref = np.zeros((1, 3, 7), np.uint8)
    ref[0, 1, 1], ref[0, 1, 5] = 1, 1
    pred = np.zeros_like(ref)
    pred[0, 1, 1:6] = 1
    matching = match_lesions(pred, ref)
    assert matching.predicted[0].partners == (1, 2)
    detection = lesion_detection(matching)
    assert detection["lesion_sensitivity"] == 1.0 and detection["lesion_precision"] == 1.0
    assert (detection["detected_lesions"], detection["missed_lesions"], detection["spurious_lesions"]) == (2, 0, 0)


def test_empty_mask_rules():
    ref, empty = _two_lesions(), np.zeros((6, 12, 12), np.uint8)
    both = lesion_detection(match_lesions(empty, empty))
    assert (both["lesion_sensitivity"], both["lesion_precision"], both["lesion_f1"]) == (1.0, 1.0, 1.0)
    assert both["missed_lesions"] == both["spurious_lesions"] == 0
    missed = lesion_detection(match_lesions(empty, ref))
    assert missed["lesion_sensitivity"] == 0.0 and math.isnan(missed["lesion_precision"])
    assert missed["lesion_f1"] == 0.0 and missed["missed_lesions"] == 2
    spurious = lesion_detection(match_lesions(ref, empty))
    assert math.isnan(spurious["lesion_sensitivity"]) and spurious["lesion_precision"] == 0.0
    assert spurious["lesion_f1"] == 0.0 and spurious["spurious_lesions"] == 2


def test_masks_of_other_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        match_lesions(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="slices, rows, columns"):
        label_lesions(np.zeros((4, 4)))
