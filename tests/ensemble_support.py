"""Ensembles for tests, made from the session's real tiny checkpoints without training:

* :func:`shifted_checkpoint`: a copy whose output bias is moved by a constant (another
  member, predicting differently, of the same task and input);
* :func:`changed_checkpoint`: a copy whose stored config differs (a mismatched member);
* :func:`write_cv_folder`: a cross-validation folder in :class:`medseg.runs.CvFolder`'s
  layout holding given checkpoints as its folds' members.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.data.folds import Folds, save_folds
from medseg.data.preprocess import preprocess_image
from medseg.engine.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from medseg.postprocessing import Postprocessing, save_postprocessing
from medseg.runs import CvFolder, RunFolder


def shifted_checkpoint(source: Path, target: Path, shift: float) -> Path:
    """A copy of ``source`` whose last bias (the output layer's) is ``shift`` higher, so its
    logits are ``shift`` higher everywhere; beside it a copy of ``source``'s split.json."""
    payload = load_checkpoint(source)
    weights = payload["model"]
    last_bias = [name for name in weights if name.endswith(".bias")][-1]
    weights[last_bias] = weights[last_bias] + torch.tensor(shift, dtype=weights[last_bias].dtype)
    save_checkpoint(payload, target)
    _copy_split(source, target)
    return target


def changed_checkpoint(source: Path, target: Path, section: str, **changes: Any) -> Path:
    """A copy of ``source`` whose stored config has ``changes`` in ``section`` (e.g.
    ``changed_checkpoint(ckpt, out, "data", image_size=64)``)."""
    payload = load_checkpoint(source)
    payload["config"][section].update(changes)
    save_checkpoint(payload, target)
    _copy_split(source, target)
    return target


def write_cv_folder(folder: Path, members: Sequence[Path], step: Postprocessing | None = None) -> Path:
    """A CV folder whose fold k's member checkpoint (and split.json) are copies of
    ``members[k]``'s, with ``folds.json`` and, given a ``step``, its postprocessing record."""
    cv = CvFolder(folder)
    folder.mkdir(parents=True)
    save_folds(Folds(seed=0, test_fraction=0.0, test=(),
                     fold_patients=tuple((f"P{k}",) for k in range(len(members)))), cv.folds_file)
    for k, member in enumerate(members):
        cv.fold(k).path.mkdir()
        shutil.copyfile(member, cv.member_checkpoint(k))
        _copy_split(member, cv.member_checkpoint(k))
    if step is not None:
        save_postprocessing(cv.postprocessing_file, step, {"rule": "chosen by a test"})
    return folder


def _copy_split(source: Path, target: Path) -> None:
    split = RunFolder.of_checkpoint(source).split_file
    if split.is_file() and RunFolder.of_checkpoint(target).split_file != split:
        shutil.copyfile(split, RunFolder.of_checkpoint(target).split_file)


def hand_probabilities(models: Sequence[LoadedModel], image: np.ndarray, *, flip: bool = False) -> np.ndarray:
    """A slice's ensemble probabilities by hand: the mean over members (and over the input as
    is and mirrored left-right, flipped back) of sigmoid probabilities at the training size,
    resized bilinearly to the slice's size."""
    x = preprocess_image(image, models[0].config.data.image_size)[None]
    probs = []
    with torch.no_grad():
        for loaded in models:
            probs.append(torch.sigmoid(loaded.model(x)))
            if flip:
                probs.append(torch.sigmoid(loaded.model(x.flip(-1))).flip(-1))
    mean = sum(probs) / len(probs)
    return F.interpolate(mean, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
