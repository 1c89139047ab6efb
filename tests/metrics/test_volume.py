"""Volumes in voxels and in mL through a non-unit spacing, and the empty-mask rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.metrics.volume import volume_measures, voxel_volume_ml


def _masks() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((3, 6, 6), np.uint8)
    ref[1, 1:4, 1:5] = 1  # 12 voxels
    pred = ref.copy()
    pred[2, 1, 1:4] = 1  # 3 more: 15 voxels
    return pred, ref


def test_a_voxel_of_3_by_0_5_by_2_mm_holds_0_003_ml():
    assert voxel_volume_ml((3.0, 0.5, 2.0)) == pytest.approx(0.003)


def test_volumes_in_voxels_without_a_spacing():
    assert volume_measures(*_masks()) == {
        "pred_volume_voxels": 15, "ref_volume_voxels": 12, "abs_volume_diff_voxels": 3,
        "rel_volume_diff": pytest.approx(0.25),
    }


def test_volumes_in_millilitres_through_the_spacing():
    measures = volume_measures(*_masks(), voxel_ml=voxel_volume_ml((3.0, 0.5, 2.0)))
    assert measures == {
        "pred_volume_ml": pytest.approx(0.045), "ref_volume_ml": pytest.approx(0.036),
        "abs_volume_diff_ml": pytest.approx(0.009), "rel_volume_diff": pytest.approx(0.25),
    }


def test_a_too_small_prediction_has_a_negative_relative_difference():
    pred, ref = _masks()
    assert volume_measures(ref, pred)["rel_volume_diff"] == pytest.approx(-0.2)


def test_empty_mask_rules():
    pred, ref = _masks()
    empty = np.zeros_like(ref)
    both = volume_measures(empty, empty)
    assert both["rel_volume_diff"] == 0.0 and both["abs_volume_diff_voxels"] == 0
    missed = volume_measures(empty, ref)
    assert missed["rel_volume_diff"] == -1.0 and missed["abs_volume_diff_voxels"] == 12
    spurious = volume_measures(pred, empty)
    assert math.isnan(spurious["rel_volume_diff"]) and spurious["abs_volume_diff_voxels"] == 15
