"""The app's patient and patch scores, hand-computed; reading a patient's slices."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.app.patches import read_patches, score_patches
from medseg.app.scoring import format_area, read_patient_slices, score_volume
from medseg.data.lgg import list_patients


def test_score_volume_hand_computed():
    probs = np.array([
        [[0.9, 0.8], [0.2, 0.1]],  # slice 1: predicts the top row
        [[0.1, 0.1], [0.1, 0.1]],  # slice 2: predicts nothing
        [[0.6, 0.1], [0.1, 0.1]],  # slice 3: a false positive on an empty slice
    ], np.float32)
    masks = np.array([
        [[1, 0], [1, 0]],
        [[0, 0], [0, 0]],
        [[0, 0], [0, 0]],
    ], np.uint8)
    result = score_volume(probs, masks, "P", [4, 5, 6], threshold=0.5)
    rows = {row["slice"]: row for row in result["per_slice"]}
    assert rows[4]["dice"] == pytest.approx(0.5)  # 2*1 / (2 + 2)
    assert rows[4]["iou"] == pytest.approx(1 / 3)
    assert rows[5]["dice"] == 1.0  # both empty
    assert rows[6]["dice"] == 0.0  # false positive on an empty slice
    assert (rows[4]["gt_pixels"], rows[4]["pred_pixels"]) == (2, 2)
    assert result["dice"] == pytest.approx(0.5)  # mean of 0.5, 1, 0
    assert result["patient_dice"] == pytest.approx(2 * 1 / (3 + 2))  # TP 1, FP 2, FN 1
    assert result["patient_iou"] == pytest.approx(1 / 4)
    assert result["n_empty_fp_slices"] == 1
    with pytest.raises(ValueError, match="expected 3 patients and slices"):
        score_volume(probs, masks, "P", [4, 5], threshold=0.5)
    # a higher threshold only re-thresholds
    assert score_volume(probs, masks, "P", [4, 5, 6], threshold=0.85)["per_slice"][0]["pred_pixels"] == 1


def test_area_text():
    assert format_area(412, None) == "412 px (spacing unknown)"
    assert format_area(412, 0.25) == "412 px (103.0 mm²)"


def test_read_patient_slices(tiny_lgg):
    patient = list_patients(tiny_lgg)[0]
    case = read_patient_slices(patient)
    assert case.numbers == [1, 2, 3, 4]
    assert case.images.shape == (4, 64, 64, 3) and case.images.dtype == np.uint8
    assert case.masks.shape == (4, 64, 64) and set(np.unique(case.masks)) <= {0, 1}
    assert case.masks[0].sum() == 0 and case.masks[1].sum() > 0


def test_pcam_patches_and_scores(tiny_pcam):
    patches, labels = read_patches(tiny_pcam, "val", count=5)
    assert patches.shape == (5, 96, 96, 3) and labels.tolist() == [0, 1, 0, 1, 0]
    assert read_patches(tiny_pcam, "test", count=100)[0].shape[0] == 12
    scores = score_patches(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 0, 1]), threshold=0.5)
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["auc"] == pytest.approx(0.75)  # pairs (pos, neg): 0.9>0.2, 0.9>0.6, 0.4>0.2
