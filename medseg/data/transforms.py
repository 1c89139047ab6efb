"""MONAI dictionary transforms for LGG slices and PCam patches.

Pipelines (``augment`` adds the bracketed steps, training split only):

- LGG: read slice + mask -> resize to ``image_size`` (bilinear image, nearest mask)
  -> [random left-right flip, random rotation +-15 deg and scale 0.9-1.1, same for image and
  mask, nearest for the mask so it stays binary] -> per-channel z-score of the image
  -> [random per-channel intensity scale and shift] -> plain float32 tensors.
- PCam: read patch (lazily from HDF5) -> [random flips and 90-degree rotations]
  -> per-channel z-score -> [random per-channel intensity scale and shift].

The z-score uses each image's own per-channel mean and standard deviation (MRI intensities
have no absolute scale); a constant channel becomes 0. Geometric augmentation runs before
the z-score so that the zero padding of rotations matches the black background.

Example:
    >>> pipeline = lgg_transforms(128, augment=True)
    >>> sample = pipeline({"image": "P_1.tif", "label": "P_1_mask.tif", "patient": "P", "slice": 1})
    >>> sample["image"].shape, sample["label"].shape
    (torch.Size([3, 128, 128]), torch.Size([1, 128, 128]))
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    Transform,
)

from medseg.data.lgg import read_mask, read_slice_image
from medseg.errors import DataError, MedsegError

IMAGE = "image"
LABEL = "label"
KEYS = (IMAGE, LABEL)

_tracking_lock = threading.Lock()
_tracking_state = {"users": 0, "previous": True}


@contextmanager
def _metadata_tracking_off() -> Iterator[None]:
    """Switch MONAI's global MetaTensor tracking off while any pipeline runs (thread-safe)."""
    with _tracking_lock:
        if _tracking_state["users"] == 0:
            _tracking_state["previous"] = get_track_meta()
            set_track_meta(False)
        _tracking_state["users"] += 1
    try:
        yield
    finally:
        with _tracking_lock:
            _tracking_state["users"] -= 1
            if _tracking_state["users"] == 0:
                set_track_meta(_tracking_state["previous"])


@contextmanager
def unwrap_medseg_errors() -> Iterator[None]:
    """Re-raise a :class:`~medseg.errors.MedsegError` that MONAI wrapped in a RuntimeError.

    MONAI's ``apply_transform`` turns every error into ``RuntimeError("applying transform
    ...")``; the user should see the one-line message of the original error instead.
    """
    try:
        yield
    except RuntimeError as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MedsegError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


class PlainCompose(Compose):
    """A MONAI ``Compose`` run on plain tensors, without MetaTensor tracking.

    These 2-D pipelines never invert a transform, and tracking metadata roughly doubles
    their cost (every step wraps its output and records itself). MONAI's switch is global:
    it is turned off only while a pipeline runs and restored afterwards.

    A :class:`~medseg.errors.MedsegError` of a step (an unreadable slice, say) comes out as
    itself, not wrapped by MONAI (see :func:`unwrap_medseg_errors`).
    """

    def __call__(
        self,
        input_: Any,
        start: int = 0,
        end: int | None = None,
        threading: bool = False,
        lazy: bool | None = None,
    ) -> Any:
        with _metadata_tracking_off(), unwrap_medseg_errors():
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)


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


def _intensity_augmentation() -> list[Transform]:
    return [
        RandScaleIntensityd(keys=IMAGE, factors=0.1, prob=0.5, channel_wise=True),
        RandShiftIntensityd(keys=IMAGE, offsets=0.1, prob=0.5, channel_wise=True),
    ]


def _normalize() -> list[Transform]:
    return [
        NormalizeIntensityd(keys=IMAGE, channel_wise=True),
        EnsureTyped(keys=KEYS, dtype=torch.float32, track_meta=False, allow_missing_keys=True),
    ]


def lgg_transforms(image_size: int, *, augment: bool) -> PlainCompose:
    """The LGG pipeline from a record ``{"image": path, "label": path, ...}`` to tensors.

    Args:
        image_size: side S of the square output, (3, S, S) and (1, S, S).
        augment: add random flips, rotations, scaling and intensity jitter (training).
    """
    steps: list[Transform] = [
        LoadLGGSliced(),
        Resized(
            keys=KEYS,
            spatial_size=(image_size, image_size),
            mode=("bilinear", "nearest"),
            allow_missing_keys=True,
        ),
    ]
    if augment:
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
        affine.rand_affine.resampler.dtype = torch.float32
        steps += [RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1), affine]
    normalize, to_tensor = _normalize()
    steps.append(normalize)
    if augment:
        steps += _intensity_augmentation()
    steps.append(to_tensor)
    return PlainCompose(steps)


def pcam_transforms(loader: Transform, *, augment: bool) -> PlainCompose:
    """The PCam pipeline from ``{"index": i}`` to tensors; ``loader`` reads the patch.

    Args:
        loader: a transform adding ``image`` float32 (3, 96, 96) and ``label`` (1,), e.g.
            :class:`~medseg.data.pcam.LoadPCamPatchd`.
        augment: add random flips, 90-degree rotations and intensity jitter (training).
    """
    steps: list[Transform] = [loader]
    if augment:
        steps += [
            RandFlipd(keys=IMAGE, prob=0.5, spatial_axis=0),
            RandFlipd(keys=IMAGE, prob=0.5, spatial_axis=1),
            RandRotate90d(keys=IMAGE, prob=0.5, spatial_axes=(0, 1)),
        ]
    normalize, to_tensor = _normalize()
    steps.append(normalize)
    if augment:
        steps += _intensity_augmentation()
    steps.append(to_tensor)
    return PlainCompose(steps)


@functools.lru_cache(maxsize=8)
def _image_eval_transform(image_size: int) -> PlainCompose:
    # The evaluation pipeline without its file reader: identical steps, identical settings.
    return PlainCompose(lgg_transforms(image_size, augment=False).transforms[1:])


def preprocess_image(image_hwc_uint8: np.ndarray, image_size: int) -> torch.Tensor:
    """Apply exactly the LGG evaluation transform to one RGB slice already in memory.

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
    image = np.asarray(image_hwc_uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(
            f"expected an (H, W, 3) uint8 image, got shape {image.shape} dtype {image.dtype}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    return _image_eval_transform(image_size)({IMAGE: tensor})[IMAGE]
