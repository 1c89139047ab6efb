"""A patient's slices in memory, scored against their reference masks.

Probabilities come from :func:`medseg.engine.slice_probabilities` once per slice (the slow
part) and are thresholded on demand: the threshold slider only calls :func:`score_volume`.

Example:
    >>> probs = slice_probabilities(loaded.model, case.images, image_size=128)
    >>> score_volume(probs, case.masks, case.name, case.numbers, threshold=0.5)["dice"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.data.lgg import Patient
from medseg.errors import DataError
from medseg.imaging.images import read_mask, read_slice_image
from medseg.metrics import SegmentationMeter


@dataclass
class PatientSlices:
    """A patient's slices in memory: ``images`` (N, H, W, 3) uint8, ``masks`` (N, H, W) {0, 1}."""

    name: str
    numbers: list[int]
    images: np.ndarray
    masks: np.ndarray


def read_patient_slices(patient: Patient) -> PatientSlices:
    """Read every slice and mask of a :class:`medseg.data.Patient`.

    Raises:
        DataError: when a file is unreadable, or the slices or masks differ in size.
    """
    images, masks = [], []
    for item in patient.slices:
        images.append(read_slice_image(item.image_path))
        masks.append(read_mask(item.mask_path))
        if masks[-1].shape != images[-1].shape[:2] or images[-1].shape != images[0].shape:
            raise DataError(
                f"{item.image_path}: slice or mask size {images[-1].shape[:2]}/{masks[-1].shape} "
                f"differs from the patient's first slice {images[0].shape[:2]}"
            )
    return PatientSlices(patient.name, [item.index for item in patient.slices],
                         np.stack(images), np.stack(masks))


def score_volume(
    probs: np.ndarray, masks: np.ndarray, name: str, slice_numbers: Sequence[int], threshold: float
) -> dict[str, Any]:
    """Score every slice of one patient or volume with :class:`~medseg.metrics.SegmentationMeter`.

    The meter works on confusion counts, so a threshold change costs milliseconds even for
    90 slices of 256x256; the numbers are those of training validation and ``medseg
    evaluate`` for the same probabilities.

    Args:
        probs: (N, H, W) probabilities at the slices' native size.
        masks: (N, H, W) reference masks in {0, 1}.
        name: the patient or file name.
        slice_numbers: the N slice numbers shown to the user.
        threshold: a pixel is tumour when its probability is ``>= threshold``.

    Returns:
        :meth:`SegmentationMeter.compute`'s dict (``dice``, ``iou``, ``patient_dice``,
        ``patient_iou``, ``per_slice``, ``n_empty_slices``, ``n_empty_fp_slices`` ...).

    Raises:
        ValueError: when the shapes or the number of slice numbers do not match.
    """
    meter = SegmentationMeter(threshold=threshold)
    # the app's cached arrays are read-only; torch wants writable memory (it never writes here)
    probs, masks = np.require(probs, requirements="W"), np.require(masks, requirements="W")
    meter.update(probs, masks, [name] * len(slice_numbers), slice_numbers)
    return meter.compute()


def format_area(pixels: int, pixel_area_mm2: float | None) -> str:
    """``"412 px (103.0 mm²)"``, or ``"412 px (spacing unknown)"`` without a spacing."""
    if pixel_area_mm2 is None:
        return f"{pixels} px (spacing unknown)"
    return f"{pixels} px ({pixels * pixel_area_mm2:.1f} mm²)"
