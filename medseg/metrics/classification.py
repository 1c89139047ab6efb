"""Binary classification metrics: accuracy, sensitivity, specificity and ROC AUC (MONAI).

Example:
    >>> meter = ClassificationMeter()
    >>> meter.update(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1, 0, 0]))
    >>> meter.compute()["accuracy"]
    0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _flat(values: torch.Tensor, name: str) -> torch.Tensor:
    values = torch.as_tensor(values).detach()
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must be (B,) or (B, 1), got {tuple(values.shape)}")
    return values.float().cpu()


class ClassificationMeter:
    """Accumulate (probability, label) pairs; report accuracy, sensitivity, specificity, AUC.

    Undefined values are NaN, never an exception: ``auc`` when only one class is present
    (ROC AUC needs both), ``sensitivity`` without positives, ``specificity`` without negatives.

    For DDP, gather :meth:`state_dict` from every rank and :meth:`merge` them; pass
    ``indices`` (the dataset index of each sample) to :meth:`update` so the duplicates that
    ``DistributedSampler`` pads with are skipped on merge.

    Args:
        threshold: a sample is predicted positive when its probability is ``>= threshold``.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self._probs: list[float] = []
        self._labels: list[int] = []
        self._indices: list[int | None] = []
        self._seen: set[int] = set()

    def update(
        self,
        probs: torch.Tensor,
        labels: torch.Tensor,
        indices: Sequence[int] | None = None,
    ) -> None:
        """Add a batch.

        Args:
            probs: positive-class probabilities (B,) or (B, 1).
            labels: 0/1 labels (B,) or (B, 1).
            indices: optional dataset index of each sample (for de-duplication on merge).

        Raises:
            ValueError: on mismatched lengths, labels other than 0 and 1, or an index seen
                before.
        """
        probs_flat, labels_flat = _flat(probs, "probs"), _flat(labels, "labels")
        if len(probs_flat) != len(labels_flat) or (
            indices is not None and len(indices) != len(probs_flat)
        ):
            raise ValueError(
                f"got {len(probs_flat)} probs, {len(labels_flat)} labels"
                + (f" and {len(indices)} indices" if indices is not None else "")
            )
        if not torch.isin(labels_flat, torch.tensor([0.0, 1.0])).all():
            raise ValueError("labels must be 0 or 1")
        batch_indices = [None] * len(probs_flat) if indices is None else [int(i) for i in indices]
        repeated = self._seen.intersection(i for i in batch_indices if i is not None)
        if repeated:
            raise ValueError(f"sample index {min(repeated)} was already added")
        self._extend(probs_flat.tolist(), labels_flat.long().tolist(), batch_indices)

    def _extend(self, probs: list[float], labels: list[int], indices: list[int | None]) -> None:
        self._probs.extend(probs)
        self._labels.extend(labels)
        self._indices.extend(indices)
        self._seen.update(i for i in indices if i is not None)

    def state_dict(self) -> dict[str, Any]:
        """The whole state as plain Python lists."""
        return {
            "threshold": self.threshold,
            "probs": list(self._probs),
            "labels": list(self._labels),
            "indices": list(self._indices),
        }

    def merge(self, state: dict[str, Any]) -> None:
        """Add the samples of another meter's :meth:`state_dict`, skipping indices seen.

        Raises:
            ValueError: when the other meter used a different threshold.
        """
        if state["threshold"] != self.threshold:
            raise ValueError(
                f"cannot merge a meter with threshold {state['threshold']} into one with "
                f"{self.threshold}"
            )
        keep = [
            n for n, index in enumerate(state["indices"]) if index is None or index not in self._seen
        ]
        self._extend(
            [state["probs"][n] for n in keep],
            [state["labels"][n] for n in keep],
            [state["indices"][n] for n in keep],
        )

    def compute(self) -> dict[str, float | int]:
        """Scores over every sample added.

        Returns:
            ``accuracy``, ``auc`` (MONAI ``compute_roc_auc``; NaN with one class),
            ``sensitivity`` (TP / positives), ``specificity`` (TN / negatives), ``n``,
            ``n_positive``.

        Raises:
            ValueError: when no sample was added.
        """
        from monai.metrics import compute_roc_auc

        if not self._probs:
            raise ValueError("ClassificationMeter.compute(): no samples were added")
        probs = torch.tensor(self._probs)
        labels = torch.tensor(self._labels)
        predicted = probs >= self.threshold
        positive = labels == 1
        n_positive = int(positive.sum())
        n_negative = len(labels) - n_positive
        true_positive = int((predicted & positive).sum())
        true_negative = int((~predicted & ~positive).sum())
        nan = float("nan")
        both_classes = n_positive > 0 and n_negative > 0
        return {
            "accuracy": (true_positive + true_negative) / len(labels),
            "auc": float(compute_roc_auc(probs, labels)) if both_classes else nan,
            "sensitivity": true_positive / n_positive if n_positive else nan,
            "specificity": true_negative / n_negative if n_negative else nan,
            "n": len(labels),
            "n_positive": n_positive,
        }
