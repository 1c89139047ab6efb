"""Pictures of a slice: one MRI sequence in grey, masks, and a colour-coded error overlay.

The overlay colours are colour-blind friendlier than red/green: true positives yellow, false
positives magenta, false negatives cyan (they stay apart under deuteranopia and protanopia).

Example:
    >>> import numpy as np
    >>> image = np.zeros((2, 2, 3), np.uint8)
    >>> pred = np.array([[1, 1], [0, 0]], np.uint8)
    >>> target = np.array([[1, 0], [1, 0]], np.uint8)
    >>> error_overlay(image, pred, target, alpha=1.0)[0, 0].tolist()  # a true positive
    [255, 221, 0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Channel of each MRI sequence in a kaggle_3m LGG slice (pre-contrast, FLAIR, post-contrast).
SEQUENCE_CHANNELS: dict[str, int | None] = {
    "FLAIR": 1,
    "Pre-contrast": 0,
    "Post-contrast": 2,
    "RGB composite": None,
}


@dataclass(frozen=True)
class LegendEntry:
    """One colour of the overlay and what it means."""

    label: str
    rgb: tuple[int, int, int]
    meaning: str

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


TRUE_POSITIVE = LegendEntry("True positive", (255, 221, 0), "tumour found by the model")
FALSE_POSITIVE = LegendEntry("False positive", (255, 0, 255), "model marks tumour, the reference does not")
FALSE_NEGATIVE = LegendEntry("False negative", (0, 229, 255), "tumour the model missed")
PREDICTED = LegendEntry("Predicted tumour", (255, 221, 0), "no expert mask to compare with")

ERROR_LEGEND = (TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE)
#: Short name of each error layer (as :func:`medseg.app.viewer.error_layers` takes them).
ERROR_KINDS: dict[str, LegendEntry] = {
    "tp": TRUE_POSITIVE,
    "fp": FALSE_POSITIVE,
    "fn": FALSE_NEGATIVE,
}


def sequence_view(
    image_hwc: np.ndarray, sequence: str, channels: Mapping[str, int | None] = SEQUENCE_CHANNELS
) -> np.ndarray:
    """Return one MRI sequence as a grey (H, W, 3) uint8 picture, or the RGB composite.

    Args:
        image_hwc: (H, W, 3) uint8 slice as read by :func:`medseg.data.read_slice_image`.
        sequence: a key of ``channels``.
        channels: each view's channel (None: the RGB composite).

    Raises:
        KeyError: for an unknown sequence name.
    """
    channel = channels[sequence]
    if channel is None:
        return np.ascontiguousarray(image_hwc)
    grey = image_hwc[..., channel]
    return np.repeat(grey[..., None], 3, axis=2)


def mask_picture(mask: np.ndarray) -> np.ndarray:
    """Return a binary (H, W) mask as a black-and-white (H, W) uint8 picture (0 or 255)."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def _paint(picture: np.ndarray, where: np.ndarray, rgb: tuple[int, int, int], alpha: float) -> None:
    colour = np.asarray(rgb, dtype=np.float32)
    picture[where] = (1 - alpha) * picture[where] + alpha * colour


def error_overlay(
    image_rgb: np.ndarray, pred: np.ndarray, target: np.ndarray, *, alpha: float = 0.6
) -> np.ndarray:
    """Colour true positives, false positives and false negatives over a picture.

    Args:
        image_rgb: (H, W, 3) uint8 background (e.g. from :func:`sequence_view`).
        pred: (H, W) binary predicted mask.
        target: (H, W) binary ground-truth mask.
        alpha: opacity of the colours (1 paints them solid).

    Returns:
        (H, W, 3) uint8 picture; pixels where both masks are empty are unchanged.

    Raises:
        ValueError: when the shapes disagree.
    """
    pred = np.asarray(pred) > 0
    target = np.asarray(target) > 0
    if pred.shape != target.shape or image_rgb.shape[:2] != pred.shape:
        raise ValueError(
            f"image {image_rgb.shape[:2]}, prediction {pred.shape} and mask {target.shape} "
            "must have the same height and width"
        )
    picture = image_rgb.astype(np.float32)
    _paint(picture, pred & target, TRUE_POSITIVE.rgb, alpha)
    _paint(picture, pred & ~target, FALSE_POSITIVE.rgb, alpha)
    _paint(picture, ~pred & target, FALSE_NEGATIVE.rgb, alpha)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


def prediction_overlay(image_rgb: np.ndarray, pred: np.ndarray, *, alpha: float = 0.6) -> np.ndarray:
    """Colour the predicted mask over a picture (for images without a ground truth).

    Raises:
        ValueError: when the shapes disagree.
    """
    pred = np.asarray(pred) > 0
    if image_rgb.shape[:2] != pred.shape:
        raise ValueError(f"image {image_rgb.shape[:2]} and prediction {pred.shape} differ in size")
    picture = image_rgb.astype(np.float32)
    _paint(picture, pred, PREDICTED.rgb, alpha)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)
