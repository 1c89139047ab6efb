"""Postprocessing of predicted masks: removing small lesions, keeping the largest.

A :class:`Postprocessing` is applied to a patient's whole mask stack (N, H, W) after the
threshold, with medseg's one lesion labelling (:func:`medseg.metrics.lesions.label_lesions`,
26-connectivity in voxel index space), so a "component" here is a lesion everywhere else.
The identity (``Postprocessing()``) changes nothing. A cross-validation chooses one on its
out-of-fold predictions and records it (``postprocessing.json`` in the CV folder); evaluate,
predict and the app apply that record identically.

Keeping only the largest lesion is never a default: LGG tumours can be multifocal.

A record (``postprocessing.json``) is a JSON object whose ``postprocessing`` key holds the
chosen step (:meth:`Postprocessing.to_dict`); its other keys are the evidence the chooser
wrote (the rule, each candidate's scores), which readers show but never act on.

Example:
    >>> step = Postprocessing(min_voxels=20)
    >>> cleaned = step.apply(masks_nhw)
    >>> Postprocessing.from_dict(step.to_dict()) == step
    True
    >>> save_postprocessing("models/cv_demo_lgg/postprocessing.json", step, {"rule": "..."})
    >>> load_postprocessing("models/cv_demo_lgg/postprocessing.json")
    Postprocessing(min_voxels=20, keep_largest=False)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.files import write_text
from medseg.paths import read_json

#: the key of the chosen step in a postprocessing record (the rest is its evidence)
CHOSEN_KEY = "postprocessing"


@dataclass(frozen=True)
class Postprocessing:
    """What is removed from a predicted mask stack.

    Args:
        min_voxels: lesions with fewer voxels are removed (0: none is).
        keep_largest: keep only the largest lesion (the first by
            :func:`~medseg.metrics.lesions.label_lesions`' order).

    Raises:
        ValueError: for a negative or non-integer ``min_voxels``.
    """

    min_voxels: int = 0
    keep_largest: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.min_voxels, bool) or not isinstance(self.min_voxels, int) or self.min_voxels < 0:
            raise ValueError(f"min_voxels must be a whole number >= 0, got {self.min_voxels!r}")
        if not isinstance(self.keep_largest, bool):
            raise ValueError(f"keep_largest must be true or false, got {self.keep_largest!r}")

    @property
    def is_identity(self) -> bool:
        """True when applying it changes no mask."""
        return self.min_voxels <= 1 and not self.keep_largest

    def describe(self) -> str:
        """The step in words, for reports and the app ("none" for the identity)."""
        steps = []
        if self.min_voxels > 1:
            steps.append(f"remove lesions under {self.min_voxels} voxels")
        if self.keep_largest:
            steps.append("keep the largest lesion")
        return "; ".join(steps) if steps else "none"

    def apply(self, masks: np.ndarray) -> np.ndarray:
        """The postprocessed copy of a binary mask stack.

        Args:
            masks: (N, H, W) (one patient's slices, in order) or (H, W); nonzero is tumour.

        Returns:
            uint8 array of the same shape, in {0, 1}.

        Raises:
            ValueError: for a mask that is not 2-D or 3-D.
        """
        masks = np.asarray(masks)
        if masks.ndim not in (2, 3):
            raise ValueError(f"expected a (slices, rows, columns) or (rows, columns) mask, got shape {masks.shape}")
        stack = masks[None] if masks.ndim == 2 else masks
        kept = stack != 0
        if not self.is_identity and kept.any():
            # here, not at the top: SciPy's ndimage is 0.6 s of predict's cold start, which
            # imports this module for the identity step
            from medseg.metrics.lesions import label_lesions

            labels, count = label_lesions(kept)
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            keep = sizes >= max(self.min_voxels, 1)
            keep[0] = False
            if self.keep_largest:
                keep[2:] = False  # labels are numbered largest first
            kept = keep[labels]
        out = kept.astype(np.uint8)
        return out[0] if masks.ndim == 2 else out

    def to_dict(self) -> dict[str, Any]:
        return {"min_voxels": self.min_voxels, "keep_largest": self.keep_largest}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Postprocessing:
        """The step a :meth:`to_dict` record describes.

        Raises:
            ValueError: for a record with other keys or values out of range.
        """
        if not isinstance(data, Mapping) or set(data) != {"min_voxels", "keep_largest"}:
            raise ValueError("a postprocessing record holds exactly min_voxels and keep_largest")
        return cls(min_voxels=data["min_voxels"], keep_largest=data["keep_largest"])


def save_postprocessing(path: str | Path, step: Postprocessing, evidence: Mapping[str, Any]) -> Path:
    """Write a postprocessing record atomically: ``step`` under :data:`CHOSEN_KEY`, beside
    ``evidence`` (JSON-serializable; it may not use that key).

    Raises:
        ValueError: when ``evidence`` holds :data:`CHOSEN_KEY`.
    """
    if CHOSEN_KEY in evidence:
        raise ValueError(f"the evidence may not hold {CHOSEN_KEY!r}")
    return write_text(path, json.dumps({CHOSEN_KEY: step.to_dict(), **evidence}, indent=2) + "\n")


def load_postprocessing(path: str | Path) -> Postprocessing:
    """The step a postprocessing record chose.

    Raises:
        MedsegError: naming ``path``, when it is missing, not a regular file, not JSON, or
            holds no valid step.
    """
    path = Path(path)
    record = read_json(path, "the postprocessing record")
    try:
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return Postprocessing.from_dict(record.get(CHOSEN_KEY, {}))
    except ValueError as err:
        raise MedsegError(f"{path}: not a postprocessing record ({err})") from None
