"""Boundary distances between a predicted and a reference mask, by MONAI's implementations.

One call of :func:`monai.metrics.utils.get_edge_surface_distance` (``symmetric=True``) finds
both boundaries and the distances from each boundary voxel to the other boundary, in both
directions; they are reduced exactly as MONAI's metrics reduce them (a test checks the three
numbers against these functions on random masks, with and without a spacing):

- HD95, as :func:`monai.metrics.compute_hausdorff_distance` with ``percentile=95``: for each
  direction (prediction to reference, reference to prediction), the 95th percentile
  (``torch.quantile``) of that direction's distances; the larger of the two.
- ASSD, as :func:`monai.metrics.compute_average_surface_distance` with ``symmetric=True``:
  the mean of both directions' distances pooled.
- NSD, as :func:`monai.metrics.compute_surface_dice` at a tolerance: the share of both masks'
  boundary voxels lying within ``tolerance`` (``<=``) of the other mask's boundary.

The three functions would find the boundaries three times over; one pass costs a third.
Boundaries are MONAI's (a mask minus its binary erosion), distances Euclidean between voxel
centres with the spacing (mm), or in grid steps when the spacing is unknown. MONAI returns
NaN or inf when a mask is empty; medseg never passes it an empty mask and applies its own
rules instead: both empty give HD95 = ASSD = 0 and NSD = 1 (nothing to find, nothing found);
exactly one empty gives HD95 and ASSD undefined (NaN: no boundary to measure to) and NSD = 0
(no boundary point lies within the tolerance of a boundary that does not exist).

Example:
    >>> surface_measures(pred, ref, spacing=(3.0, 0.9, 0.9), tolerance=2.0).hd95
    2.7
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: the normalized surface Dice tolerance (mm, or grid steps without a spacing)
DEFAULT_TOLERANCE = 2.0


@dataclass(frozen=True)
class SurfaceMeasures:
    """HD95, ASSD (NaN when undefined) and NSD of one mask pair, in the spacing's unit."""

    hd95: float
    assd: float
    nsd: float


def surface_measures(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> SurfaceMeasures:
    """HD95, ASSD and NSD of a 2-D slice or a 3-D stack (module docstring for the rules).

    Args:
        pred: predicted mask, (H, W) or (N, H, W); nonzero is tumour.
        ref: reference mask of the same shape.
        spacing: mm between voxel centres along each axis of the masks; None for grid steps.
        tolerance: the NSD tolerance, in the unit of the distances.

    Raises:
        ValueError: when the shapes differ, the spacing does not give one positive size per
            axis, or the tolerance is negative or not finite.
    """
    pred_a, ref_a = np.asarray(pred) != 0, np.asarray(ref) != 0
    if pred_a.shape != ref_a.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred_a.shape} and {ref_a.shape}")
    if spacing is not None and (len(spacing) != pred_a.ndim
                                or not all(math.isfinite(s) and s > 0 for s in spacing)):
        raise ValueError(f"spacing {tuple(spacing)}: expected {pred_a.ndim} positive sizes")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance {tolerance}: expected a finite distance >= 0")
    pred_any, ref_any = bool(pred_a.any()), bool(ref_a.any())
    if not pred_any and not ref_any:
        return SurfaceMeasures(0.0, 0.0, 1.0)
    if not (pred_any and ref_any):
        return SurfaceMeasures(math.nan, math.nan, 0.0)

    # MONAI costs seconds to import: only when a distance is due
    from monai.metrics.utils import get_edge_surface_distance

    box = _union_box(pred_a | ref_a)
    grid = None if spacing is None else [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI's own use of its deprecated get_mask_edges argument
        warnings.simplefilter("ignore", FutureWarning)
        _, distances, _ = get_edge_surface_distance(
            torch.from_numpy(pred_a[box]), torch.from_numpy(ref_a[box]), spacing=grid, symmetric=True)
    pred_to_ref, ref_to_pred = tuple(distances)
    both = torch.cat([pred_to_ref, ref_to_pred]).double()
    hd95 = max(float(torch.quantile(d.double(), 0.95)) for d in (pred_to_ref, ref_to_pred))
    nsd = float((both <= tolerance).sum()) / both.numel()
    return SurfaceMeasures(hd95, float(both.mean()), nsd)


def _union_box(union: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of both masks. MONAI crops to it (with a one-voxel margin it pads
    itself) before finding boundaries, so the distances are unchanged; cropping here first
    spares MONAI's cropper the whole 256 x 256 x N array, its slow part."""
    box = []
    for axis in range(union.ndim):
        held = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(int(held[0]), int(held[-1]) + 1))
    return tuple(box)
