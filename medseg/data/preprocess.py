"""The input rule every model sees: resize, then a per-channel z-score, in plain torch.

This module is the one definition of that rule. The training and evaluation pipelines
(:mod:`medseg.data.transforms`) apply it through MONAI transforms that call these functions;
``medseg predict`` and the app apply it to images already in memory with
:func:`preprocess_image` / :func:`preprocess_patch` (through
:mod:`medseg.engine.inference`), without importing MONAI (whose ``__init__`` loads all of
its subpackages: about 3 s of a cold ``medseg predict``).

The rule reproduces MONAI's ``Resized`` (no anti-aliasing, ``align_corners`` unset) and
``NormalizeIntensityd(channel_wise=True)``: ``tests/data/test_preprocess.py`` checks the
results are bit-identical.

Example:
    >>> preprocess_image(np.zeros((256, 256, 3), np.uint8), 128).shape
    torch.Size([3, 128, 128])
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import DataError

ResizeMode = Literal["bilinear", "nearest"]


def resize(image: torch.Tensor, size: int, mode: ResizeMode = "bilinear") -> torch.Tensor:
    """Resize a (C, H, W) image to (C, size, size) as float32.

    Args:
        image: channel-first tensor.
        size: side of the square output.
        mode: ``"bilinear"`` for images, ``"nearest"`` for masks (stays binary).

    Returns:
        a float32 tensor (a new one; ``image`` itself is not changed).
    """
    if tuple(image.shape[1:]) == (size, size):
        return image.to(torch.float32, copy=True)
    resized = F.interpolate(image[None].float(), size=(size, size), mode=mode)
    return resized[0]


def standardize_channels(image: torch.Tensor) -> torch.Tensor:
    """Z-score each channel of a (C, ...) image with its own mean and population std.

    MRI and stain intensities have no absolute scale, so each image is its own reference.
    A constant channel becomes 0.

    Returns:
        a float32 tensor (a new one; ``image`` itself is not changed).
    """
    image = image.to(torch.float32, copy=True)
    for channel in image:
        mean = torch.mean(channel).item()
        std = torch.std(channel, unbiased=False).item()
        channel.copy_((channel - mean) / (std if std != 0.0 else 1.0))
    return image


def preprocess_image(image_hwc_uint8: np.ndarray, image_size: int) -> torch.Tensor:
    """The LGG input rule on one RGB slice in memory: resize to ``image_size``, z-score.

    Args:
        image_hwc_uint8: (H, W, 3) uint8, channels pre-contrast, FLAIR, post-contrast.
        image_size: side S of the output.

    Returns:
        float32 tensor (3, S, S), normalized per channel.

    Raises:
        DataError: when the array is not (H, W, 3) uint8.

    Example:
        >>> preprocess_image(np.zeros((256, 256, 3), np.uint8), 128).shape
        torch.Size([3, 128, 128])
    """
    return standardize_channels(resize(_hwc_to_chw(image_hwc_uint8, "image"), image_size))


def preprocess_patch(patch_hwc_uint8: np.ndarray) -> torch.Tensor:
    """The PCam input rule on one (96, 96, 3) uint8 patch in memory: z-score (no resize).

    Returns:
        float32 tensor (3, 96, 96), normalized per channel.

    Raises:
        DataError: when the array is not (H, W, 3) uint8.
    """
    return standardize_channels(_hwc_to_chw(patch_hwc_uint8, "patch"))


def _hwc_to_chw(array: np.ndarray, what: str) -> torch.Tensor:
    image = np.asarray(array)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(
            f"expected an (H, W, 3) uint8 {what}, got shape {image.shape} dtype {image.dtype}"
        )
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
