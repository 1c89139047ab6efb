"""Caps on decoded sizes, checked from file headers before any pixel or voxel is decoded.

A small compressed file can declare an enormous image: a 100-byte PNG declaring 12000x12000
pixels decodes to 432 MB (a "decompression bomb"). Every medseg reader opens a file lazily,
reads only its header, checks the declared size against these caps, and only then decodes.

| cap | default | environment variable |
|---|---|---|
| pixels of one 2-D image (slice, mask, upload) | 25,000,000 (5000x5000) | ``MEDSEG_MAX_IMAGE_PIXELS`` |
| voxels of one NIfTI volume (all channels) | 100,000,000 (e.g. 464^3) | ``MEDSEG_MAX_VOLUME_VOXELS`` |

The variables are read at every check, so a running process follows a change. Pillow's own
guard (``PIL.Image.MAX_IMAGE_PIXELS``, refusing above 2x its 89,478,485 pixels) still applies
when the image cap is set above it.

Example:
    >>> image = load_image("slice_12.png")  # header checked first, then decoded
    >>> check_volume_shape("brain.nii.gz", nib.load("brain.nii.gz").shape)
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from medseg.errors import ConfigError, DataError
from medseg.paths import regular_file

DEFAULT_MAX_IMAGE_PIXELS = 25_000_000
DEFAULT_MAX_VOLUME_VOXELS = 100_000_000
IMAGE_PIXELS_ENV = "MEDSEG_MAX_IMAGE_PIXELS"
VOLUME_VOXELS_ENV = "MEDSEG_MAX_VOLUME_VOXELS"

_FORMAT_NAMES = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_PIL_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
#: what Pillow raises for damaged, truncated or unsupported files
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


def _cap(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{variable}={text!r}: expected a positive whole number (default {default})")
    return value


def max_image_pixels() -> int:
    """The most pixels one 2-D image may declare: ``MEDSEG_MAX_IMAGE_PIXELS`` or 25,000,000.

    Raises:
        ConfigError: when the variable is set to anything but a positive whole number.
    """
    return _cap(IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)


def max_volume_voxels() -> int:
    """The most voxels one volume may declare: ``MEDSEG_MAX_VOLUME_VOXELS`` or 100,000,000.

    Raises:
        ConfigError: when the variable is set to anything but a positive whole number.
    """
    return _cap(VOLUME_VOXELS_ENV, DEFAULT_MAX_VOLUME_VOXELS)


def check_image_size(path: str | Path, size: tuple[int, int], *, frames: bool = False) -> None:
    """Refuse an image whose header declares no pixel, too many pixels or several frames.

    Args:
        path: the file (named in the message).
        size: (width, height) as PIL's ``Image.size`` reports it from the header.
        frames: True when the file holds more than one frame (multi-page TIFF, animation).

    Raises:
        DataError: no pixel, over :func:`max_image_pixels`, or several frames.
    """
    width, height = size
    if width < 1 or height < 1:
        raise DataError(f"{path}: the image declares {width}x{height} pixels; there is no image")
    limit = max_image_pixels()
    if width * height > limit:
        raise DataError(
            f"{path}: the image declares {width}x{height} = {width * height} pixels, over the limit "
            f"of {limit} ({IMAGE_PIXELS_ENV}); refused before decoding"
        )
    if frames:
        raise DataError(f"{path}: holds several frames (multi-page or animated); expected one 2-D image")


def check_volume_shape(path: str | Path, shape: Sequence[int]) -> None:
    """Refuse a volume whose header declares no voxel or more than :func:`max_volume_voxels`.

    Raises:
        DataError: naming the file, its shape and, when too large, the limit.
    """
    declared = "x".join(str(int(n)) for n in shape)
    if min((int(n) for n in shape), default=0) < 1:
        raise DataError(f"{path}: the volume declares shape {declared}, holding no voxel; there is "
                        "no image")
    voxels = math.prod(int(n) for n in shape)
    limit = max_volume_voxels()
    if voxels > limit:
        raise DataError(
            f"{path}: the volume declares shape {declared} = {voxels} "
            f"voxels, over the limit of {limit} ({VOLUME_VOXELS_ENV}); refused before reading"
        )


def _bomb_error(path: Path, err: Image.DecompressionBombError) -> DataError:
    found = _PIL_BOMB_PIXELS.search(str(err))
    declared = f"{found.group(1)} pixels" if found else "too many pixels"
    ours = max_image_pixels()
    pillows = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else ours
    return DataError(
        f"{path}: the image declares {declared}, over the limit of {min(ours, pillows)} "
        f"({IMAGE_PIXELS_ENV}; Pillow's decompression-bomb guard); refused before decoding"
    )


def load_image(path: str | Path) -> Image.Image:
    """Open an image file lazily, check its header (:func:`check_image_size`), then decode it.

    Only a regular file is opened (:func:`~medseg.paths.regular_file`): a FIFO would block the
    open forever, a device would read without end.

    Returns:
        the decoded PIL image (its file closed), in the mode stored.

    Raises:
        DataError: naming the file when it is missing, not a regular file, unreadable,
            truncated, empty, too large or holds several frames.

    Example:
        >>> pixels = np.asarray(load_image("slice.tif"))
    """
    path = regular_file(path)
    unreadable = f"{path}: cannot read {_FORMAT_NAMES.get(path.suffix.lower(), 'image')}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Image.DecompressionBombError as err:
        raise _bomb_error(path, err) from None
    except _DECODE_ERRORS as err:
        raise DataError(f"{unreadable} ({err})") from None
    try:
        check_image_size(path, image.size, frames=bool(getattr(image, "is_animated", False)))
        image.load()
    except BaseException as err:
        image.close()
        if isinstance(err, _DECODE_ERRORS):
            raise DataError(f"{unreadable} ({err})") from None
        raise
    return image
