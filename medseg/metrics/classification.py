"""Binary classification metrics: accuracy, sensitivity, specificity and ROC AUC (MONAI).

Example:
    >>> meter = ClassificationMeter()
    >>> meter.update(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1, 0, 0]))
    >>> meter.compute()["accuracy"]
    0.6666666666666666
"""

from __future__ import annotations

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

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch.

        Args:
            probs: positive-class probabilities (B,) or (B, 1).
            labels: 0/1 labels (B,) or (B, 1).

        Raises:
            ValueError: on mismatched lengths or labels other than 0 and 1.
        """
        probs_flat, labels_flat = _flat(probs, "probs"), _flat(labels, "labels")
        if len(probs_flat) != len(labels_flat):
            raise ValueError(f"got {len(probs_flat)} probs and {len(labels_flat)} labels")
        if not torch.isin(labels_flat, torch.tensor([0.0, 1.0])).all():
            raise ValueError("labels must be 0 or 1")
        self._probs.extend(probs_flat.tolist())
        self._labels.extend(labels_flat.long().tolist())

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
            "auc": float(torch.as_tensor(compute_roc_auc(probs, labels))) if both_classes else nan,
            "sensitivity": true_positive / n_positive if n_positive else nan,
            "specificity": true_negative / n_negative if n_negative else nan,
            "n": len(labels),
            "n_positive": n_positive,
        }
