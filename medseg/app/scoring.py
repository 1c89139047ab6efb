"""Predict slices at their own resolution and score them against expert masks.

Probabilities are computed once per slice (the slow part) and thresholded on demand: the
threshold slider only calls :func:`score_volume` again.

Example:
    >>> probs = slice_probabilities(loaded.model, images, image_size=256)
    >>> score_volume(probs, masks, "TCGA_CS_4941", [1, 2, 3], threshold=0.5)["dice"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medseg.errors import DataError


@dataclass
class PatientSlices:
    """A patient's slices in memory: ``images`` (N, H, W, 3) uint8, ``masks`` (N, H, W) {0, 1}."""

    name: str
    numbers: list[int]
    images: np.ndarray
    masks: np.ndarray


def read_patient_slices(patient) -> PatientSlices:
    """Read every slice and mask of a :class:`medseg.data.Patient`.

    Raises:
        DataError: when a file is unreadable, or the slices or masks differ in size.
    """
    from medseg.data import read_mask, read_slice_image

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


def slice_probabilities(model, images: np.ndarray | Sequence[np.ndarray], image_size: int) -> np.ndarray:
    """Tumour probabilities of (N, H, W, 3) uint8 slices, resized back to (N, H, W).

    Each slice goes through :func:`medseg.data.preprocess_image` (the evaluation transform)
    and :func:`medseg.engine.predict_probabilities`; the (S, S) output is resized
    bilinearly to the slice's own height and width so it lines up with its mask.

    Returns:
        float32 array in [0, 1] of shape (N, H, W).
    """
    import torch
    import torch.nn.functional as F

    from medseg.data import preprocess_image
    from medseg.engine import predict_probabilities

    images = list(images)
    if not images:
        return np.zeros((0, 0, 0), np.float32)
    height, width = images[0].shape[:2]
    if any(img.shape[:2] != (height, width) for img in images):
        raise ValueError("slice_probabilities needs slices of one size")
    batch = torch.stack([preprocess_image(img, image_size) for img in images])
    probs = predict_probabilities(model, batch).float()
    if probs.shape[-2:] != (height, width):
        probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
    return probs[:, 0].clamp_(0, 1).cpu().numpy()


def binarize(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Masks in {0, 1} (uint8): probability >= threshold."""
    return (np.asarray(probs) >= threshold).astype(np.uint8)


def _iou_from_counts(tp: int, fp: int, fn: int) -> float:
    """IoU with the empty-slice convention of :mod:`medseg.metrics` (nothing to find, nothing
    found: 1)."""
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def score_volume(
    probs: np.ndarray, masks: np.ndarray, name: str, slice_numbers: Sequence[int], threshold: float
) -> dict:
    """Score every slice of a patient or volume, and the whole of it.

    Dice comes from :func:`medseg.metrics.dice_from_counts` (IoU likewise) on the pixel counts
    of each slice, so a threshold change costs milliseconds even for 90 slices of 256x256
    (MONAI's per-slice Dice, inside :class:`~medseg.metrics.SegmentationMeter`, takes tens of
    milliseconds per slice on a CPU). The values equal :func:`~medseg.metrics.dice_score` and
    :func:`~medseg.metrics.iou_score` of each mask pair, empty-slice convention included.

    Args:
        probs: (N, H, W) probabilities.
        masks: (N, H, W) expert masks in {0, 1}.
        name: the patient or file name.
        slice_numbers: the N slice numbers shown to the user.
        threshold: a pixel is tumour when its probability is ``>= threshold``.

    Returns:
        ``dice`` and ``iou`` (means over slices), ``patient_dice`` and ``patient_iou`` (3-D:
        all slices pooled), ``per_slice`` (rows with ``patient``, ``slice``, ``dice``, ``iou``,
        ``gt_pixels``, ``pred_pixels``), ``n_slices``, ``n_empty_slices`` (no expert tumour)
        and ``n_empty_fp_slices`` (of those, with predicted tumour).
    """
    from medseg.metrics import dice_from_counts

    pred = np.asarray(probs) >= threshold
    truth = np.asarray(masks) > 0
    if pred.shape != truth.shape or len(pred) != len(slice_numbers):
        raise ValueError(
            f"probabilities {pred.shape}, masks {truth.shape} and {len(slice_numbers)} slice "
            "numbers do not match"
        )
    tps = np.count_nonzero(pred & truth, axis=(1, 2))
    fps = np.count_nonzero(pred & ~truth, axis=(1, 2))
    fns = np.count_nonzero(~pred & truth, axis=(1, 2))
    rows = [
        {"patient": name, "slice": int(number), "dice": dice_from_counts(tp, fp, fn),
         "iou": _iou_from_counts(tp, fp, fn), "gt_pixels": tp + fn, "pred_pixels": tp + fp}
        for number, tp, fp, fn in zip(slice_numbers, tps.tolist(), fps.tolist(), fns.tolist(),
                                      strict=True)
    ]
    totals = (int(tps.sum()), int(fps.sum()), int(fns.sum()))
    empty = [row for row in rows if row["gt_pixels"] == 0]
    return {
        "dice": float(np.mean([row["dice"] for row in rows])),
        "iou": float(np.mean([row["iou"] for row in rows])),
        "patient_dice": dice_from_counts(*totals),
        "patient_iou": _iou_from_counts(*totals),
        "per_slice": rows,
        "n_slices": len(rows),
        "n_empty_slices": len(empty),
        "n_empty_fp_slices": sum(1 for row in empty if row["pred_pixels"] > 0),
    }


def format_area(pixels: int, pixel_area_mm2: float | None) -> str:
    """``"412 px (103.0 mm²)"``, or ``"412 px (spacing unknown)"`` without a spacing."""
    if pixel_area_mm2 is None:
        return f"{pixels} px (spacing unknown)"
    return f"{pixels} px ({pixels * pixel_area_mm2:.1f} mm²)"
