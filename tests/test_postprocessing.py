"""Postprocessing: small lesions removed, the largest kept, in 3-D with the lesion labelling."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.postprocessing import Postprocessing, load_postprocessing, save_postprocessing


def _stack() -> np.ndarray:
    """Three lesions over 3 slices: 8 voxels (a 2x2 block on slices 0-1), 3 voxels (a bar on
    slice 2) and 1 voxel touching the big one only by a corner on the next slice (one lesion
    with it under 26-connectivity)."""
    masks = np.zeros((3, 6, 6), np.uint8)
    masks[0:2, 0:2, 0:2] = 1          # 8 voxels
    masks[2, 2, 2] = 1                # corner neighbour of (1, 1, 1): joins the block -> 9
    masks[2, 5, 3:6] = 1              # 3 voxels
    masks[0, 5, 0] = 1                # 1 voxel
    return masks


def test_the_identity_changes_nothing() -> None:
    masks = _stack()
    assert Postprocessing().is_identity
    np.testing.assert_array_equal(Postprocessing().apply(masks), masks)


def test_lesions_under_the_size_are_removed_counting_corner_neighbours() -> None:
    masks = _stack()
    out = Postprocessing(min_voxels=3).apply(masks)
    expected = masks.copy()
    expected[0, 5, 0] = 0
    np.testing.assert_array_equal(out, expected)
    # 9 voxels survive a threshold of 9 only because the corner voxel joins the block
    kept = Postprocessing(min_voxels=9).apply(masks)
    assert kept.sum() == 9 and kept[2, 2, 2] == 1


def test_keep_largest_keeps_only_the_largest_lesion() -> None:
    out = Postprocessing(keep_largest=True).apply(_stack())
    assert out.sum() == 9 and out[2, 5].sum() == 0 and out[0, 5, 0] == 0


def test_a_single_slice_is_postprocessed_in_two_dimensions() -> None:
    mask = np.zeros((5, 5), np.uint8)
    mask[0, 0] = 1
    mask[3:5, 3:5] = 1
    out = Postprocessing(min_voxels=2).apply(mask)
    assert out.shape == (5, 5) and out.sum() == 4 and out[0, 0] == 0


def test_round_trip_and_refusals() -> None:
    step = Postprocessing(min_voxels=20, keep_largest=True)
    assert Postprocessing.from_dict(step.to_dict()) == step
    assert step.describe() == "remove lesions under 20 voxels; keep the largest lesion"
    for bad in ({"min_voxels": -1, "keep_largest": False}, {"min_voxels": 2.5, "keep_largest": False},
                {"min_voxels": 2, "keep_largest": "yes"}, {"min_voxels": 2}):
        with pytest.raises(ValueError):
            Postprocessing.from_dict(bad)
    with pytest.raises(ValueError):
        Postprocessing().apply(np.zeros((1, 2, 3, 4)))


def test_a_record_round_trips_and_bad_records_are_refused_naming_the_file(tmp_path) -> None:
    path = tmp_path / "postprocessing.json"
    step = Postprocessing(min_voxels=5)
    save_postprocessing(path, step, {"rule": "kept only if patient Dice rises", "candidates": []})
    assert load_postprocessing(path) == step
    assert json.loads(path.read_text())["rule"] == "kept only if patient Dice rises"
    with pytest.raises(ValueError):
        save_postprocessing(path, step, {"postprocessing": {}})
    for text in ("not json", "[]", '{"rule": 1}', '{"postprocessing": {"min_voxels": -2, "keep_largest": false}}'):
        path.write_text(text)
        with pytest.raises(MedsegError, match=re.escape(str(path))):
            load_postprocessing(path)
    with pytest.raises(MedsegError, match=r"missing\.json"):
        load_postprocessing(tmp_path / "missing.json")
