"""Binary classification metrics: accuracy, sensitivity, specificity and ROC AUC, the sample
confusion counts at a threshold and the ROC curve. The AUC is the area under the ROC curve
that :func:`roc_curve` returns (the one the app draws), so the two always agree.

Example:
    >>> meter = ClassificationMeter()
    >>> meter.update(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1, 0, 0]))
    >>> meter.compute()["accuracy"]
    0.6666666666666666
    >>> sample_confusion_counts([0.9, 0.2, 0.6], [1, 0, 0], threshold=0.5)
    {'tp': 1, 'fp': 1, 'tn': 1, 'fn': 0}
    >>> fpr, tpr, thresholds = roc_curve([0.9, 0.2, 0.6], [1, 0, 0])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 1.0, 1.0, 1.0])
    >>> roc_auc([0.9, 0.2, 0.6], [1, 0, 0])
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medseg.metrics.threshold import DEFAULT_THRESHOLD, binarize, check_threshold

#: what the functions here take: a tensor, an array or a list, (B,) or (B, 1)
Scores = torch.Tensor | np.ndarray | Sequence[float]


def _flat(values: Scores, name: str) -> torch.Tensor:
    values = torch.as_tensor(values).detach()
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must be (B,) or (B, 1), got {tuple(values.shape)}")
    return values.float().cpu()


def _checked(probs: Scores, labels: Scores) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) float32 probabilities and labels, validated as :meth:`ClassificationMeter.update`."""
    probs_flat, labels_flat = _flat(probs, "probs"), _flat(labels, "labels")
    if len(probs_flat) != len(labels_flat):
        raise ValueError(f"got {len(probs_flat)} probs and {len(labels_flat)} labels")
    if not torch.isin(labels_flat, torch.tensor([0.0, 1.0])).all():
        raise ValueError("labels must be 0 or 1")
    return probs_flat, labels_flat


def sample_confusion_counts(
    probs: Scores, labels: Scores, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, int]:
    """True/false positive and negative samples at ``threshold`` (:func:`binarize`'s rule).

    Args:
        probs: positive-class probabilities (B,) or (B, 1): tensor, array or list. Compared in
            float32, as :class:`ClassificationMeter` does.
        labels: 0/1 labels (B,) or (B, 1).
        threshold: a sample is predicted positive when its probability is ``>= threshold``.

    Returns:
        ``{"tp": ..., "fp": ..., "tn": ..., "fn": ...}`` (ints).

    Raises:
        ValueError: on mismatched lengths, bad shapes or labels other than 0 and 1.
    """
    probs_flat, labels_flat = _checked(probs, labels)
    predicted = binarize(probs_flat, threshold)
    positive = labels_flat == 1
    return {
        "tp": int((predicted & positive).sum()),
        "fp": int((predicted & ~positive).sum()),
        "tn": int((~predicted & ~positive).sum()),
        "fn": int((~predicted & positive).sum()),
    }


def roc_curve(probs: Scores, labels: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve: one point per distinct probability, tied probabilities as one step.

    Point ``i`` holds the rates when a sample is positive iff its probability is
    ``>= thresholds[i]`` (the rule of :func:`sample_confusion_counts`). The first threshold is
    ``inf`` (point (0, 0)); the last is the smallest probability (point (1, 1)). Every point is
    kept (no thinning of collinear points). The area under it is :func:`roc_auc`, ties
    counting half.

    With one class only, the rate of the missing class is undefined: NaN at every point (no
    warning), as :class:`ClassificationMeter` reports NaN for its AUC, sensitivity or
    specificity; so the area is NaN too.

    Args:
        probs: positive-class probabilities (B,) or (B, 1) (compared in float32, as the meter).
        labels: 0/1 labels (B,) or (B, 1).

    Returns:
        (false-positive rates, true-positive rates, thresholds), float64 arrays of equal length,
        rates non-decreasing and thresholds decreasing.

    Raises:
        ValueError: on no samples, mismatched lengths, bad shapes or labels other than 0 and 1.
    """
    probs_flat, labels_flat = _checked(probs, labels)
    if len(probs_flat) == 0:
        raise ValueError("roc_curve(): no samples")
    scores = probs_flat.numpy().astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], labels_flat.numpy()[order] == 1
    # last sample of each run of equal probabilities: the curve only moves between runs
    ends = np.append(np.flatnonzero(np.diff(scores)), len(scores) - 1)
    tps = np.append(0, np.cumsum(positive)[ends])
    fps = np.append(0, ends + 1) - tps
    n_positive, n_negative = tps[-1], fps[-1]
    nan = np.full(len(tps), np.nan)
    tpr = tps / n_positive if n_positive else nan
    fpr = fps / n_negative if n_negative else nan
    return fpr, tpr, np.append(np.inf, scores[ends])


def roc_auc(probs: Scores, labels: Scores) -> float:
    """The area under :func:`roc_curve` (trapezoids: a tied positive-negative pair counts
    half), i.e. the share of positive-negative pairs ranked in the right order.

    Returns:
        the AUC; NaN when only one class is present.

    Raises:
        ValueError: as :func:`roc_curve`.
    """
    fpr, tpr, _ = roc_curve(probs, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


class ClassificationMeter:
    """Accumulate (probability, label) pairs; report accuracy, sensitivity, specificity, AUC.

    Undefined values are NaN, never an exception: ``auc`` when only one class is present
    (ROC AUC needs both), ``sensitivity`` without positives, ``specificity`` without negatives.

    Args:
        threshold: a sample is predicted positive when its probability is ``>= threshold``.

    Raises:
        MedsegError: a threshold outside (0, 1) (:func:`check_threshold`).
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = check_threshold(threshold)
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
        probs_flat, labels_flat = _checked(probs, labels)
        self._probs.extend(probs_flat.tolist())
        self._labels.extend(labels_flat.long().tolist())

    def compute(self) -> dict[str, float | int]:
        """Scores over every sample added.

        Returns:
            ``accuracy``, ``auc`` (:func:`roc_auc`; NaN with one class),
            ``sensitivity`` (TP / positives), ``specificity`` (TN / negatives), ``n``,
            ``n_positive``.

        Raises:
            ValueError: when no sample was added.
        """
        if not self._probs:
            raise ValueError("ClassificationMeter.compute(): no samples were added")
        probs = torch.tensor(self._probs)
        labels = torch.tensor(self._labels)
        counts = sample_confusion_counts(probs, labels, self.threshold)
        n_positive = counts["tp"] + counts["fn"]
        n_negative = counts["tn"] + counts["fp"]
        nan = float("nan")
        return {
            "accuracy": (counts["tp"] + counts["tn"]) / len(labels),
            "auc": roc_auc(probs, labels),
            "sensitivity": counts["tp"] / n_positive if n_positive else nan,
            "specificity": counts["tn"] / n_negative if n_negative else nan,
            "n": len(labels),
            "n_positive": n_positive,
        }
