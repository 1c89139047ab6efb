"""A run's cohort: every patient of a split scored at every threshold of the app's slider,
computed once per checkpoint and data folder and cached on disk beside the run.

A patient's scores come from :func:`medseg.app.scoring.score_volume` (the case browser's own
scoring), once per threshold of :data:`THRESHOLDS`, so the cohort table, the case browser and
the Dice-versus-threshold curves show the same numbers. The measures beyond Dice (HD95, ASSD,
NSD, volumes, lesions: :func:`medseg.metrics.measures.patient_measures`) cost more, so a
record holds them only at the thresholds they were asked at (:func:`measure_patient`). The cache file
(``<run>/app_cache/cohort-<checkpoint>-<folder digest>.json``) names the checkpoint's size and
modification time and the data folder: a new checkpoint or another folder starts afresh, and
a patient whose slice files changed is scored again.

A model with a postprocessing step (a CV folder's, :mod:`medseg.postprocessing`) is scored on
its postprocessed masks: :func:`apply_step` turns the probabilities into the postprocessed mask
at each threshold, which the same scoring then reads.

Example:
    >>> cache = CohortCache(run.path, run.path / "best.pt", "demo_data/lgg")
    >>> records = cache.load()
    >>> records["TCGA_X"] = score_patient("TCGA_X", probs, masks, numbers, fingerprint(patient))
    >>> cache.save(records)  # None, or why the file could not be written
    >>> cohort_frame(records, split, threshold=0.5)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from medseg.app.scoring import score_volume
from medseg.data.lgg import Patient
from medseg.files import write_text
from medseg.metrics import binarize
from medseg.metrics.measures import patient_measures
from medseg.paths import is_regular_file
from medseg.postprocessing import Postprocessing
from medseg.runs import RunFolder

#: the step of the app's threshold slider, which offers every multiple of it between 0 and 1
THRESHOLD_STEP = 0.05
#: the probability thresholds the app offers, lowest first: its slider's positions (0.05 to
#: 0.95), each of which the cohort is scored at
THRESHOLDS: tuple[float, ...] = tuple(
    round(THRESHOLD_STEP * step, 2) for step in range(1, round(1 / THRESHOLD_STEP)))
#: the run's sub-folder for files the app writes (nothing else of the run is ever written)
CACHE_FOLDER = RunFolder.APP_CACHE_NAME
#: bumped when the cache file's content changes meaning (2: the measures beyond Dice)
CACHE_FORMAT = 2
#: the cohort table's columns, in display order (kaggle slices carry no spacing: pixels)
COLUMNS = ("Patient", "Subset", "Dice (3-D)", "IoU (3-D)", "HD95 (px)", "ASSD (px)", "NSD (2 px)",
           "Δ volume", "Lesions found", "Missed lesions", "Spurious lesions", "Reference px",
           "Model px", "Empty slices with FP", "Slices")
#: the measures of :func:`~medseg.metrics.measures.patient_measures` the table shows, by column
MEASURE_COLUMNS = {"HD95 (px)": "hd95_px", "ASSD (px)": "assd_px", "NSD (2 px)": "nsd_2px",
                   "Δ volume": "rel_volume_diff", "Missed lesions": "missed_lesions",
                   "Spurious lesions": "spurious_lesions"}


@dataclass(frozen=True)
class PatientRecord:
    """One patient's 3-D scores at every threshold of :data:`THRESHOLDS` (same order)."""

    name: str
    fingerprint: str
    n_slices: int
    n_empty_slices: int
    reference_pixels: int
    dice: tuple[float, ...]
    iou: tuple[float, ...]
    predicted_pixels: tuple[int, ...]
    empty_fp_slices: tuple[int, ...]
    #: {:func:`measure_key` of a threshold: :func:`~medseg.metrics.measures.patient_measures` row}
    measures: dict[str, dict[str, float]] = field(default_factory=dict)

    def measures_at(self, threshold: float) -> dict[str, float] | None:
        """The measures at ``threshold``; None when not computed there yet."""
        return self.measures.get(measure_key(threshold))


def measure_key(threshold: float) -> str:
    """How a threshold names its measures in a record and the cache: ``"0.50"``."""
    return f"{THRESHOLDS[threshold_index(threshold)]:.2f}"


def apply_step(probs: np.ndarray, threshold: float, step: Postprocessing | None) -> np.ndarray:
    """What is scored and drawn at ``threshold``: ``probs`` themselves without a step; with
    one, the postprocessed mask of the patient's stack at ``threshold`` as float32 0/1 (which
    the threshold, in (0, 1], turns back into that mask).

    Args:
        probs: (N, H, W) probabilities of one patient's slices, in order.
        threshold: a pixel is tumour when its probability is ``>= threshold``.
        step: the postprocessing (None or the identity: none).
    """
    if step is None or step.is_identity:
        return probs
    return step.apply(binarize(probs, threshold)).astype(np.float32)


def measure_patient(record: PatientRecord, probs: np.ndarray, masks: np.ndarray,
                    threshold: float, step: Postprocessing | None = None) -> PatientRecord:
    """``record`` with every measure of :func:`~medseg.metrics.measures.patient_measures` at
    ``threshold`` (a threshold of :data:`THRESHOLDS`; the slices have no spacing: pixels), of
    the postprocessed mask when there is a ``step``.

    Raises:
        ValueError: when ``threshold`` is not one of :data:`THRESHOLDS`.
    """
    row = patient_measures(binarize(apply_step(probs, threshold, step), threshold), masks)
    return replace(record, measures={**record.measures, measure_key(threshold): row})


def threshold_index(threshold: float) -> int:
    """The position of ``threshold`` in :data:`THRESHOLDS`.

    Raises:
        ValueError: when ``threshold`` is not one of them (to within 1e-6).
    """
    for index, value in enumerate(THRESHOLDS):
        if abs(value - threshold) <= 1e-6:
            return index
    raise ValueError(f"threshold {threshold} is not one of the app's thresholds {THRESHOLDS}")


def fingerprint(patient: Patient) -> str:
    """What identifies a patient's files: their number and newest modification time.

    Raises:
        OSError: when a slice or mask file cannot be read.
    """
    paths = [path for item in patient.slices for path in (item.image_path, item.mask_path)]
    newest = max((path.stat().st_mtime_ns for path in paths), default=0)
    return f"{len(paths)}:{newest}"


def score_patient(
    name: str, probs: np.ndarray, masks: np.ndarray, numbers: Sequence[int], fingerprint: str,
    thresholds: Sequence[float] = THRESHOLDS, step: Postprocessing | None = None,
) -> PatientRecord:
    """Score one patient's probabilities at every threshold with :func:`score_volume` (the
    postprocessed masks when there is a ``step``: :func:`apply_step`).

    Args:
        name: the patient.
        probs: (N, H, W) probabilities.
        masks: (N, H, W) reference masks in {0, 1}.
        numbers: the N slice numbers.
        fingerprint: :func:`fingerprint` of the patient's files.
        thresholds: where to score (the app's :data:`THRESHOLDS` by default).
        step: the postprocessing applied to each threshold's mask stack (None: none).
    """
    scores = [score_volume(apply_step(probs, t, step), masks, name, numbers, t) for t in thresholds]
    first = scores[0]
    return PatientRecord(
        name=name, fingerprint=fingerprint, n_slices=first["n_slices"],
        n_empty_slices=first["n_empty_slices"],
        reference_pixels=sum(row["gt_pixels"] for row in first["per_slice"]),
        dice=tuple(s["patient_dice"] for s in scores),
        iou=tuple(s["patient_iou"] for s in scores),
        predicted_pixels=tuple(sum(row["pred_pixels"] for row in s["per_slice"]) for s in scores),
        empty_fp_slices=tuple(s["n_empty_fp_slices"] for s in scores),
    )


def stale(records: Mapping[str, PatientRecord], fingerprints: Mapping[str, str]) -> list[str]:
    """The patients of ``fingerprints`` (name -> fingerprint) without a current record."""
    return [name for name, print_ in fingerprints.items()
            if name not in records or records[name].fingerprint != print_]


def lowest_dice(records: Mapping[str, PatientRecord], names: Iterable[str], threshold: float) -> str | None:
    """Of ``names``, the patient with the lowest 3-D Dice at ``threshold`` (ties: by name);
    None when none of them has a record."""
    index = threshold_index(threshold)
    scored = sorted((records[name].dice[index], name) for name in names if name in records)
    return scored[0][1] if scored else None


def mean_dice_curve(records: Mapping[str, PatientRecord], names: Iterable[str]) -> list[float]:
    """Mean 3-D Dice over the patients ``names`` at each threshold (the meter's
    ``patient_dice`` over those patients); NaN where none has a record."""
    rows = [records[name].dice for name in names if name in records]
    if not rows:
        return [math.nan] * len(THRESHOLDS)
    return [float(value) for value in np.mean(np.asarray(rows, dtype=float), axis=0)]


def best_threshold(curve: Sequence[float]) -> float | None:
    """The slider's threshold where ``curve`` (a :func:`mean_dice_curve`) is highest, the
    lowest of ties; None when the curve has no value.

    Example:
        >>> best_threshold([0.5, 0.7, 0.7] + [0.1] * 16)
        0.1
    """
    values = np.asarray(curve, dtype=float)
    if not np.isfinite(values).any():
        return None
    return THRESHOLDS[int(np.nanargmax(values))]


def cohort_frame(records: Mapping[str, PatientRecord], split: Mapping[str, str], threshold: float,
                 names: Iterable[str] | None = None) -> pd.DataFrame:
    """The cohort table at ``threshold``: one row per patient (``names``, default all
    records), lowest Dice first, with :data:`COLUMNS`; a measure not computed at ``threshold``
    (:func:`measure_patient`) or undefined there is NaN (an empty cell)."""
    index = threshold_index(threshold)
    chosen = [records[name] for name in (names if names is not None else records) if name in records]
    rows = []
    for r in chosen:
        measures = r.measures_at(threshold) or {}
        shown = {column: measures.get(key, math.nan) for column, key in MEASURE_COLUMNS.items()}
        found = (f"{int(measures['detected_lesions'])} of {int(measures['ref_lesions'])}"
                 if measures else "")
        rows.append({"Patient": r.name, "Subset": split.get(r.name, ""), "Dice (3-D)": r.dice[index],
                     "IoU (3-D)": r.iou[index], **shown, "Lesions found": found,
                     "Reference px": r.reference_pixels, "Model px": r.predicted_pixels[index],
                     "Empty slices with FP": f"{r.empty_fp_slices[index]} of {r.n_empty_slices}",
                     "Slices": r.n_slices})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values(["Dice (3-D)", "Patient"], kind="stable").reset_index(drop=True)


def runs_frame(records_by_run: Mapping[str, Mapping[str, PatientRecord]], names: Sequence[str],
               threshold: float) -> pd.DataFrame:
    """Patient Dice of several runs side by side: one column per run (in order), then one
    ``Δ <run> − <first run>`` column per other run; one row per patient of ``names``."""
    index = threshold_index(threshold)
    runs = list(records_by_run)
    frame = pd.DataFrame({"Patient": list(names)})
    for run in runs:
        records = records_by_run[run]
        frame[run] = [records[name].dice[index] if name in records else math.nan for name in names]
    for run in runs[1:]:
        frame[f"Δ {run} − {runs[0]}"] = frame[run] - frame[runs[0]]
    return frame


class CohortCache:
    """The cohort of one checkpoint over one data folder, in a JSON file beside the run.

    Args:
        run_dir: the run folder (the file goes in its :data:`CACHE_FOLDER`).
        checkpoint: the checkpoint whose predictions are scored (an export's model file; a CV
            folder's first member).
        data_folder: the LGG folder the patients come from.
        variant: for a model that is not a run's checkpoint, what else decides its scores
            (``"cv-tta_flip-post"``: kind, TTA, postprocessed or raw): it names the file
            instead of the checkpoint's stem and joins the identity. None: a run's checkpoint.
        modified_ns: with a ``variant``, the newest modification time of the files the model
            reads (every fold's member): it joins the identity.
    """

    def __init__(self, run_dir: str | Path, checkpoint: str | Path, data_folder: str | Path,
                 variant: str | None = None, modified_ns: int | None = None) -> None:
        self.checkpoint = Path(checkpoint)
        data = str(Path(data_folder).resolve())
        digest = hashlib.sha256(data.encode()).hexdigest()[:12]
        stem = self.checkpoint.stem if variant is None else variant
        self.path = Path(run_dir) / CACHE_FOLDER / f"cohort-{stem}-{digest}.json"
        stat = self.checkpoint.stat()
        self.identity = {"format": CACHE_FORMAT, "checkpoint": self.checkpoint.name,
                         "checkpoint_size": stat.st_size, "checkpoint_mtime_ns": stat.st_mtime_ns,
                         "data_folder": data, "thresholds": list(THRESHOLDS)}
        if variant is not None:
            self.identity.update(variant=variant, model_mtime_ns=modified_ns)

    def load(self) -> dict[str, PatientRecord]:
        """The cached records; empty when there is no file, it belongs to another checkpoint
        or folder, or it cannot be read or is not a regular file (it is then rewritten by
        :meth:`save`)."""
        if not is_regular_file(self.path):
            return {}
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
            if {k: payload.get(k) for k in self.identity} != self.identity:
                return {}
            return {name: _record(name, fields) for name, fields in payload["patients"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return {}

    def save(self, records: Mapping[str, PatientRecord]) -> str | None:
        """Write ``records`` atomically; None when written, else why not (a read-only run
        folder keeps the cohort for this server's life only)."""
        payload = {**self.identity, "patients": {
            name: {k: v for k, v in asdict(record).items() if k != "name"}
            for name, record in sorted(records.items())}}
        try:
            self.path.parent.mkdir(exist_ok=True)
            write_text(self.path, json.dumps(payload, indent=1, allow_nan=True))
        except OSError as err:
            return f"{self.path.parent}: cannot write the cohort cache ({err.strerror or err})"
        return None


def _record(name: str, fields: Mapping) -> PatientRecord:
    """A :class:`PatientRecord` from its JSON fields; ValueError when they do not fit."""
    record = PatientRecord(
        name=name, fingerprint=str(fields["fingerprint"]), n_slices=int(fields["n_slices"]),
        n_empty_slices=int(fields["n_empty_slices"]), reference_pixels=int(fields["reference_pixels"]),
        dice=tuple(float(v) for v in fields["dice"]), iou=tuple(float(v) for v in fields["iou"]),
        predicted_pixels=tuple(int(v) for v in fields["predicted_pixels"]),
        empty_fp_slices=tuple(int(v) for v in fields["empty_fp_slices"]),
        measures={str(threshold): {str(k): float(v) for k, v in row.items()}
                  for threshold, row in fields.get("measures", {}).items()},
    )
    per_threshold = (record.dice, record.iou, record.predicted_pixels, record.empty_fp_slices)
    if any(len(values) != len(THRESHOLDS) for values in per_threshold):
        raise ValueError(f"{name}: a cached record without one value per threshold")
    return record
