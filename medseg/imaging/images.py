"""2-D image files: an RGB slice and a binary mask, each header-checked before decoding.

Example:
    >>> read_slice_image("TCGA_CS_4941_19960909_1.tif").shape
    (256, 256, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.imaging.limits import load_image


def read_slice_image(path: str | Path) -> np.ndarray:
    """Read an RGB slice as an (H, W, 3) uint8 array (rows top to bottom, as stored).

    The header is checked against :func:`~medseg.imaging.limits.max_image_pixels` first.

    Raises:
        DataError: when the file is unreadable, too large or not an 8-bit RGB image.
    """
    path = Path(path)
    image = load_image(path)
    if image.mode != "RGB":
        raise DataError(f"{path}: expected an 8-bit RGB slice, got PIL mode {image.mode!r}")
    return np.array(image)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask as an (H, W) uint8 array in {0, 1} (files hold 0/255 or 0/1).

    The header is checked against :func:`~medseg.imaging.limits.max_image_pixels` first.

    Raises:
        DataError: when the file is unreadable, too large, not single-channel 8-bit, or not
            binary.
    """
    path = Path(path)
    image = load_image(path)
    if image.mode not in ("L", "1"):
        raise DataError(f"{path}: expected a single-channel 8-bit mask, got PIL mode {image.mode!r}")
    mask = np.asarray(image, dtype=np.uint8)
    values = set(np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        ordered = sorted(values)
        shown = ", ".join(map(str, ordered[:6])) + (", ..." if len(ordered) > 6 else "")
        raise DataError(f"{path}: mask is not binary (values {shown}; expected 0/255 or 0/1)")
    return (mask > 0).astype(np.uint8)
