"""Pictures of the large slice view: one MRI sequence (:func:`sequence_view`), window/level,
integer zoom, mask layers filled or outlined.

A layer is a (mask, rgb) pair. :func:`compose` zooms the background and every mask by the same
integer factor first, then paints each layer in order, either filled or as its 1-px inner
outline at the display resolution. Colours and the blend come from :mod:`medseg.imaging.palette`
(as ``medseg predict``'s overlays). Pictures go to the page as PNG (:func:`png_bytes`), which is
lossless, so a mask's edge is exactly where the model put it.

Example:
    >>> import numpy as np
    >>> grey = window(np.array([[0, 100, 200]], np.uint8), low=50, high=150)
    >>> grey.tolist()
    [[0, 128, 255]]
    >>> background = np.zeros((2, 2, 3), np.uint8)
    >>> pred = np.array([[1, 0], [0, 0]])
    >>> big = compose(background, prediction_layers(pred), style="fill", opacity=1.0, factor=2)
    >>> big.shape, big[1, 1].tolist(), big[2, 2].tolist()
    ((4, 4, 3), [255, 221, 0], [0, 0, 0])
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
from matplotlib import colormaps
from PIL import Image
from skimage.segmentation import find_boundaries

from medseg.imaging.palette import ERROR_KINDS, PREDICTED, Layer, blend
from medseg.imaging.sequences import REFERENCE, SEQUENCE_NAMES, SEQUENCES

STYLES = ("fill", "outline")
#: the view of each MR sequence, as the app names it ("Pre-contrast", "FLAIR", "Post-contrast")
VIEW_NAMES = {key: SEQUENCE_NAMES[key][:1].upper() + SEQUENCE_NAMES[key][1:] for key in SEQUENCES}
#: each view of a slice and its channel (None: the RGB composite), the FLAIR first
SEQUENCE_CHANNELS: dict[str, int | None] = {
    **{VIEW_NAMES[key]: SEQUENCES.index(key) for key in sorted(SEQUENCES, key=lambda k: k != REFERENCE)},
    "RGB composite": None,
}


def sequence_view(
    image_hwc: np.ndarray, sequence: str, channels: Mapping[str, int | None] = SEQUENCE_CHANNELS
) -> np.ndarray:
    """Return one MRI sequence as a grey (H, W, 3) uint8 picture, or the RGB composite.

    Args:
        image_hwc: (H, W, 3) uint8 slice (channels: :data:`~medseg.imaging.sequences.SEQUENCES`).
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


def window(grey: np.ndarray, low: float, high: float) -> np.ndarray:
    """Window/level a uint8 (H, W) or (H, W, 3) picture.

    Args:
        grey: the picture.
        low: values at or below become 0.
        high: values at or above become 255; in between is linear (rounded to nearest).

    Returns:
        uint8 picture of the same shape.

    Raises:
        ValueError: when ``high <= low``.
    """
    if not high > low:
        raise ValueError(f"window: high ({high}) must be above low ({low})")
    scaled = (np.asarray(grey, np.float64) - low) * 255.0 / (high - low)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def upscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour zoom of an (H, W) or (H, W, C) picture: each pixel becomes factor x factor.

    Raises:
        ValueError: when ``factor`` is not an integer >= 1.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"zoom factor must be an integer >= 1, got {factor}")
    picture = np.asarray(picture)
    if picture.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) picture, got shape {picture.shape}")
    factor = int(factor)
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def _inner_outline(mask: np.ndarray) -> np.ndarray:
    # Pad with background so that the outline also closes along the picture's edge.
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    return find_boundaries(padded, mode="inner")[1:-1, 1:-1]


def compose(
    background_rgb: np.ndarray,
    layers: Iterable[Layer],
    *,
    style: Literal["fill", "outline"],
    opacity: float,
    factor: int = 1,
) -> np.ndarray:
    """Zoom a picture and its masks by ``factor``, then paint each layer over it, in order.

    Args:
        background_rgb: (H, W, 3) picture, e.g. from :func:`sequence_view`.
        layers: (mask (H, W), rgb) pairs; a later layer paints over an earlier one.
        style: "fill" paints every mask pixel; "outline" only the mask's inner boundary, 1 px
            thick at the zoomed resolution (also along the picture's edge).
        opacity: of the colours, 0 (invisible) to 1 (solid).
        factor: integer zoom, >= 1.

    Returns:
        (H * factor, W * factor, 3) uint8; pixels outside every painted mask are the zoomed
        background unchanged.

    Raises:
        ValueError: on a bad background or mask shape, style, opacity or factor.
    """
    background_rgb = np.asarray(background_rgb)
    if background_rgb.ndim != 3 or background_rgb.shape[2] != 3:
        raise ValueError(f"background must be (H, W, 3), got shape {background_rgb.shape}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    zoomed: list[Layer] = []
    for mask, rgb in layers:
        mask = np.asarray(mask)
        if mask.shape != background_rgb.shape[:2]:
            raise ValueError(
                f"mask {mask.shape} and background {background_rgb.shape[:2]} differ in size"
            )
        where = upscale(mask > 0, factor)
        zoomed.append((_inner_outline(where) if style == "outline" else where, rgb))
    return blend(upscale(background_rgb, factor), zoomed, opacity=opacity)


def error_layers(
    pred: np.ndarray, target: np.ndarray, shown: Iterable[str] = ("tp", "fp", "fn")
) -> list[Layer]:
    """True-positive, false-positive and false-negative layers, in the overlay's colours.

    Args:
        pred: (H, W) predicted mask, nonzero inside.
        target: (H, W) reference mask.
        shown: which of "tp", "fp", "fn" (keys of :data:`~medseg.imaging.palette.ERROR_KINDS`)
            to return; the layers come in that fixed order whatever the order here.

    Returns:
        (boolean mask, rgb) pairs.

    Raises:
        ValueError: on an unknown name or when the masks' shapes differ.
    """
    return [(mask, ERROR_KINDS[key].rgb) for key, mask in error_masks(pred, target, shown).items()]


def error_masks(pred: np.ndarray, target: np.ndarray, shown: Iterable[str] = tuple(ERROR_KINDS)) -> dict[str, np.ndarray]:
    """The true-positive, false-positive and false-negative masks of ``pred`` against
    ``target`` (any shape, both the same), those of ``shown`` in
    :data:`~medseg.imaging.palette.ERROR_KINDS` order.

    Raises:
        ValueError: on an unknown name or when the masks' shapes differ.
    """
    wanted = set(shown)
    unknown = wanted - set(ERROR_KINDS)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; choose from {list(ERROR_KINDS)}")
    pred, target = np.asarray(pred) > 0, np.asarray(target) > 0
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and mask {target.shape} differ in size")
    masks = {"tp": pred & target, "fp": pred & ~target, "fn": ~pred & target}
    return {key: masks[key] for key in ERROR_KINDS if key in wanted}


def prediction_layers(pred: np.ndarray) -> list[Layer]:
    """The predicted mask as one layer in the overlay's "predicted" colour (no reference)."""
    return [(np.asarray(pred) > 0, PREDICTED.rgb)]


#: the probability map's colour map (perceptually uniform, readable with colour-vision deficiencies)
PROBABILITY_COLOURS = "viridis"
#: the threshold's contour on the map, and its mark on the colour bar
THRESHOLD_RGB = (255, 255, 255)
THRESHOLD_MARK_RGB = (0, 0, 0)


def probability_lut() -> np.ndarray:
    """The map's 256 colours, (256, 3) uint8: colour k for probabilities rounding to k / 255."""
    return np.round(colormaps[PROBABILITY_COLOURS](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def probability_overlay(background_rgb: np.ndarray, prob: np.ndarray, threshold: float,
                        factor: int = 1) -> np.ndarray:
    """The model's probabilities over the MRI, upscaled ``factor`` times: each pixel blended
    with its colour at an opacity equal to its probability (p = 0 leaves the MRI as it is, p = 1
    shows the colour alone), the 1-px inner contour of p >= ``threshold`` in white.

    Example:
        >>> lut = probability_lut()
        >>> out = probability_overlay(np.zeros((1, 2, 3), np.uint8), np.array([[0.0, 1.0]]), 0.9)
        >>> out[0, 0].tolist(), out[0, 1].tolist() == list(THRESHOLD_RGB)
        ([0, 0, 0], True)
    """
    prob = upscale(np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0), factor)
    colours = probability_lut()[np.round(prob * 255).astype(np.intp)].astype(np.float32)
    alpha = prob[..., None]
    out = np.round((1 - alpha) * upscale(background_rgb, factor) + alpha * colours).astype(np.uint8)
    out[_inner_outline(prob >= threshold)] = THRESHOLD_RGB
    return out


def colour_bar(threshold: float, width: int = 256, height: int = 12) -> np.ndarray:
    """The map's colours from p = 0 (left) to 1 (right), (height, width, 3) uint8, the
    threshold's column (and its right neighbour) marked in black."""
    lut = probability_lut()
    bar = np.repeat(lut[np.round(np.linspace(0, 255, width)).astype(np.intp)][None], height, axis=0)
    column = round(threshold * (width - 1))
    bar[:, column : column + 2] = THRESHOLD_MARK_RGB
    return bar


def png_bytes(picture: np.ndarray) -> bytes:
    """Lossless PNG encoding of a uint8 (H, W) or (H, W, 3) picture.

    Raises:
        ValueError: for another dtype or shape.
    """
    picture = np.asarray(picture)
    if picture.dtype != np.uint8 or not (
        picture.ndim == 2 or (picture.ndim == 3 and picture.shape[2] == 3)
    ):
        raise ValueError(
            f"expected a uint8 (H, W) or (H, W, 3) picture, got {picture.dtype} {picture.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG")
    return buffer.getvalue()

