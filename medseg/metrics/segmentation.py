"""Binary segmentation metrics from confusion counts: slice Dice/IoU, per-patient 3-D scores.

Everything is derived from each slice's true-positive, false-positive and false-negative
pixel counts, in one place: :func:`dice_from_counts` and :func:`iou_from_counts`. Training
validation, ``medseg evaluate``, ``medseg compare`` and the app all score with
:class:`SegmentationMeter`.

Empty-slice convention: a slice whose ground truth and prediction are both empty scores
Dice = IoU = 1; any prediction on an empty ground truth scores 0. (MONAI's metrics call this
``ignore_empty=False``; their default returns NaN for every empty ground truth, which would
drop false positives on tumour-free slices from the mean.)

Example:
    >>> dice_score(np.array([[1, 1, 0], [0, 0, 0]]), np.array([[1, 0, 0], [1, 0, 0]]))
    0.5
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medseg.metrics.threshold import DEFAULT_THRESHOLD, binarize, check_threshold


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice ``2TP / (2TP + FP + FN)``; 1.0 when there is nothing to find and nothing found."""
    return 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


def iou_from_counts(tp: int, fp: int, fn: int) -> float:
    """IoU ``TP / (TP + FP + FN)``; 1.0 when there is nothing to find and nothing found."""
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def pixel_confusion_counts(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image (TP, FP, FN) pixel counts of boolean masks (N, ...) as an int64 (N, 3) tensor."""
    pred, truth = pred.flatten(1), truth.flatten(1)
    tp = (pred & truth).sum(1)
    return torch.stack([tp, pred.sum(1) - tp, truth.sum(1) - tp], dim=1)


def _binary_pair(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor):
    pred_t, target_t = torch.as_tensor(pred), torch.as_tensor(target)
    if pred_t.shape != target_t.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred_t.shape)} and "
            f"{tuple(target_t.shape)}"
        )
    return (pred_t > 0.5)[None], (target_t > 0.5)[None]


def dice_score(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Dice of one binary mask pair, with the empty-slice convention.

    Args:
        pred: predicted mask, e.g. (H, W), numpy or torch; values above 0.5 are foreground.
        target: ground-truth mask of the same shape.

    Raises:
        ValueError: when the shapes differ.
    """
    tp, fp, fn = pixel_confusion_counts(*_binary_pair(pred, target))[0].tolist()
    return dice_from_counts(tp, fp, fn)


def iou_score(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """IoU of one binary mask pair, with the empty-slice convention.

    Args:
        pred: predicted mask, e.g. (H, W), numpy or torch; values above 0.5 are foreground.
        target: ground-truth mask of the same shape.

    Raises:
        ValueError: when the shapes differ.
    """
    tp, fp, fn = pixel_confusion_counts(*_binary_pair(pred, target))[0].tolist()
    return iou_from_counts(tp, fp, fn)


class SegmentationMeter:
    """Accumulate per-slice confusion counts; report slice and patient Dice, IoU and errors.

    The state is one small row per slice (patient, slice, TP, FP, FN), never the masks, so a
    whole LGG test set costs a few hundred kilobytes and re-scoring is cheap.

    Args:
        threshold: a pixel is foreground when its probability is ``>= threshold``.

    Raises:
        MedsegError: a threshold outside (0, 1) (:func:`check_threshold`).

    Example:
        >>> meter = SegmentationMeter()
        >>> meter.update(probs, labels, patients=["TCGA_CS_4941"] * 2, slices=[10, 11])
        >>> meter.compute()["patient_dice"]
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = check_threshold(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every slice."""
        self._rows: list[tuple[str, int, int, int, int]] = []
        self._keys: set[tuple[str, int]] = set()
        self._last_slice: dict[str, int] = defaultdict(int)

    def update(
        self,
        probs: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        patients: Sequence[str],
        slices: Sequence[int] | None = None,
    ) -> None:
        """Add a batch of slices.

        Args:
            probs: foreground probabilities (B, H, W) or (B, 1, H, W).
            labels: ground-truth masks of the same shape; values above 0.5 are foreground.
            patients: the patient of each slice.
            slices: the slice number of each slice; when None, each patient's slices are
                numbered on from the highest number seen for that patient (1, 2, ...).

        Raises:
            ValueError: on mismatched shapes or lengths, or a (patient, slice) seen before.
        """
        probs_t, labels_t = torch.as_tensor(probs), torch.as_tensor(labels)
        if probs_t.ndim == 4 and probs_t.shape[1] == 1:
            probs_t = probs_t[:, 0]
        if labels_t.ndim == 4 and labels_t.shape[1] == 1:
            labels_t = labels_t[:, 0]
        if probs_t.ndim != 3 or probs_t.shape != labels_t.shape:
            raise ValueError(
                "probs and labels must both be (B, H, W) or (B, 1, H, W), got "
                f"{tuple(torch.as_tensor(probs).shape)} and {tuple(torch.as_tensor(labels).shape)}"
            )
        batch = probs_t.shape[0]
        if len(patients) != batch or (slices is not None and len(slices) != batch):
            raise ValueError(f"expected {batch} patients and slices, one per image")
        keys: list[tuple[str, int]] = []
        last = dict(self._last_slice)
        for i, name in enumerate(patients):
            patient = str(name)
            number = last.get(patient, 0) + 1 if slices is None else int(slices[i])
            last[patient] = max(last.get(patient, 0), number)
            if (patient, number) in self._keys or (patient, number) in keys:
                raise ValueError(f"slice {number} of patient {patient} was already added")
            keys.append((patient, number))
        self._add(keys, binarize(probs_t.detach(), self.threshold), labels_t.detach() > 0.5)
        self._keys.update(keys)
        self._last_slice.update(last)

    def _add(self, keys: list[tuple[str, int]], pred: torch.Tensor, truth: torch.Tensor) -> None:
        """Record the checked slices ``keys`` from their (B, H, W) bool masks."""
        counts = pixel_confusion_counts(pred, truth)
        for (patient, number), (tp, fp, fn) in zip(keys, counts.tolist(), strict=True):
            self._rows.append((patient, number, tp, fp, fn))

    def compute(self) -> dict[str, Any]:
        """Slice and patient scores.

        Returns:
            ``dice`` and ``iou`` (means over slices); ``patient_dice`` and ``patient_iou``
            (means over patients of the 3-D scores, all of a patient's slices pooled);
            ``per_patient`` ({patient: 3-D Dice}) and ``per_patient_iou``; ``per_slice``
            (rows: patient, slice, dice, iou, gt_pixels, pred_pixels; sorted);
            ``empty_fp_rate`` (share of empty-ground-truth slices with any predicted pixel;
            0.0 when there are none), ``n_empty_slices``, ``n_empty_fp_slices``,
            ``n_slices``, ``n_patients``.

        Raises:
            ValueError: when no slice was added.
        """
        if not self._rows:
            raise ValueError("SegmentationMeter.compute(): no slices were added")
        rows = sorted(self._rows)
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        per_slice: list[dict[str, Any]] = []
        for patient, number, tp, fp, fn in rows:
            total = totals[patient]
            total[0] += tp
            total[1] += fp
            total[2] += fn
            per_slice.append({
                "patient": patient, "slice": number,
                "dice": dice_from_counts(tp, fp, fn), "iou": iou_from_counts(tp, fp, fn),
                "gt_pixels": tp + fn, "pred_pixels": tp + fp,
            })
        per_patient = {patient: dice_from_counts(*total) for patient, total in totals.items()}
        per_patient_iou = {patient: iou_from_counts(*total) for patient, total in totals.items()}
        empty = [row for row in per_slice if row["gt_pixels"] == 0]
        empty_fp = sum(1 for row in empty if row["pred_pixels"] > 0)
        return {
            "dice": float(np.mean([row["dice"] for row in per_slice])),
            "iou": float(np.mean([row["iou"] for row in per_slice])),
            "patient_dice": float(np.mean(list(per_patient.values()))),
            "patient_iou": float(np.mean(list(per_patient_iou.values()))),
            "per_patient": per_patient,
            "per_patient_iou": per_patient_iou,
            "per_slice": per_slice,
            "empty_fp_rate": empty_fp / len(empty) if empty else 0.0,
            "n_empty_slices": len(empty),
            "n_empty_fp_slices": empty_fp,
            "n_slices": len(per_slice),
            "n_patients": len(per_patient),
        }
