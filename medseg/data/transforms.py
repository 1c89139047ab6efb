"""MONAI dictionary transforms for LGG slices and PCam patches.

Pipelines (``augment`` adds the bracketed steps, training split only):

- LGG: read slice + mask -> resize to ``image_size`` (bilinear image, nearest mask)
  -> [random left-right flip, random rotation +-15 deg and scale 0.9-1.1, same for image and
  mask, nearest for the mask so it stays binary] -> per-channel z-score of the image
  -> [random per-channel intensity scale and shift] -> plain float32 tensors.
- PCam: read patch (lazily from HDF5) -> [random flips and 90-degree rotations]
  -> per-channel z-score -> [random per-channel intensity scale and shift].

The resize and the z-score are :mod:`medseg.data.preprocess`'s (the one definition of the
input rule, which ``medseg predict`` and the app apply without MONAI): each image's own
per-channel mean and standard deviation (MRI intensities have no absolute scale); a constant
channel becomes 0. Geometric augmentation runs before the z-score so that the zero padding
of rotations matches the black background.

Example:
    >>> pipeline = lgg_transforms(128, augment=True)
    >>> sample = pipeline({"image": "P_1.tif", "label": "P_1_mask.tif", "patient": "P", "slice": 1})
    >>> sample["image"].shape, sample["label"].shape
    (torch.Size([3, 128, 128]), torch.Size([1, 128, 128]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch
from monai.data import set_track_meta
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Transform,
)

from medseg.data.preprocess import ResizeMode, resize, standardize_channels
from medseg.errors import DataError
from medseg.imaging.images import read_mask, read_slice_image

IMAGE = "image"
LABEL = "label"
KEYS = (IMAGE, LABEL)


def use_plain_tensors() -> None:
    """Switch MONAI's MetaTensor tracking off for the whole process; call it once at start-up.

    medseg's pipelines never invert a transform, and tracking metadata roughly doubles their
    cost (every step wraps its output and records itself). The pipelines return plain
    tensors either way (their last step drops the metadata): this only makes them faster.
    The ``medseg`` commands that run pipelines (train, evaluate, compare) and the compare
    worker call it before loading data; a library user calls it the same way, unless other
    MONAI code in the process needs MetaTensors.

    The switch is MONAI's global ``set_track_meta``: DataLoader workers inherit it when they
    are forked (Linux), not when they are spawned (macOS, Windows).

    Example:
        >>> use_plain_tensors()
        >>> datasets = build_datasets(cfg.data, seed=0)
    """
    set_track_meta(False)


class LoadLGGSliced(Transform):
    """Replace the paths under ``image`` and ``label`` by the slice and its mask.

    Reads with :func:`~medseg.data.lgg.read_slice_image` / :func:`~medseg.data.lgg.read_mask`
    (Pillow, rows and columns as stored: never transposed) and converts to float32 at once.

    Returns:
        the dict with ``image`` float32 (3, H, W) in 0..255 and ``label`` float32 (1, H, W)
        in {0, 1}; other keys unchanged.

    Raises:
        DataError: when a file is unreadable or not an RGB slice / binary mask.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        sample = dict(data)
        image = read_slice_image(sample[IMAGE])
        mask = read_mask(sample[LABEL])
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{sample[LABEL]}: mask is {mask.shape[0]}x{mask.shape[1]} but its image is "
                f"{image.shape[0]}x{image.shape[1]}"
            )
        sample[IMAGE] = torch.from_numpy(image).permute(2, 0, 1).float()
        sample[LABEL] = torch.from_numpy(mask)[None].float()
        return sample


class ResizeSliced(Transform):
    """Resize ``image`` (bilinear) and, when present, ``label`` (nearest: stays binary) to
    ``image_size`` x ``image_size`` with :func:`medseg.data.preprocess.resize`.

    Args:
        image_size: side S of the output.
        keys: the keys to resize (``image`` and optionally ``label``).
    """

    def __init__(self, image_size: int, keys: tuple[str, ...] = KEYS) -> None:
        self.image_size = image_size
        self.keys = keys

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        sample = dict(data)
        for key in self.keys:
            if key in sample:
                mode: ResizeMode = "bilinear" if key == IMAGE else "nearest"
                sample[key] = resize(sample[key], self.image_size, mode)
        return sample


class StandardizeImaged(Transform):
    """Z-score ``image`` per channel with :func:`medseg.data.preprocess.standardize_channels`."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        sample = dict(data)
        sample[IMAGE] = standardize_channels(sample[IMAGE])
        return sample


def _intensity_augmentation() -> list[Transform]:
    return [
        RandScaleIntensityd(keys=IMAGE, factors=0.1, prob=0.5, channel_wise=True),
        RandShiftIntensityd(keys=IMAGE, offsets=0.1, prob=0.5, channel_wise=True),
    ]


def _to_tensor() -> Transform:
    return EnsureTyped(keys=KEYS, dtype=torch.float32, track_meta=False, allow_missing_keys=True)


def _lgg_geometric_augmentation() -> list[Transform]:
    affine = RandAffined(
        keys=KEYS,
        prob=0.5,
        rotate_range=math.radians(15),
        scale_range=0.1,
        mode=("bilinear", "nearest"),
        padding_mode="zeros",
    )
    # RandAffined resamples in float64 and has no option to change it; float32 is ample
    # for 8-bit images and halves the cost of this step.
    affine.rand_affine.resampler.dtype = torch.float32  # type: ignore[assignment]  # MONAI's stub says numpy dtype; torch's is honoured
    return [RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1), affine]


def lgg_transforms(image_size: int, *, augment: bool, native_label: bool = False) -> Compose:
    """The LGG pipeline from a record ``{"image": path, "label": path, ...}`` to tensors.

    Args:
        image_size: side S of the square output image (3, S, S).
        augment: add random flips, rotations, scaling and intensity jitter (training).
        native_label: evaluation: keep the mask at the slice's own size (1, H, W) instead
            of resizing it to (1, S, S), so that scores are computed at the data's native
            resolution whatever the training size (see
            :func:`medseg.engine.inference.predict_probabilities`).

    Raises:
        ValueError: for ``augment`` with ``native_label`` (augmentation moves image and mask
            together, so both must have the same size).
    """
    if augment and native_label:
        raise ValueError("lgg_transforms: augment and native_label exclude each other")
    if native_label:
        return Compose([LoadLGGSliced(), ResizeSliced(image_size, (IMAGE,)), StandardizeImaged(), _to_tensor()])
    steps: list[Transform] = [LoadLGGSliced(), ResizeSliced(image_size)]
    if augment:
        steps += [*_lgg_geometric_augmentation(), StandardizeImaged(), *_intensity_augmentation()]
    else:
        steps.append(StandardizeImaged())
    return Compose([*steps, _to_tensor()])


def pcam_transforms(
    loader: Callable[[Mapping[Hashable, Any]], dict[Hashable, Any]], *, augment: bool
) -> Compose:
    """The PCam pipeline from ``{"index": i}`` to tensors; ``loader`` reads the patch.

    Args:
        loader: a transform adding ``image`` float32 (3, 96, 96) and ``label`` (1,), e.g.
            :class:`~medseg.data.pcam.LoadPCamPatchd`.
        augment: add random flips, 90-degree rotations and intensity jitter (training).
    """
    if not augment:
        return Compose([loader, StandardizeImaged(), _to_tensor()])
    flips = [
        RandFlipd(keys=IMAGE, prob=0.5, spatial_axis=0),
        RandFlipd(keys=IMAGE, prob=0.5, spatial_axis=1),
        RandRotate90d(keys=IMAGE, prob=0.5, spatial_axes=(0, 1)),
    ]
    return Compose([loader, *flips, StandardizeImaged(), *_intensity_augmentation(), _to_tensor()])
