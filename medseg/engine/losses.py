"""Training losses: Dice + BCE for segmentation, BCE for classification (both on logits)."""

from __future__ import annotations

from monai.losses import DiceCELoss
from torch import nn


def build_loss(task: str) -> nn.Module:
    """The loss for ``task`` ("segmentation" or "classification"), taking logits.

    Segmentation: MONAI's :class:`DiceCELoss` with ``sigmoid=True`` (soft Dice + binary cross
    entropy on one channel). Dice is computed over the whole batch with a smoothing of 1, so
    slices without tumour neither divide by zero nor dominate the loss.
    Classification: :class:`torch.nn.BCEWithLogitsLoss`.
    """
    if task == "segmentation":
        return DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
    return nn.BCEWithLogitsLoss()
