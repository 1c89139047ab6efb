"""Pictures drawn by the app: sequences, masks and the error overlay, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.app.overlays import (
    ERROR_KINDS,
    ERROR_LEGEND,
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    PREDICTED,
    TRUE_POSITIVE,
    error_overlay,
    mask_picture,
    prediction_overlay,
    sequence_view,
)


def test_sequences_pick_the_kaggle_channels():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # pre-contrast, FLAIR, post
    assert sequence_view(image, "Pre-contrast")[0, 0].tolist() == [10, 10, 10]
    assert sequence_view(image, "FLAIR")[0, 0].tolist() == [20, 20, 20]
    assert sequence_view(image, "Post-contrast")[0, 0].tolist() == [30, 30, 30]
    assert sequence_view(image, "RGB composite")[0, 0].tolist() == [10, 20, 30]
    with pytest.raises(KeyError):
        sequence_view(image, "T2")


def test_error_overlay_colours_each_outcome():
    background = np.full((2, 2, 3), 100, np.uint8)
    pred = np.array([[1, 1], [0, 0]])
    target = np.array([[1, 0], [1, 0]])
    solid = error_overlay(background, pred, target, alpha=1.0)
    assert solid[0, 0].tolist() == list(TRUE_POSITIVE.rgb)
    assert solid[0, 1].tolist() == list(FALSE_POSITIVE.rgb)
    assert solid[1, 0].tolist() == list(FALSE_NEGATIVE.rgb)
    assert solid[1, 1].tolist() == [100, 100, 100]  # true negative: untouched
    half = error_overlay(background, pred, target, alpha=0.5)
    assert half[0, 1].tolist() == [178, 50, 178]  # (100 + 255) / 2 rounded, (100 + 0) / 2
    assert background[0, 0].tolist() == [100, 100, 100]  # input not modified


def test_overlay_colours_are_distinct_and_masks_are_black_and_white():
    colours = {TRUE_POSITIVE.rgb, FALSE_POSITIVE.rgb, FALSE_NEGATIVE.rgb}
    assert len(colours) == 3
    assert FALSE_POSITIVE.hex == "#ff00ff"
    assert mask_picture(np.array([[0, 1], [3, 0]])).tolist() == [[0, 255], [255, 0]]
    pictured = prediction_overlay(np.zeros((1, 2, 3), np.uint8), np.array([[1, 0]]), alpha=1.0)
    assert pictured.tolist() == [[list(PREDICTED.rgb), [0, 0, 0]]]


def test_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same height and width"):
        error_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="differ in size"):
        prediction_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 4)))


def test_error_kinds_name_the_legend_entries():
    assert ERROR_KINDS == {"tp": TRUE_POSITIVE, "fp": FALSE_POSITIVE, "fn": FALSE_NEGATIVE}
    assert tuple(ERROR_KINDS.values()) == ERROR_LEGEND
