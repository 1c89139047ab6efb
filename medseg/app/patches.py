"""PatchCamelyon patches for the app: read the first patches of a split and score them.

Example:
    >>> patches, labels = read_patches("demo_data/pcam", "test", count=64)
    >>> probs = medseg.engine.patch_probabilities(loaded.model, patches)
    >>> score_patches(probs, labels, threshold=0.5)["auc"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.data.pcam import inspect_pcam_split, open_h5, pcam_files
from medseg.tasks import CLASSIFICATION

#: split label shown in the app -> medseg split name
SPLIT_LABELS = {"Test": "test", "Validation": "val", "Train": "train"}


def read_patches(root: str | Path, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` patches of a PCam split and their labels.

    Args:
        root: folder of ``camelyonpatch_level_2_split_*_{x,y}.h5`` files.
        split: "train", "val" or "test".
        count: how many patches at most.

    Returns:
        patches (n, 96, 96, 3) uint8 and labels (n,) uint8 in {0, 1}.

    Raises:
        DataError: when the split's files are missing or malformed.
    """
    x_path, y_path = pcam_files(root, split)
    n = min(count, inspect_pcam_split(x_path, y_path))
    with open_h5(x_path, "x") as x:
        patches = np.asarray(x[:n])
    with open_h5(y_path, "y") as y:
        labels = np.asarray(y[:n]).reshape(-1)
    return patches, labels


def score_patches(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, AUC, sensitivity and specificity from the classification task's meter."""
    meter = CLASSIFICATION.build_meter(threshold)
    meter.update(torch.from_numpy(np.asarray(probs, np.float32)),
                 torch.from_numpy(np.asarray(labels, np.float32)))
    return meter.compute()
