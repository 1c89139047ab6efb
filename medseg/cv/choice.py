"""Postprocessing chosen on the out-of-fold predictions (nnU-Net's rule, with detection).

Each candidate (:data:`CANDIDATES`: removing lesions under a few sizes, and keeping only the
largest lesion) is scored on the same out-of-fold masks
(:meth:`medseg.metrics.measures.PatientMeasureMeter.compute` with ``postprocess=``). A
candidate passes :data:`RULE` when the mean patient Dice over the out-of-fold patients rises
and the mean lesion sensitivity (lesions detected) does not fall; of those that pass, the one
with the highest Dice is kept (the first listed on a tie), else nothing is. Keeping the
largest lesion is a candidate like any other, never a default: LGG tumours can be multifocal.

Example:
    >>> step, evidence = choose_postprocessing(fold_meters)
    >>> save_postprocessing(cv.postprocessing_file, step, evidence)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medseg.metrics.measures import PatientMeasureMeter, summarize
from medseg.postprocessing import Postprocessing

#: the candidates tried: lesions under these sizes (voxels) removed, then keep-largest
MIN_VOXELS_GRID = (10, 25, 50, 100, 200)
CANDIDATES: tuple[Postprocessing, ...] = (
    *(Postprocessing(min_voxels=size) for size in MIN_VOXELS_GRID),
    Postprocessing(keep_largest=True),
)
#: the measure that must rise and the one that must not fall
GAIN_MEASURE, GUARD_MEASURE = "dice", "lesion_sensitivity"
RULE = (
    "a step is kept only if the mean out-of-fold patient Dice rises and the mean out-of-fold "
    "lesion sensitivity does not fall; of the steps that pass, the highest Dice is kept"
)


def pooled_measures(meters: Sequence[PatientMeasureMeter],
                    postprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Every patient's measures over several meters of disjoint patients (the folds'
    out-of-fold meters), each patient's stack postprocessed first when ``postprocess``."""
    rows: dict[str, dict[str, Any]] = {}
    for meter in meters:
        rows.update(meter.compute(postprocess=postprocess)["per_patient_measures"])
    return rows


def _scores(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    summary = summarize(rows.values())
    return {name: float(summary[name]["mean"]) for name in (GAIN_MEASURE, GUARD_MEASURE)}


def passes(scores: dict[str, float], baseline: dict[str, float]) -> bool:
    """:data:`RULE` for one candidate's mean scores against the raw masks' (an undefined
    sensitivity, no reference lesion anywhere, cannot fall)."""
    guard, before = scores[GUARD_MEASURE], baseline[GUARD_MEASURE]
    kept_detection = (math.isnan(guard) and math.isnan(before)) or guard >= before
    return scores[GAIN_MEASURE] > baseline[GAIN_MEASURE] and kept_detection


def choose_postprocessing(
    meters: Sequence[PatientMeasureMeter], candidates: Sequence[Postprocessing] = CANDIDATES,
    raw_rows: dict[str, dict[str, Any]] | None = None,
) -> tuple[Postprocessing, dict[str, Any]]:
    """The step :data:`RULE` keeps on the out-of-fold predictions, and its evidence.

    Args:
        meters: the out-of-fold meters (one per fold, disjoint patients).
        candidates: the steps tried.
        raw_rows: the raw masks' pooled measures, when already computed.

    Returns:
        The kept step (the identity when none passes) and the evidence for
        :func:`medseg.postprocessing.save_postprocessing`: ``rule``, ``patients``,
        ``baseline`` (the raw masks' mean Dice and lesion sensitivity) and ``candidates``
        (each step, its scores and whether it passed).
    """
    raw_rows = pooled_measures(meters) if raw_rows is None else raw_rows
    baseline = _scores(raw_rows)
    tried: list[dict[str, Any]] = []
    for step in candidates:
        scores = _scores(pooled_measures(meters, step.apply))
        tried.append({"step": step.to_dict(), "described": step.describe(), **scores,
                      "passes": passes(scores, baseline)})
    passing = [entry for entry in tried if entry["passes"]]
    best = max(passing, key=lambda entry: entry[GAIN_MEASURE], default=None)
    chosen = Postprocessing.from_dict(best["step"]) if best else Postprocessing()
    evidence = {"rule": RULE, "patients": len(raw_rows), "baseline": baseline, "candidates": tried}
    return chosen, evidence
