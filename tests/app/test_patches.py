"""The outline of the PCam patch's labelled centre region, on hand-made patches."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.app.patches import outline_centre
from medseg.data.pcam import LABEL_REGION_SIZE, PATCH_SHAPE, label_region

CYAN = [0, 229, 255]


def _border(side: int, first: int, last: int) -> np.ndarray:
    """(side, side) bool: the border of the square rows/columns first..last, inclusive."""
    inside = np.zeros((side, side), bool)
    inside[first : last + 1, first : last + 1] = True
    inside[first + 1 : last, first + 1 : last] = False
    return inside


def test_pcam_centre_border_is_rows_and_columns_32_to_63():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 200, (2, 96, 96, 3), dtype=np.uint8)  # never the cyan 229/255
    before = patches.copy()
    drawn = outline_centre(patches)
    border = _border(96, 32, 63)
    assert border.sum() == 4 * 32 - 4
    for i in range(2):
        assert (drawn[i][border] == CYAN).all()
        assert np.array_equal(drawn[i][~border], patches[i][~border])  # inside and outside kept
    assert drawn[0, 32, 47].tolist() == CYAN and drawn[0, 47, 63].tolist() == CYAN
    for row, col in ((31, 40), (33, 40), (64, 40), (40, 31), (40, 33), (40, 64)):
        assert drawn[0, row, col].tolist() == patches[0, row, col].tolist()
    assert np.array_equal(patches, before)  # the input is not modified


def test_one_patch_other_size_and_colour():
    patch = np.zeros((8, 8, 3), np.uint8)
    drawn = outline_centre(patch, size=4, rgb=(1, 2, 3))
    assert drawn.shape == (8, 8, 3)
    assert np.array_equal(drawn.any(axis=-1), _border(8, 2, 5))
    assert drawn[2, 5].tolist() == [1, 2, 3]
    assert not patch.any()


def test_bad_shapes_and_sizes_are_refused():
    with pytest.raises(ValueError, match="patches"):
        outline_centre(np.zeros((96, 96), np.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        outline_centre(np.zeros((8, 8, 3), np.uint8), size=9)
    with pytest.raises(ValueError, match="does not fit"):
        outline_centre(np.zeros((8, 8, 3), np.uint8), size=0)


def test_the_outline_is_the_border_of_pcam_s_label_region():
    rows, cols = label_region()
    assert (rows, cols) == (slice(32, 64), slice(32, 64))
    assert LABEL_REGION_SIZE == 32 and PATCH_SHAPE == (96, 96, 3)
    drawn = outline_centre(np.zeros(PATCH_SHAPE, np.uint8)).any(axis=-1)
    assert drawn[rows, cols].sum() == drawn.sum() == 4 * 32 - 4
    assert drawn[rows.start, cols].all() and drawn[rows.stop - 1, cols].all()
    assert drawn[rows, cols.start].all() and drawn[rows, cols.stop - 1].all()
