"""Tumour volumes of a predicted and a reference mask, and how far apart they are.

Volumes are voxel counts, and millilitres when the voxel size is known (NIfTI, DICOM):
voxels x the voxel volume (the product of the spacing in mm, / 1000). The relative volume
difference is signed, ``(predicted - reference) / reference`` (+0.3: 30% too large).
Empty masks: both empty give a difference of 0 and a relative difference of 0; a prediction
on an empty reference has an undefined relative difference (NaN); an empty prediction of a
tumour has a relative difference of -1.

Example:
    >>> volume_measures(pred, ref, voxel_volume_ml(3.0, 0.5, 2.0))["rel_volume_diff"]
    0.25
"""

from __future__ import annotations

import math

import numpy as np

MM3_PER_ML = 1000.0


def voxel_volume_ml(spacing: tuple[float, ...]) -> float:
    """One voxel's volume in mL from its edges in mm (slice, row, column: any order).

    Example:
        >>> voxel_volume_ml((3.0, 0.5, 2.0))
        0.003
    """
    return float(np.prod(spacing)) / MM3_PER_ML


def volume_measures(pred: np.ndarray, ref: np.ndarray, voxel_ml: float | None = None) -> dict[str, float]:
    """Predicted and reference volume, their absolute and relative difference.

    Args:
        pred: predicted mask; nonzero is tumour.
        ref: reference mask of the same shape.
        voxel_ml: one voxel's volume in mL, or None when the spacing is unknown.

    Returns:
        with ``voxel_ml``: ``pred_volume_ml``, ``ref_volume_ml``, ``abs_volume_diff_ml``;
        without: ``pred_volume_voxels``, ``ref_volume_voxels``, ``abs_volume_diff_voxels``;
        and ``rel_volume_diff`` (unitless, signed; NaN on an empty reference with a prediction).

    Raises:
        ValueError: when the shapes differ.
    """
    pred_a, ref_a = np.asarray(pred) != 0, np.asarray(ref) != 0
    if pred_a.shape != ref_a.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred_a.shape} and {ref_a.shape}")
    pred_voxels, ref_voxels = int(pred_a.sum()), int(ref_a.sum())
    if ref_voxels:
        relative = (pred_voxels - ref_voxels) / ref_voxels
    else:
        relative = 0.0 if pred_voxels == 0 else math.nan
    unit, scale = ("voxels", 1.0) if voxel_ml is None else ("ml", voxel_ml)
    return {
        f"pred_volume_{unit}": pred_voxels * scale,
        f"ref_volume_{unit}": ref_voxels * scale,
        f"abs_volume_diff_{unit}": abs(pred_voxels - ref_voxels) * scale,
        "rel_volume_diff": relative,
    }
