"""Metrics: Dice / IoU per slice and per patient, classification scores, post-processing."""

from __future__ import annotations

from medseg.metrics.classification import ClassificationMeter
from medseg.metrics.postprocess import largest_connected_component
from medseg.metrics.segmentation import (
    SegmentationMeter,
    dice_from_counts,
    dice_score,
    iou_score,
)

__all__ = [
    "ClassificationMeter",
    "SegmentationMeter",
    "dice_from_counts",
    "dice_score",
    "iou_score",
    "largest_connected_component",
]
