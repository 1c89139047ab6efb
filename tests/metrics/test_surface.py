"""Boundary distances (MONAI's HD95, ASSD, NSD) on masks whose distances are known by hand,
and medseg's empty-mask rules in front of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.metrics.surface import surface_measures


def _square(shift: int = 0, size: int = 10, shape: tuple[int, int] = (24, 30)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[5 : 5 + size, 5 + shift : 5 + shift + size] = 1
    return mask


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_a_square_shifted_by_k_pixels_has_hd95_k(k):
    """The shifted square's far side (and its corners' rows) lie exactly k from the reference's
    boundary: more than 5% of the boundary points, so the 95th percentile is the maximum, k."""
    measures = surface_measures(_square(k), _square())
    assert measures.hd95 == pytest.approx(k)


def test_a_shift_across_columns_is_measured_with_the_column_spacing():
    measures = surface_measures(_square(3), _square(), spacing=(0.9, 0.5))
    assert measures.hd95 == pytest.approx(1.5)


def test_three_by_three_squares_one_pixel_apart():
    """Boundaries: the 8 outer pixels of each square. Shifted by one column, 4 of each
    square's 8 boundary pixels lie on the other's boundary (0) and 4 lie 1 away, so
    ASSD = (4 x 1 + 4 x 1) / 16 = 0.5, HD95 = 1, NSD = 8 / 16 at a tolerance of 0.5 and 1 at 1."""
    ref = _square(0, size=3)
    pred = _square(1, size=3)
    measures = surface_measures(pred, ref, tolerance=0.5)
    assert (measures.hd95, measures.assd, measures.nsd) == pytest.approx((1.0, 0.5, 0.5))
    assert surface_measures(pred, ref, tolerance=1.0).nsd == pytest.approx(1.0)


def test_the_two_directions_differ_for_a_pixel_inside_a_square():
    """A predicted pixel at the centre of a 3 x 3 reference: it lies 1 from the reference's
    boundary; of the reference's 8 boundary pixels 4 lie 1 and 4 lie sqrt(2) from it. HD95
    is the larger direction's (sqrt(2)); ASSD pools both: (1 + 4 + 4 sqrt(2)) / 9."""
    ref = _square(0, size=3)
    pred = np.zeros_like(ref)
    pred[6, 6] = 1
    measures = surface_measures(pred, ref, tolerance=1.0)
    assert measures.hd95 == pytest.approx(math.sqrt(2))
    assert measures.assd == pytest.approx((5 + 4 * math.sqrt(2)) / 9)
    assert measures.nsd == pytest.approx(5 / 9)


def test_single_voxels_one_slice_apart_in_millimetres():
    """(N, H, W) with 3 mm between slices: one voxel above the other is 3 mm away."""
    ref = np.zeros((4, 5, 5), bool)
    ref[1, 2, 2] = True
    pred = np.roll(ref, 1, axis=0)
    measures = surface_measures(pred, ref, spacing=(3.0, 0.5, 0.5), tolerance=2.0)
    assert (measures.hd95, measures.assd, measures.nsd) == pytest.approx((3.0, 3.0, 0.0))
    assert surface_measures(pred, ref, spacing=(3.0, 0.5, 0.5), tolerance=3.0).nsd == 1.0
    assert surface_measures(pred, ref).hd95 == pytest.approx(1.0)  # grid steps


def test_identical_masks_are_zero_apart():
    measures = surface_measures(_square(), _square())
    assert (measures.hd95, measures.assd, measures.nsd) == (0.0, 0.0, 1.0)


def test_both_empty_is_a_perfect_match():
    empty = np.zeros((8, 8), bool)
    measures = surface_measures(empty, empty)
    assert (measures.hd95, measures.assd, measures.nsd) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("which", ["prediction", "reference"])
def test_one_empty_mask_leaves_the_distances_undefined_and_nsd_zero(which):
    empty, square = np.zeros((24, 30), bool), _square()
    pred, ref = (empty, square) if which == "prediction" else (square, empty)
    measures = surface_measures(pred, ref)
    assert math.isnan(measures.hd95) and math.isnan(measures.assd)
    assert measures.nsd == 0.0


def test_bad_shapes_spacing_and_tolerance_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        surface_measures(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="spacing"):
        surface_measures(_square(), _square(), spacing=(1.0,))
    with pytest.raises(ValueError, match="spacing"):
        surface_measures(_square(), _square(), spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="tolerance"):
        surface_measures(_square(), _square(), tolerance=-1.0)


@pytest.mark.parametrize(("shape", "spacing"), [((40, 40), None), ((6, 30, 30), (3.0, 0.7, 0.9))])
def test_the_measures_equal_monai_s_three_metric_functions(shape, spacing):
    """medseg reduces one get_edge_surface_distance pass as MONAI's compute_hausdorff_distance,
    compute_average_surface_distance and compute_surface_dice do (random blobs)."""
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )
    from scipy import ndimage

    rng = np.random.default_rng(5)
    for _ in range(4):
        pred = ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=2)
        ref = ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=2)
        ours = surface_measures(pred, ref, spacing, tolerance=1.5)
        y_pred, y = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
        theirs = (
            compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing),
            compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=spacing),
            compute_surface_dice(y_pred, y, [1.5], include_background=True, spacing=spacing),
        )
        assert (ours.hd95, ours.assd, ours.nsd) == pytest.approx([float(t) for t in theirs], rel=1e-5)
