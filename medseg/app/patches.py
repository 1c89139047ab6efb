"""PatchCamelyon patches for the app: read the first patches of a split and score them.

Example:
    >>> patches, labels = read_patches("demo_data/pcam", "test", count=64)
    >>> probs = medseg.engine.patch_probabilities(loaded.model, patches)
    >>> score_patches(probs, labels, threshold=0.5)["auc"]
    >>> outline_centre(patches)[0, 32, 40].tolist()  # on the centre square's top edge
    [0, 229, 255]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.data.pcam import (
    LABEL_REGION_SIZE,
    inspect_pcam_split,
    label_region,
    open_h5,
    pcam_files,
)
from medseg.tasks import CLASSIFICATION

#: split label shown in the app -> medseg split name
SPLIT_LABELS = {"Test": "test", "Validation": "val", "Train": "train"}
#: colour of the outline around the labelled centre region
CENTRE_OUTLINE_RGB = (0, 229, 255)


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


def outline_centre(
    patches: np.ndarray, size: int = LABEL_REGION_SIZE, rgb: tuple[int, int, int] = CENTRE_OUTLINE_RGB
) -> np.ndarray:
    """Draw the 1-px border of the centre ``size`` x ``size`` square, which PCam's label is about
    (:func:`medseg.data.pcam.label_region`: rows and columns 32..63 of a 96 x 96 patch).

    Args:
        patches: (N, H, W, 3) or (H, W, 3) uint8.
        size: side of the centre square (PCam labels the centre 32 x 32 region).
        rgb: border colour.

    Returns:
        a copy of ``patches``, unchanged inside and outside the border.

    Raises:
        ValueError: on a bad shape, or a square that is empty or bigger than the patch.
    """
    patches = np.asarray(patches)
    if patches.ndim not in (3, 4) or patches.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) or (H, W, 3) patches, got {patches.shape}")
    height, width = patches.shape[-3:-1]
    rows, cols = label_region(height, width, size)
    top, bottom, left, right = rows.start, rows.stop - 1, cols.start, cols.stop - 1
    out = patches.copy()
    colour = np.asarray(rgb, dtype=patches.dtype)
    out[..., [top, bottom], left : right + 1, :] = colour
    out[..., top : bottom + 1, [left, right], :] = colour
    return out
