"""Scoring a prediction against a reference mask (``medseg predict --reference`` and the app's
expert mask): the reference read on the input's grid and checked, every measure of
:func:`~medseg.metrics.measures.patient_measures` (mm and mL for a volume, pixels for a slice)
and each lesion's match (:func:`~medseg.metrics.lesions.match_lesions`), as the report's
``reference`` section and one printed line.

Imported only when a reference is given: SciPy (the measures) is no part of a one-slice cold
start.

Example:
    >>> reference = read_reference("mask.nii.gz", jobs)
    >>> geometry = stack_geometry(volume.affine, volume.slice_transform())
    >>> score = score_reference(pred_nhw, reference, geometry, "mask.nii.gz")
    >>> score.section()["patient_measures"]["lesion_sensitivity"], score.summary()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.engine.lesions import StackGeometry
from medseg.errors import DataError
from medseg.imaging.images import read_mask
from medseg.imaging.nifti import load_mask_volume, open_nifti, read_voxels, slice_transform
from medseg.imaging.sequences import Grid, grid_difference, load_sequence_mask
from medseg.metrics.lesions import LesionMatching, MatchedLesion, match_lesions
from medseg.metrics.measures import patient_measures
from medseg.predict.inputs import read_slice
from medseg.predict.plan import Job

#: a reference lesion's status: found by the model or not (as the app's lesion table says)
DETECTED, MISSED = "detected", "missed"
#: a predicted lesion's status: on reference tumour or not
TRUE, SPURIOUS = "true", "spurious"


def _check_binary(path: Path) -> None:
    """Refuse a NIfTI mask holding values other than 0 and 1 (or 0 and 255)."""
    data, _ = read_voxels(path, open_nifti(path))
    values = np.unique(data[np.isfinite(data)])
    if not (set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {0.0, 255.0}):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise DataError(f"--reference {path}: mask is not binary (values {shown}; expected 0/1 or 0/255)")


def read_reference(path: str | Path, jobs: Sequence[Job]) -> np.ndarray:
    """The reference mask of the one planned input, (N, H, W) uint8 in {0, 1} over its slices.

    A volume's or sequence set's reference is a NIfTI mask on the input's voxel grid, read in
    the input's slice order; one slice's is a PNG/TIFF mask of its size.

    Raises:
        DataError: in one line, for several inputs or a folder, a mask that cannot be read,
            is not binary, or whose grid (shape, spacing, orientation, position) or size differs
            from the input's.
    """
    path = Path(path)
    if len(jobs) != 1 or jobs[0].kind == "folder" or (jobs[0].kind == "slice" and len(jobs[0].sources) != 1):
        count = sum(max(1, len(job.sources)) for job in jobs)
        raise DataError(f"--reference {path}: needs exactly one input (a volume, one scan's sequences "
                        f"or one slice), got {count}")
    job = jobs[0]
    if job.kind == "slice":
        mask = read_mask(path)
        image = read_slice(job.sources[0], job.sources[0] in job.grey)
        if mask.shape != image.shape[:2]:
            raise DataError(f"--reference {path}: the mask is {mask.shape[0]}x{mask.shape[1]} but "
                            f"{job.input} is {image.shape[0]}x{image.shape[1]}")
        return mask[None]
    _check_binary(path)
    if job.plan is not None:
        return load_sequence_mask(path, job.plan)
    volume_image, mask_image = open_nifti(job.input), open_nifti(path)
    difference = (grid_difference(_grid(mask_image.shape, mask_image.affine), _grid(volume_image.shape, volume_image.affine))
                  if len(mask_image.shape) >= 3 else None)  # any other shape: load_mask_volume says
    if difference is not None:
        raise DataError(f"--reference {path} and {job.input} differ in {difference}; the mask must be "
                        "on the input's voxel grid")
    return load_mask_volume(path, to_slices=slice_transform(volume_image.affine))


def _grid(shape: tuple[int, ...], affine: np.ndarray) -> Grid:
    return Grid((int(shape[0]), int(shape[1]), int(shape[2])), affine)


def _finite_or_none(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _lesion_rows(lesions: Sequence[MatchedLesion], found: str, not_found: str) -> list[dict[str, Any]]:
    return [{"label": lesion.label, "status": found if lesion.matched else not_found,
             "voxels": lesion.voxels, "slices": list(lesion.slices), "widest_slice": lesion.widest_slice,
             "partners": list(lesion.partners)} for lesion in lesions]


@dataclass(frozen=True)
class ReferenceScore:
    """A prediction scored against a reference mask.

    Attributes:
        mask: the reference mask's name (as given).
        measures: the :func:`~medseg.metrics.measures.patient_measures` row (NaN: undefined).
        matching: the reference and predicted lesions, each with its partners.
    """

    mask: str
    measures: dict[str, float | int]
    matching: LesionMatching

    def section(self) -> dict[str, Any]:
        """The report's ``reference`` section: ``mask``, ``patient_measures`` (NaN as null),
        ``lesions``: ``reference`` (each ``detected`` or ``missed``) and ``predicted`` (each
        ``true`` or ``spurious``), largest first, slices numbered from 1."""
        return {
            "mask": self.mask,
            "patient_measures": {key: _finite_or_none(value) for key, value in self.measures.items()},
            "lesions": {"reference": _lesion_rows(self.matching.reference, DETECTED, MISSED),
                        "predicted": _lesion_rows(self.matching.predicted, TRUE, SPURIOUS)},
        }

    def summary(self) -> str:
        """One line: Dice, HD95 and the reference lesions found and missed."""
        hd95 = next(key for key in self.measures if key.startswith("hd95_"))
        value, unit = self.measures[hd95], hd95.rpartition("_")[2]
        distance = "undefined" if math.isnan(value) else f"{value:.2f} {unit}"
        m = self.measures
        return (f"against {self.mask}: Dice {m['dice']:.3f}, HD95 {distance}, lesions found "
                f"{m['detected_lesions']} of {m['ref_lesions']}, missed {m['missed_lesions']}, "
                f"spurious {m['spurious_lesions']}")


def score_reference(pred_nhw: np.ndarray, ref_nhw: np.ndarray, geometry: StackGeometry | None,
                    mask: str) -> ReferenceScore:
    """Score a predicted (N, H, W) mask against a reference of the same shape.

    Args:
        geometry: the volume's slice spacing and voxel volume
            (:func:`~medseg.engine.lesions.stack_geometry`, as the lesion report reads them);
            None for a slice (distances in pixels, volumes in voxels).
        mask: the reference's name, for the report and the line.
    """
    measures = (patient_measures(pred_nhw, ref_nhw) if geometry is None else
                patient_measures(pred_nhw, ref_nhw, geometry.spacing, voxel_ml=geometry.voxel_ml))
    return ReferenceScore(mask, measures, match_lesions(pred_nhw, ref_nhw))
