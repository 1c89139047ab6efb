"""largest_connected_component on tiny 2-D and 3-D masks."""

from __future__ import annotations

import numpy as np
import torch

from medseg.metrics import largest_connected_component

TWO_BLOBS = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 0, 1],
        [0, 0, 0, 1],
    ],
    dtype=np.uint8,
)


def test_keeps_the_largest_2d_blob() -> None:
    expected = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.uint8)
    kept = largest_connected_component(TWO_BLOBS)
    assert isinstance(kept, np.ndarray) and kept.dtype == np.uint8
    np.testing.assert_array_equal(kept, expected)


def test_connectivity_decides_whether_diagonals_join() -> None:
    diagonal = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]], dtype=np.uint8)
    vertical = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]], dtype=np.uint8)
    mask = diagonal + vertical
    # full connectivity: the 3-pixel diagonal is one component; faces only: three singles
    np.testing.assert_array_equal(largest_connected_component(mask), diagonal)
    np.testing.assert_array_equal(largest_connected_component(mask, connectivity=1), vertical)


def test_3d_component_spans_slices() -> None:
    volume = np.zeros((3, 3, 3), dtype=np.uint8)
    volume[0, 0, 0:2] = 1  # slices 0-1: one 4-voxel component
    volume[1, 0, 0:2] = 1
    volume[2, 2, :] = 1  # slice 2: 3 voxels, the largest within its own slice
    kept = largest_connected_component(volume)
    assert kept.sum() == 4 and kept[2].sum() == 0


def test_torch_input_keeps_type_and_empty_stays_empty() -> None:
    kept = largest_connected_component(torch.from_numpy(TWO_BLOBS).float())
    assert isinstance(kept, torch.Tensor) and kept.dtype == torch.float32
    assert kept.sum().item() == 3
    empty = largest_connected_component(np.zeros((4, 4), dtype=bool))
    assert empty.dtype == bool and not empty.any()
