"""Metrics: Dice / IoU per slice and per patient from confusion counts, classification scores.

``confusion_counts`` here is the segmentation one (pixel counts per image); the classification
counts at a threshold are :func:`medseg.metrics.classification.confusion_counts`.
"""

from __future__ import annotations

from medseg.metrics.classification import ClassificationMeter, roc_curve
from medseg.metrics.segmentation import (
    SegmentationMeter,
    confusion_counts,
    dice_from_counts,
    dice_score,
    iou_from_counts,
    iou_score,
)

__all__ = [
    "ClassificationMeter",
    "SegmentationMeter",
    "confusion_counts",
    "dice_from_counts",
    "dice_score",
    "iou_from_counts",
    "iou_score",
    "roc_curve",
]
