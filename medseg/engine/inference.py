"""Batched inference shared by validation, ``medseg evaluate``, ``medseg predict`` and the app."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader


def predict_probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Sigmoid probabilities of ``model`` for preprocessed ``images`` (N, 3, S, S).

    Runs in eval mode under :func:`torch.inference_mode`, ``batch_size`` images at a time on
    the model's device.

    Returns:
        float32 CPU tensor: (N, 1, S, S) for a segmenter, (N, 1) for a classifier.

    Example:
        >>> probs = predict_probabilities(loaded.model, torch.stack([preprocess_image(img, 256)]))
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            logits = model(chunk.to(device, non_blocking=True))
            outputs.append(torch.sigmoid(logits.float()).cpu())
    model.train(was_training)
    return torch.cat(outputs)


def score_loader(model: nn.Module, loader: DataLoader, task: str, threshold: float = 0.5) -> dict[str, Any]:
    """Run ``model`` over ``loader`` and return the task's metrics.

    Segmentation: :class:`medseg.metrics.SegmentationMeter` (Dice/IoU over slices with the
    empty-slice convention, per-patient 3-D Dice, empty-slice false-positive rate).
    Classification: :class:`medseg.metrics.ClassificationMeter` (accuracy, AUC, sensitivity,
    specificity).
    """
    from medseg.metrics import ClassificationMeter, SegmentationMeter

    segmentation = task == "segmentation"
    meter = SegmentationMeter(threshold=threshold) if segmentation else ClassificationMeter(threshold=threshold)
    for batch in loader:
        probs = predict_probabilities(model, batch["image"], batch_size=len(batch["image"]))
        if segmentation:
            slices = [int(number) for number in batch["slice"]]
            meter.update(probs, batch["label"], list(batch["patient"]), slices)
        else:
            meter.update(probs, batch["label"])
    return meter.compute()
