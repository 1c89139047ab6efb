"""Lesions of a predicted tumour mask: 3-D connected components, their volume and size.

- Lesions are the connected components of the mask in 3-D with 26-connectivity (voxels that
  share a face, an edge or a corner belong to one lesion), counted in voxel index space
  whatever the spacing, numbered largest first: :func:`medseg.metrics.lesions.label_lesions`,
  the labelling the lesion-wise measures use too.
- Volumes: voxels x the voxel volume, ``|det|`` of the affine's 3x3 in mm^3 / 1000, in mL (for
  an orthogonal grid, the product of the voxel sizes).
- Largest in-plane diameter: the largest Feret diameter of the lesion over its slices, the
  largest distance between the centres of two of its pixels on one slice, in mm with that
  slice's row and column spacing (so anisotropic pixels count right). Exact: the farthest
  pair lies on the convex hull, whose vertices are among the leftmost and rightmost pixels of
  each row. One pixel measures 0 mm.
- Slices are numbered from 1 in the stack's order (as the ``<name>_<k>_pred.png`` files);
  centroids are 0-based voxel indices of the written mask file (its voxel order, as nibabel
  reads it) and world positions (RAS mm).

Example:
    >>> report = lesion_report(masks_nhw, volume.affine, volume.slice_transform())
    >>> report["n_lesions"], report["tumour_volume_ml"]
    (2, 13.7)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import pdist

from medseg.metrics.lesions import label_lesions
from medseg.metrics.volume import MM3_PER_ML
from medseg.metrics.volume import voxel_volume_ml as spacing_voxel_ml


@dataclass(frozen=True)
class Lesion:
    """One connected component of a mask (module docstring).

    Attributes:
        label: 1 for the largest lesion, 2 for the next, ...
        voxels: its voxel count.
        volume_ml: its volume.
        largest_in_plane_diameter_mm: its largest Feret diameter over its slices.
        slices: first and last slice holding it, numbered from 1.
        centroid: its mean voxel position in the stack's axes (slice, row, column), 0-based.
    """

    label: int
    voxels: int
    volume_ml: float
    largest_in_plane_diameter_mm: float
    slices: tuple[int, int]
    centroid: tuple[float, float, float]


def feret_diameter_mm(mask_hw: np.ndarray, spacing_hw: tuple[float, float]) -> float:
    """The largest distance (mm) between the centres of two foreground pixels of one slice.

    Args:
        mask_hw: (H, W) mask; nonzero is foreground.
        spacing_hw: mm between rows and between columns.

    Example:
        >>> feret_diameter_mm(np.ones((3, 4)), (0.5, 2.0))  # sqrt(1.0**2 + 6.0**2)
        6.08276253029822
    """
    rows, columns = np.nonzero(mask_hw)  # row-major: each row's pixels left to right
    if rows.size < 2:
        return 0.0
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:] - 1, rows.size - 1]
    ends_of_rows = np.union1d(starts, ends)
    points = np.stack([rows[ends_of_rows] * spacing_hw[0], columns[ends_of_rows] * spacing_hw[1]],
                      axis=1).astype(float)
    return float(pdist(points).max())


def find_lesions(
    mask_nhw: np.ndarray, spacing_nhw: tuple[float, float, float], voxel_volume_ml: float | None = None
) -> list[Lesion]:
    """The lesions of a mask, largest first (module docstring).

    Args:
        mask_nhw: (N, H, W) mask (slices, rows, columns); nonzero is tumour.
        spacing_nhw: mm between slices, rows and columns.
        voxel_volume_ml: one voxel's volume; default the product of ``spacing_nhw`` / 1000.

    Example:
        >>> [lesion.voxels for lesion in find_lesions(mask, (3.0, 0.9, 0.9))]
        [412, 35]
    """
    mask = np.asarray(mask_nhw) != 0
    if voxel_volume_ml is None:
        voxel_volume_ml = spacing_voxel_ml(spacing_nhw)
    labels, count = label_lesions(mask)
    found = []
    for label, box in enumerate(ndimage.find_objects(labels, max_label=count), start=1):
        assert box is not None  # label_lesions numbers its lesions 1..count
        inside = labels[box] == label
        diameter = max(feret_diameter_mm(plane, (spacing_nhw[1], spacing_nhw[2])) for plane in inside)
        offset = np.array([s.start for s in box], dtype=float)
        centroid = np.argwhere(inside).mean(axis=0) + offset
        planes = np.flatnonzero(inside.any(axis=(1, 2))) + box[0].start + 1
        voxels = int(inside.sum())
        found.append(Lesion(label, voxels, voxels * voxel_volume_ml, diameter,
                            (int(planes[0]), int(planes[-1])),
                            (float(centroid[0]), float(centroid[1]), float(centroid[2]))))
    return found


def _file_voxel(point: tuple[float, float, float], to_slices: np.ndarray,
                stack_shape: tuple[int, ...]) -> np.ndarray:
    """A position in the stack's axes as a voxel position of the file (``to_slices`` undone)."""
    voxel = np.empty(3)
    for axis, (target, flip) in enumerate(np.asarray(to_slices)):
        value = point[int(target)]
        voxel[axis] = value if flip > 0 else stack_shape[int(target)] - 1 - value
    return voxel


def _stack_spacing(spacing: np.ndarray, to_slices: np.ndarray) -> tuple[float, float, float]:
    """The file's voxel sizes in the stack's axes (slice, row, column)."""
    out = [0.0, 0.0, 0.0]
    for axis, (target, _) in enumerate(np.asarray(to_slices)):
        out[int(target)] = float(spacing[axis])
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class StackGeometry:
    """A volume's slice stack in millimetres: ``spacing`` between slices, rows and columns
    (the affine's column norms) and one voxel's volume ``voxel_ml`` (|det| of the affine / 1000:
    the true volume, also under a gantry tilt's shear, where the norms' product is larger)."""

    spacing: tuple[float, float, float]
    voxel_ml: float


def stack_geometry(affine: np.ndarray, to_slices: np.ndarray) -> StackGeometry:
    """The :class:`StackGeometry` of a volume's slices (``to_slices``: a nibabel ``ornt``,
    :meth:`~medseg.imaging.nifti.Volume.slice_transform`): the one voxel-size rule of the lesion
    report and the reference measures."""
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    spacing = _stack_spacing(np.linalg.norm(matrix, axis=0), to_slices)
    return StackGeometry(spacing, abs(float(np.linalg.det(matrix))) / MM3_PER_ML)


def lesion_report(mask_nhw: np.ndarray, affine: np.ndarray, to_slices: np.ndarray) -> dict[str, Any]:
    """The lesion part of a prediction report, as JSON-ready values.

    Args:
        mask_nhw: (N, H, W) mask over the volume's slices; nonzero is tumour.
        affine: the written mask file's voxel-to-world affine (RAS mm).
        to_slices: how the file's voxel axes became the slice axes (a nibabel ``ornt``,
            :meth:`~medseg.imaging.nifti.Volume.slice_transform`).

    Returns:
        ``voxel_size_mm`` ([x, y, z]: the affine's column norms, file order),
        ``voxel_volume_ml``, ``tumour_voxels``, ``tumour_volume_ml``, ``lesions`` (largest
        first: ``label``, ``voxels``, ``volume_ml``, ``largest_in_plane_diameter_mm``,
        ``slices`` [first, last] from 1, ``centroid_voxel`` [i, j, k] 0-based in file order,
        ``centroid_mm`` RAS) and ``n_lesions``.

    Example:
        >>> lesion_report(np.zeros((4, 8, 8)), np.eye(4), volume.slice_transform())["n_lesions"]
        0
    """
    mask = np.asarray(mask_nhw) != 0
    spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    geometry = stack_geometry(affine, to_slices)
    voxel_ml = geometry.voxel_ml
    lesions = find_lesions(mask, geometry.spacing, voxel_ml)
    listed = []
    for lesion in lesions:
        voxel = _file_voxel(lesion.centroid, to_slices, mask.shape)
        world = np.asarray(affine, dtype=float) @ np.r_[voxel, 1.0]
        listed.append({
            "label": lesion.label,
            "voxels": lesion.voxels,
            "volume_ml": round(lesion.volume_ml, 6),
            "largest_in_plane_diameter_mm": round(lesion.largest_in_plane_diameter_mm, 3),
            "slices": list(lesion.slices),
            "centroid_voxel": [round(float(v), 2) for v in voxel],
            "centroid_mm": [round(float(v), 2) for v in world[:3]],
        })
    voxels = int(mask.sum())
    return {
        "voxel_size_mm": [round(float(v), 6) for v in spacing],
        "voxel_volume_ml": round(voxel_ml, 9),
        "tumour_voxels": voxels,
        "tumour_volume_ml": round(voxels * voxel_ml, 6),
        "lesions": listed,
        "n_lesions": len(listed),
    }
