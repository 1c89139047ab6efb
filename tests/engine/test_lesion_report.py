"""Lesion reports: hand-made masks with hand-computed volumes and diameters (the report
``medseg predict`` writes beside a volume's mask: tests/predict/test_report.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nibabel.orientations import apply_orientation
from scipy.spatial.distance import pdist

from medseg.engine.lesions import feret_diameter_mm, find_lesions, lesion_report
from medseg.imaging.dicom import DICOM_TO_SLICES
from medseg.imaging.nifti import inverse_transform, slice_transform
from medseg.metrics.lesions import label_lesions

#: a DICOM-like grid: columns 2 mm apart (x), rows 0.5 mm (y), slices 3 mm (z)
AFFINE = np.diag([-2.0, -0.5, 3.0, 1.0])
VOXEL_ML = 2.0 * 0.5 * 3.0 / 1000


def _report(mask_nhw: np.ndarray) -> dict:
    return lesion_report(mask_nhw, AFFINE, DICOM_TO_SLICES)


def test_a_block_on_one_slice_with_anisotropic_pixels():
    mask = np.zeros((4, 10, 12), np.uint8)  # (slices, rows, columns)
    mask[2, 3:6, 5:9] = 1  # 3 rows x 4 columns
    report = _report(mask)
    assert report["voxel_size_mm"] == [2.0, 0.5, 3.0]  # x (columns), y (rows), z (slices)
    assert report["voxel_volume_ml"] == pytest.approx(VOXEL_ML)
    assert report["tumour_voxels"] == 12 and report["n_lesions"] == 1
    assert report["tumour_volume_ml"] == pytest.approx(12 * VOXEL_ML)
    (lesion,) = report["lesions"]
    # pixel centres: 2 row steps of 0.5 mm and 3 column steps of 2 mm apart
    assert lesion["largest_in_plane_diameter_mm"] == pytest.approx(math.sqrt(1.0**2 + 6.0**2), abs=1e-3)
    assert lesion["slices"] == [3, 3] and lesion["label"] == 1 and lesion["voxels"] == 12
    assert lesion["volume_ml"] == pytest.approx(12 * VOXEL_ML)
    # file order (x = column, y = row, z = slice), 0-based
    assert lesion["centroid_voxel"] == [6.5, 4.0, 2.0]
    assert lesion["centroid_mm"] == [-13.0, -2.0, 6.0]


def test_two_lesions_largest_first():
    mask = np.zeros((5, 10, 10), np.uint8)
    mask[0, 0:2, 0:2] = 1  # 4 voxels on slice 1
    mask[2:5, 6:9, 6:9] = 1  # 27 voxels on slices 3-5
    report = _report(mask)
    assert report["n_lesions"] == 2 and report["tumour_voxels"] == 31
    big, small = report["lesions"]
    assert (big["label"], big["voxels"], big["slices"]) == (1, 27, [3, 5])
    assert (small["label"], small["voxels"], small["slices"]) == (2, 4, [1, 1])
    assert big["volume_ml"] == pytest.approx(27 * VOXEL_ML)
    assert big["largest_in_plane_diameter_mm"] == pytest.approx(math.hypot(2 * 0.5, 2 * 2.0), abs=1e-3)
    assert small["largest_in_plane_diameter_mm"] == pytest.approx(math.hypot(0.5, 2.0), abs=1e-3)
    assert big["centroid_voxel"] == [7.0, 7.0, 3.0]


def test_voxels_touching_at_a_corner_are_one_lesion():
    """26-connectivity: a diagonal chain across slices, touching only at corners, is one lesion
    (a face-connected labelling would count three)."""
    mask = np.zeros((3, 5, 5), np.uint8)
    for k in range(3):
        mask[k, k + 1, k + 1] = 1
    report = _report(mask)
    assert report["n_lesions"] == 1
    assert report["lesions"][0]["voxels"] == 3 and report["lesions"][0]["slices"] == [1, 3]
    assert report["lesions"][0]["largest_in_plane_diameter_mm"] == 0.0  # one pixel per slice
    separate = mask.copy()
    separate[1, 2, 2], separate[1, 3, 3] = 0, 1  # the middle voxel moved out of reach
    assert _report(separate)["n_lesions"] == 2


def test_an_empty_mask_has_no_lesion():
    report = _report(np.zeros((3, 6, 6), np.uint8))
    assert report["n_lesions"] == 0 and report["lesions"] == []
    assert report["tumour_voxels"] == 0 and report["tumour_volume_ml"] == 0.0


def test_feret_diameter_equals_the_brute_force_maximum():
    rng = np.random.default_rng(3)
    for _ in range(20):
        plane = rng.random((9, 11)) < 0.3
        rows, columns = np.nonzero(plane)
        if rows.size < 2:
            continue
        points = np.stack([rows * 0.7, columns * 1.3], axis=1)
        assert feret_diameter_mm(plane, (0.7, 1.3)) == pytest.approx(pdist(points).max())
    assert feret_diameter_mm(np.zeros((3, 3)), (1.0, 1.0)) == 0.0


def test_find_lesions_in_stack_axes():
    mask = np.zeros((2, 4, 4), bool)
    mask[1, 1:3, 0:4] = True
    (lesion,) = find_lesions(mask, (5.0, 1.0, 1.0))
    assert lesion.voxels == 8 and lesion.volume_ml == pytest.approx(8 * 5.0 / 1000)
    assert lesion.centroid == (1.0, 1.5, 1.5) and lesion.slices == (2, 2)


def test_centroid_is_in_the_files_voxel_order_under_flips():
    """A NIfTI grid the slices are cut from with axes swapped and flipped: the centroid
    matches the one computed on the mask as the file stores it."""
    affine = np.array([[0, 0, -1.5, 20], [-1.0, 0, 0, 10], [0, 2.0, 0, -5], [0, 0, 0, 1]])
    ornt = slice_transform(affine)
    file_mask = np.zeros((7, 6, 5), np.uint8)
    file_mask[1:3, 4, 0:2] = 1
    mask_nhw = apply_orientation(file_mask, ornt)
    assert np.array_equal(apply_orientation(mask_nhw, inverse_transform(ornt)), file_mask)
    report = lesion_report(mask_nhw, affine, ornt)
    (lesion,) = report["lesions"]
    expected = np.argwhere(file_mask).mean(axis=0)
    assert lesion["centroid_voxel"] == pytest.approx(expected.tolist())
    assert lesion["centroid_mm"] == pytest.approx((affine @ np.r_[expected, 1])[:3].tolist())
    assert report["voxel_size_mm"] == [1.0, 2.0, 1.5]


def test_the_report_numbers_lesions_as_the_lesion_wise_measures_do():
    """One labelling (medseg.metrics.lesions.label_lesions) for the report and the measures."""
    rng = np.random.default_rng(7)
    mask = rng.random((5, 12, 12)) < 0.15
    labels, count = label_lesions(mask)
    lesions = find_lesions(mask, (3.0, 1.0, 1.0))
    assert len(lesions) == count > 2
    for lesion in lesions:
        inside = np.argwhere(labels == lesion.label)
        assert lesion.voxels == len(inside)
        assert lesion.centroid == pytest.approx(tuple(inside.mean(axis=0)))
