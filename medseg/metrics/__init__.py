"""Metrics: the decision rule (:mod:`medseg.metrics.threshold`), Dice / IoU per slice and per
patient from pixel confusion counts, classification scores from sample confusion counts and
the ROC curve.

The measures beyond Dice (they import scipy, and MONAI when a distance is due, so they are not
re-exported here: predict and the app import this package at start-up):
:mod:`medseg.metrics.surface` (HD95, ASSD, NSD), :mod:`medseg.metrics.volume`,
:mod:`medseg.metrics.lesions` (the one lesion labelling, lesion-wise detection) and
:mod:`medseg.metrics.measures` (a patient's row, the summary, :class:`PatientMeasureMeter`).
"""

from __future__ import annotations

from medseg.metrics.classification import (
    ClassificationMeter,
    roc_auc,
    roc_curve,
    sample_confusion_counts,
)
from medseg.metrics.segmentation import (
    SegmentationMeter,
    dice_from_counts,
    dice_score,
    iou_from_counts,
    iou_score,
    pixel_confusion_counts,
)
from medseg.metrics.threshold import DEFAULT_THRESHOLD, binarize, check_threshold

__all__ = [
    "DEFAULT_THRESHOLD",
    "ClassificationMeter",
    "SegmentationMeter",
    "binarize",
    "check_threshold",
    "dice_from_counts",
    "dice_score",
    "iou_from_counts",
    "iou_score",
    "pixel_confusion_counts",
    "roc_auc",
    "roc_curve",
    "sample_confusion_counts",
]
