"""Binary segmentation metrics: per-slice Dice and IoU (MONAI), per-patient 3-D Dice.

Empty-slice convention (both here and in :class:`SegmentationMeter`): a slice whose ground
truth and prediction are both empty scores Dice = IoU = 1; any prediction on an empty ground
truth scores 0. This is MONAI's ``ignore_empty=False``; MONAI's default (``True``) returns NaN
for every empty ground truth, which would drop false positives on tumour-free slices from
the mean.

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


def _binary(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float {0, 1} tensor: values above 0.5 are foreground (also for 0/255 masks)."""
    tensor = torch.as_tensor(mask)
    return (tensor > 0.5).float() if tensor.dtype != torch.bool else tensor.float()


def _mask_pair(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor):
    pred_t, target_t = _binary(pred), _binary(target)
    if pred_t.shape != target_t.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred_t.shape)} and "
            f"{tuple(target_t.shape)}"
        )
    return pred_t[None, None], target_t[None, None]


def dice_score(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Dice ``2|P∩G| / (|P| + |G|)`` of one binary mask pair, with the empty-slice convention.

    Args:
        pred: predicted mask, e.g. (H, W), numpy or torch; values above 0.5 are foreground.
        target: ground-truth mask of the same shape.

    Raises:
        ValueError: when the shapes differ.
    """
    from monai.metrics import compute_dice

    pred_t, target_t = _mask_pair(pred, target)
    return float(compute_dice(pred_t, target_t, include_background=True, ignore_empty=False))


def iou_score(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """IoU ``|P∩G| / |P∪G|`` of one binary mask pair, with the empty-slice convention.

    Args:
        pred: predicted mask, e.g. (H, W), numpy or torch; values above 0.5 are foreground.
        target: ground-truth mask of the same shape.

    Raises:
        ValueError: when the shapes differ.
    """
    from monai.metrics import compute_iou

    pred_t, target_t = _mask_pair(pred, target)
    return float(compute_iou(pred_t, target_t, include_background=True, ignore_empty=False))


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice from pixel counts, 1.0 when there is nothing to find and nothing was found."""
    return 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


class SegmentationMeter:
    """Accumulate slice-level counts; report slice and patient Dice, IoU, empty-slice errors.

    The state is one small row per slice (patient, slice, TP, FP, FN, Dice, IoU), never the
    masks, so a whole LGG test set costs a few hundred kilobytes. For DDP, gather
    :meth:`state_dict` from every rank (``torch.distributed.all_gather_object``) and
    :meth:`merge` them into one meter: rows whose (patient, slice) is already present are
    skipped, which removes the duplicates ``DistributedSampler`` pads with, provided
    ``slices`` are passed to :meth:`update`.

    Args:
        threshold: a pixel is foreground when its probability is ``>= threshold``.

    Example:
        >>> meter = SegmentationMeter()
        >>> meter.update(probs, labels, patients=["TCGA_CS_4941"] * 2, slices=[10, 11])
        >>> meter.compute()["patient_dice"]
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget every slice."""
        self._rows: list[dict[str, Any]] = []
        self._keys: set[tuple[str, int]] = set()
        self._next_slice: dict[str, int] = defaultdict(int)

    def update(
        self,
        probs: torch.Tensor,
        labels: torch.Tensor,
        patients: Sequence[str],
        slices: Sequence[int] | None = None,
    ) -> None:
        """Add a batch of slices.

        Args:
            probs: foreground probabilities (B, 1, H, W).
            labels: ground-truth masks (B, 1, H, W); values above 0.5 are foreground.
            patients: the patient of each slice.
            slices: the slice number of each slice; when None, each patient's slices are
                numbered on from the highest number seen for that patient (1, 2, ...).

        Raises:
            ValueError: on mismatched shapes or lengths, or a (patient, slice) seen before.
        """
        from monai.metrics import compute_dice, compute_iou, get_confusion_matrix

        if probs.ndim != 4 or probs.shape[1] != 1 or probs.shape != labels.shape:
            raise ValueError(
                f"probs and labels must both be (B, 1, H, W), got {tuple(probs.shape)} and "
                f"{tuple(labels.shape)}"
            )
        batch = probs.shape[0]
        if len(patients) != batch or (slices is not None and len(slices) != batch):
            raise ValueError(f"expected {batch} patients and slices, one per image")
        pred = (probs.detach() >= self.threshold).float()
        gt = (labels.detach() > 0.5).float()
        counts = get_confusion_matrix(pred, gt, include_background=True)[:, 0].long().tolist()
        dice = compute_dice(pred, gt, include_background=True, ignore_empty=False)[:, 0].tolist()
        iou = compute_iou(pred, gt, include_background=True, ignore_empty=False)[:, 0].tolist()
        keys: list[tuple[str, int]] = []
        next_slice = dict(self._next_slice)
        for i, name in enumerate(patients):
            patient = str(name)
            number = next_slice.get(patient, 0) + 1 if slices is None else int(slices[i])
            next_slice[patient] = max(next_slice.get(patient, 0), number)
            if (patient, number) in self._keys or (patient, number) in keys:
                raise ValueError(f"slice {number} of patient {patient} was already added")
            keys.append((patient, number))
        for (patient, number), (tp, fp, _, fn), dice_i, iou_i in zip(
            keys, counts, dice, iou, strict=True
        ):
            self._add({
                "patient": patient, "slice": number, "tp": tp, "fp": fp, "fn": fn,
                "dice": dice_i, "iou": iou_i,
            })

    def _add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self._keys.add((row["patient"], row["slice"]))
        self._next_slice[row["patient"]] = max(self._next_slice[row["patient"]], row["slice"])

    def state_dict(self) -> dict[str, Any]:
        """The whole state as plain Python types (picklable, JSON-serializable)."""
        return {"threshold": self.threshold, "rows": [dict(row) for row in self._rows]}

    def merge(self, state: dict[str, Any]) -> None:
        """Add the rows of another meter's :meth:`state_dict`, skipping (patient, slice) seen.

        Raises:
            ValueError: when the other meter used a different threshold.
        """
        if state["threshold"] != self.threshold:
            raise ValueError(
                f"cannot merge a meter with threshold {state['threshold']} into one with "
                f"{self.threshold}"
            )
        for row in state["rows"]:
            if (row["patient"], row["slice"]) not in self._keys:
                self._add(dict(row))

    def compute(self) -> dict[str, Any]:
        """Slice and patient scores.

        Returns:
            ``dice`` and ``iou`` (means over slices), ``patient_dice`` (mean over patients of
            the 3-D Dice of all their slices), ``per_patient`` ({patient: 3-D Dice}),
            ``per_slice`` (rows: patient, slice, dice, iou, gt_pixels, pred_pixels; sorted),
            ``empty_fp_rate`` (share of empty-ground-truth slices with any predicted pixel;
            0.0 when there are none), ``n_empty_slices``, ``n_empty_fp_slices``, ``n_slices``,
            ``n_patients``.

        Raises:
            ValueError: when no slice was added.
        """
        if not self._rows:
            raise ValueError("SegmentationMeter.compute(): no slices were added")
        rows = sorted(self._rows, key=lambda row: (row["patient"], row["slice"]))
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in rows:
            total = totals[row["patient"]]
            total[0] += row["tp"]
            total[1] += row["fp"]
            total[2] += row["fn"]
        per_patient = {patient: dice_from_counts(*total) for patient, total in totals.items()}
        empty = [row for row in rows if row["tp"] + row["fn"] == 0]
        empty_fp = sum(1 for row in empty if row["fp"] > 0)
        return {
            "dice": float(np.mean([row["dice"] for row in rows])),
            "iou": float(np.mean([row["iou"] for row in rows])),
            "patient_dice": float(np.mean(list(per_patient.values()))),
            "per_patient": per_patient,
            "per_slice": [
                {
                    "patient": row["patient"],
                    "slice": row["slice"],
                    "dice": row["dice"],
                    "iou": row["iou"],
                    "gt_pixels": row["tp"] + row["fn"],
                    "pred_pixels": row["tp"] + row["fp"],
                }
                for row in rows
            ],
            "empty_fp_rate": empty_fp / len(empty) if empty else 0.0,
            "n_empty_slices": len(empty),
            "n_empty_fp_slices": empty_fp,
            "n_slices": len(rows),
            "n_patients": len(per_patient),
        }
