"""Metrics: Dice / IoU per slice and per patient from confusion counts, classification scores."""

from __future__ import annotations

from medseg.metrics.classification import ClassificationMeter
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
]
