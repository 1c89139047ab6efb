"""The decision rule of every medseg score, mask and prediction: a pixel or a patch is positive
when its probability is at or above the threshold (``>=``), a threshold strictly between 0
and 1.

Example:
    >>> binarize(np.array([0.2, 0.5, 0.9]), 0.5)
    array([0, 1, 1], dtype=uint8)
    >>> binarize(torch.tensor([0.2, 0.5, 0.9]), 0.5)
    tensor([False,  True,  True])
    >>> check_threshold(1.0, "--threshold")
    Traceback (most recent call last):
    medseg.errors.MedsegError: --threshold: 1.0 must be between 0 and 1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
import torch

from medseg.errors import MedsegError

#: the threshold of the meters and the command line, and where the app's slider opens
DEFAULT_THRESHOLD = 0.5


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """Return ``threshold`` when it lies strictly between 0 and 1.

    At 0 every pixel would be positive, above 1 none; NaN is refused too.

    Args:
        threshold: the probability threshold.
        name: what the message calls it (``"--threshold"`` for a command-line option).

    Raises:
        MedsegError: ``"<name>: <threshold> must be between 0 and 1"``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise MedsegError(f"{name}: {threshold} must be between 0 and 1")
    return threshold


@overload
def binarize(probs: torch.Tensor, threshold: float) -> torch.Tensor: ...
@overload
def binarize(probs: np.ndarray | float | Sequence[float], threshold: float) -> np.ndarray: ...
def binarize(probs, threshold):
    """Positive where ``probs >= threshold``.

    Args:
        probs: probabilities: a tensor, an array, a list or one number.
        threshold: the decision threshold (see :func:`check_threshold`).

    Returns:
        for a tensor, a bool tensor (for counting); otherwise a uint8 array in {0, 1} of the
        same shape (a mask as medseg reads and writes masks).
    """
    if isinstance(probs, torch.Tensor):
        return probs >= threshold
    return (np.asarray(probs) >= threshold).astype(np.uint8)
