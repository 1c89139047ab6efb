"""Every measure of one patient in one row, its slices' boundary distances, and the summary.

A patient's row (:func:`patient_measures`) holds its 3-D Dice and IoU
(:func:`~medseg.metrics.segmentation.dice_from_counts`), HD95, ASSD and NSD
(:mod:`medseg.metrics.surface`), volumes (:mod:`medseg.metrics.volume`) and lesion-wise
detection (:mod:`medseg.metrics.lesions`), each with that module's empty-mask rule; NaN marks
a value that is undefined. Column names carry their unit: ``hd95_mm`` / ``pred_volume_ml``
when the spacing is known, ``hd95_px`` / ``pred_volume_voxels`` when it is not (kaggle_3m:
distances in grid steps, the slice step counting as one pixel), so one column never mixes
the two. :data:`HIGHER_IS_BETTER` gives each measure's direction (a comparison's verdict
reads it). :func:`summarize` gives mean, median, 25th and 75th percentiles over the patients
where a measure is defined, with how many it was computed on and how many were undefined.
:class:`PatientMeasureMeter` collects the slices of ``medseg evaluate`` and scores them all.

Example:
    >>> row = patient_measures(pred_nhw, ref_nhw, spacing=(3.0, 0.9, 0.9))
    >>> row["hd95_mm"], row["pred_volume_ml"], row["lesion_f1"]
    >>> summarize([row])["hd95_mm"]["median"]
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medseg.metrics.lesions import lesion_detection, match_lesions
from medseg.metrics.segmentation import SegmentationMeter, dice_from_counts, iou_from_counts
from medseg.metrics.surface import DEFAULT_TOLERANCE, surface_measures
from medseg.metrics.threshold import DEFAULT_THRESHOLD
from medseg.metrics.volume import volume_measures, voxel_volume_ml

#: the row keys that name a patient or a slice, not a measure
KEYS = ("patient", "slice")
#: on-screen names of the measures without a unit
_LABELS = {
    "dice": "Dice (3-D)", "iou": "IoU (3-D)", "rel_volume_diff": "Δ volume (relative)",
    "ref_lesions": "Reference lesions", "pred_lesions": "Model lesions",
    "detected_lesions": "Detected lesions", "missed_lesions": "Missed lesions",
    "spurious_lesions": "Spurious lesions", "lesion_sensitivity": "Lesion sensitivity",
    "lesion_precision": "Lesion precision", "lesion_f1": "Lesion F1",
}
#: on-screen names of the measures with a unit (the key's suffix)
_UNIT_LABELS = {"hd95": "HD95", "assd": "ASSD", "pred_volume": "Model volume",
                "ref_volume": "Reference volume", "abs_volume_diff": "|Δ volume|"}
_UNITS = {"mm": "mm", "px": "px", "ml": "mL", "voxels": "voxels"}
#: each measure's direction, by its name without the unit (:func:`measure_stem`): True when a
#: higher value is better, False when lower is better (distances, volume errors, lesions
#: missed or spurious), None when neither is (volumes and lesion counts describe the masks;
#: the relative volume difference is signed)
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "dice": True, "iou": True, "nsd": True, "hd95": False, "assd": False,
    "pred_volume": None, "ref_volume": None, "abs_volume_diff": False, "rel_volume_diff": None,
    "ref_lesions": None, "pred_lesions": None, "detected_lesions": True, "missed_lesions": False,
    "spurious_lesions": False, "lesion_sensitivity": True, "lesion_precision": True,
    "lesion_f1": True,
}

#: the values each measure can take, by :func:`measure_stem` (:func:`measure_bounds`): an
#: interval over patients or seeds is clipped to them
_FRACTION = (0.0, 1.0)
_NON_NEGATIVE = (0.0, math.inf)
MEASURE_BOUNDS: dict[str, tuple[float, float]] = {
    "dice": _FRACTION, "iou": _FRACTION, "nsd": _FRACTION, "hd95": _NON_NEGATIVE,
    "assd": _NON_NEGATIVE, "pred_volume": _NON_NEGATIVE, "ref_volume": _NON_NEGATIVE,
    "abs_volume_diff": _NON_NEGATIVE, "rel_volume_diff": (-1.0, math.inf),
    "ref_lesions": _NON_NEGATIVE, "pred_lesions": _NON_NEGATIVE,
    "detected_lesions": _NON_NEGATIVE, "missed_lesions": _NON_NEGATIVE,
    "spurious_lesions": _NON_NEGATIVE, "lesion_sensitivity": _FRACTION,
    "lesion_precision": _FRACTION, "lesion_f1": _FRACTION,
}


def measure_bounds(key: str) -> tuple[float, float]:
    """The values measure ``key`` can take: ``"hd95_mm"`` -> (0, inf), ``"dice"`` -> (0, 1);
    unbounded for a key that is not a measure."""
    return MEASURE_BOUNDS.get(measure_stem(key), (-math.inf, math.inf))


def surface_columns(spacing_known: bool, tolerance: float = DEFAULT_TOLERANCE) -> tuple[str, str, str]:
    """The HD95, ASSD and NSD column names: ``("hd95_mm", "assd_mm", "nsd_2mm")`` with a
    spacing, ``("hd95_px", "assd_px", "nsd_2px")`` without."""
    unit = "mm" if spacing_known else "px"
    return f"hd95_{unit}", f"assd_{unit}", f"nsd_{tolerance:g}{unit}"


def measure_label(key: str) -> str:
    """The on-screen name of a measure: ``"HD95 (mm)"``, ``"NSD (2 px)"``, ``"Lesion F1"``;
    the key itself when unknown."""
    if key in _LABELS:
        return _LABELS[key]
    nsd = re.fullmatch(r"nsd_([0-9.]+)(mm|px)", key)
    if nsd:
        return f"NSD ({nsd[1]} {nsd[2]})"
    name, _, unit = key.rpartition("_")
    if name in _UNIT_LABELS and unit in _UNITS:
        return f"{_UNIT_LABELS[name]} ({_UNITS[unit]})"
    return key


def measure_stem(key: str) -> str:
    """A measure's name without its unit: ``"hd95_px"`` -> ``"hd95"``, ``"nsd_2mm"`` ->
    ``"nsd"``, ``"lesion_f1"`` -> ``"lesion_f1"``."""
    if re.fullmatch(r"nsd_([0-9.]+)(mm|px)", key):
        return "nsd"
    name, _, unit = key.rpartition("_")
    return name if name in _UNIT_LABELS and unit in _UNITS else key


def measure_names() -> tuple[str, ...]:
    """Every column of :func:`patient_measures`, with a spacing and without (``dice``,
    ``hd95_mm``, ``hd95_px``, ..., ``lesion_f1``), at the default NSD tolerance."""
    empty = np.zeros((1, 1, 1), dtype=bool)
    rows = (patient_measures(empty, empty, spacing) for spacing in ((1.0, 1.0, 1.0), None))
    return tuple(dict.fromkeys(key for row in rows for key in row))


def slice_measures(
    pred_hw: np.ndarray, ref_hw: np.ndarray, spacing_hw: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, float]:
    """HD95, ASSD and NSD of one slice, in 2-D (:func:`surface_columns` names them).

    Args:
        pred_hw: predicted (H, W) mask; nonzero is tumour.
        ref_hw: reference mask of the same shape.
        spacing_hw: mm between rows and between columns; None when unknown.
        tolerance: the NSD tolerance in the distances' unit.
        voxel_ml: one voxel's volume in mL when it is not the product of ``spacing`` (a
            sheared grid: :func:`medseg.engine.lesions.stack_geometry`); ignored without
            ``spacing``.
    """
    surface = surface_measures(pred_hw, ref_hw, spacing_hw, tolerance)
    names = surface_columns(spacing_hw is not None, tolerance)
    return dict(zip(names, (surface.hd95, surface.assd, surface.nsd), strict=True))


def patient_measures(
    pred_nhw: np.ndarray, ref_nhw: np.ndarray, spacing: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE, voxel_ml: float | None = None,
) -> dict[str, float | int]:
    """Every measure of one patient's stacked slices (module docstring).

    Args:
        pred_nhw: predicted (N, H, W) mask; nonzero is tumour.
        ref_nhw: reference mask of the same shape.
        spacing: mm between slices, rows and columns; None when unknown.
        tolerance: the NSD tolerance in the distances' unit.

    Returns:
        ``dice``, ``iou``, ``hd95_*``, ``assd_*``, ``nsd_*``, ``pred_volume_*``,
        ``ref_volume_*``, ``abs_volume_diff_*``, ``rel_volume_diff``, ``ref_lesions``,
        ``pred_lesions``, ``detected_lesions``, ``missed_lesions``, ``spurious_lesions``,
        ``lesion_sensitivity``, ``lesion_precision``, ``lesion_f1``.

    Raises:
        ValueError: when the shapes differ or are not 3-D, or the spacing is not 3 sizes.
    """
    pred, ref = np.asarray(pred_nhw) != 0, np.asarray(ref_nhw) != 0
    if pred.ndim != 3:
        raise ValueError(f"expected (slices, rows, columns) masks, got shape {pred.shape}")
    tp = int((pred & ref).sum())
    fp, fn = int(pred.sum()) - tp, int(ref.sum()) - tp
    row: dict[str, float | int] = {"dice": dice_from_counts(tp, fp, fn), "iou": iou_from_counts(tp, fp, fn)}
    row.update(slice_measures(pred, ref, spacing, tolerance))
    if spacing is None:
        voxel_ml = None
    elif voxel_ml is None:
        voxel_ml = voxel_volume_ml(tuple(spacing))
    row.update(volume_measures(pred, ref, voxel_ml))
    row.update(lesion_detection(match_lesions(pred, ref)))
    return row


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Mean, median, 25th and 75th percentile (numpy's linear rule) of each measure of
    ``rows`` over the rows where it is defined.

    Returns:
        {measure: {``mean``, ``median``, ``q25``, ``q75``, ``n`` (rows where defined),
        ``n_undefined`` (rows where NaN)}}, measures in the rows' order; the four statistics
        are NaN when no row defines the measure.

    Example:
        >>> summarize([{"hd95_px": 1.0}, {"hd95_px": 3.0}, {"hd95_px": math.nan}])["hd95_px"]
        {'mean': 2.0, 'median': 2.0, 'q25': 1.5, 'q75': 2.5, 'n': 2, 'n_undefined': 1}
    """
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                columns.setdefault(key, []).append(float(value))
    summary: dict[str, dict[str, float | int]] = {}
    for key, values in columns.items():
        defined = np.asarray([v for v in values if not math.isnan(v)])
        stats = ([float(defined.mean()), *(float(q) for q in np.percentile(defined, [50, 25, 75]))]
                 if defined.size else [math.nan] * 4)
        summary[key] = {**dict(zip(("mean", "median", "q25", "q75"), stats, strict=True)),
                        "n": int(defined.size), "n_undefined": len(values) - int(defined.size)}
    return summary


class PatientMeasureMeter(SegmentationMeter):
    """A :class:`SegmentationMeter` that also keeps each slice's masks (bit-packed: 8 KB per
    256 x 256 slice pair) and scores every patient with :func:`patient_measures`.

    Args:
        threshold: a pixel is foreground when its probability is ``>= threshold``.
        spacing: mm between slices, rows and columns, the same for every patient; None when
            unknown (kaggle_3m).
        tolerance: the NSD tolerance in the distances' unit.

    Example:
        >>> meter = PatientMeasureMeter()
        >>> meter.update(probs, labels, patients=["TCGA_CS_4941"] * 2, slices=[10, 11])
        >>> meter.compute()["measure_summary"]["hd95_px"]["median"]
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, spacing: Sequence[float] | None = None,
                 tolerance: float = DEFAULT_TOLERANCE) -> None:
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.tolerance = tolerance
        super().__init__(threshold)

    def reset(self) -> None:
        """Forget every slice."""
        super().reset()
        self._masks: dict[tuple[str, int], tuple[tuple[int, int], np.ndarray, np.ndarray]] = {}

    def _add(self, keys: list[tuple[str, int]], pred: torch.Tensor, truth: torch.Tensor) -> None:
        super()._add(keys, pred, truth)
        for key, pred_hw, truth_hw in zip(keys, pred.cpu().numpy(), truth.cpu().numpy(), strict=True):
            self._masks[key] = (pred_hw.shape, np.packbits(pred_hw), np.packbits(truth_hw))

    def _unpacked(self, key: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
        shape, pred, truth = self._masks[key]
        size = shape[0] * shape[1]
        return (np.unpackbits(pred, count=size).reshape(shape).astype(bool),
                np.unpackbits(truth, count=size).reshape(shape).astype(bool))

    def compute(self, postprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
        """:meth:`SegmentationMeter.compute`'s keys, each ``per_slice`` row with its 2-D
        HD95, ASSD and NSD, and ``per_patient_measures`` ({patient: :func:`patient_measures`
        row}) and ``measure_summary`` (:func:`summarize` of those rows).

        Args:
            postprocess: applied to each patient's predicted mask stack (N, H, W), its slices
                in order, before anything is counted (e.g.
                :meth:`medseg.postprocessing.Postprocessing.apply`); every score then comes
                from the postprocessed masks. The stored masks are not changed: compute again
                with another step to compare steps on one set of predictions.

        Raises:
            ValueError: when no slice was added, or a patient's slices differ in size.
        """
        if postprocess is not None:
            return self._postprocessed(postprocess).compute()
        result = super().compute()
        in_plane = None if self.spacing is None else self.spacing[1:]
        stacks: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for row in result["per_slice"]:
            pred, truth = self._unpacked((row["patient"], row["slice"]))
            row.update(slice_measures(pred, truth, in_plane, self.tolerance))
            preds, truths = stacks.setdefault(row["patient"], ([], []))
            if preds and preds[0].shape != pred.shape:
                raise ValueError(f"patient {row['patient']}: slices of sizes {preds[0].shape} and {pred.shape}")
            preds.append(pred)
            truths.append(truth)
        per_patient = {
            patient: patient_measures(np.stack(preds), np.stack(truths), self.spacing, self.tolerance)
            for patient, (preds, truths) in stacks.items()
        }
        result["per_patient_measures"] = per_patient
        result["measure_summary"] = summarize(per_patient.values())
        return result

    def _postprocessed(self, postprocess: Callable[[np.ndarray], np.ndarray]) -> PatientMeasureMeter:
        """A meter holding this one's slices with each patient's predicted stack postprocessed."""
        by_patient: dict[str, list[int]] = defaultdict(list)
        for patient, number in self._masks:
            by_patient[patient].append(number)
        meter = PatientMeasureMeter(self.threshold, self.spacing, self.tolerance)
        for patient, numbers in by_patient.items():
            numbers.sort()
            pairs = [self._unpacked((patient, number)) for number in numbers]
            if len({pred.shape for pred, _ in pairs}) > 1:
                raise ValueError(f"patient {patient}: slices of several sizes")
            preds = np.asarray(postprocess(np.stack([pred for pred, _ in pairs])), dtype=np.float32)
            truths = np.stack([truth for _, truth in pairs]).astype(np.float32)
            meter.update(preds, truths, [patient] * len(numbers), numbers)
        return meter
