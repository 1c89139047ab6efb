"""The models the app reviews, whatever they were saved as, opened behind one interface.

| kind | what is opened | probabilities from |
|---|---|---|
| ``run`` | a training run's checkpoint (``best.pt`` / ``last.pt``) | :func:`~medseg.engine.inference.slice_probabilities` |
| ``onnx`` | an ONNX export's ``model.onnx`` (or a bare ``.onnx`` file) | ONNX Runtime (:class:`~medseg.predict.exported.OnnxSegmenter`) |
| ``torchscript`` | a TorchScript export's ``model.ts`` (input rule inside) | ``torch.jit`` |
| ``bundle`` | a MONAI bundle's ``models/model.ts`` (the network alone) | the input rule of ``medseg predict`` around it |
| ``cv`` | a cross-validation folder: the ensemble of its folds | :func:`~medseg.engine.ensemble.load_ensemble`, mirrored on request |

An export is first checked against its record (``export.json``: the SHA-256 of each file),
so a model changed since its export is refused; any unreadable, corrupt or mismatched model
is one :class:`~medseg.errors.CheckpointError` line, which the page shows as such.

Example:
    >>> model = open_model("cv", "models/cv_demo_lgg", tta="flip")
    >>> model.probabilities(slices).shape, model.postprocessing.describe()
    ((20, 256, 256), 'remove lesions under 25 voxels')
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medseg.engine.checkpoint import load_model
from medseg.engine.ensemble import load_ensemble
from medseg.engine.inference import slice_probabilities
from medseg.errors import CheckpointError, MedsegError
from medseg.export.layout import METADATA
from medseg.paths import regular_file
from medseg.postprocessing import Postprocessing
from medseg.predict.exported import EXPORT_RECORD, OnnxSegmenter, check_recorded, read_record
from medseg.tasks import SEGMENTATION

#: the kinds of model the app opens (a run folder's checkpoint, three exports, a CV folder)
KINDS = ("run", "onnx", "torchscript", "bundle", "cv")
_CHUNK = 16  # slices per forward pass of a TorchScript export

Probabilities = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ReviewModel:
    """A model opened for review.

    Attributes:
        kind: one of :data:`KINDS`.
        path: the file opened (a CV folder: the folder).
        task: the task's name.
        image_size: the side the network was trained at.
        probabilities: (N, H, W, 3) uint8 slices -> (N, H, W) float32 tumour probabilities,
            as ``medseg predict`` computes them.
        network: what scores PCam patches (:func:`~medseg.engine.inference.patch_probabilities`):
            a checkpoint's network or a CV folder's probability model; None for an export
            (exports are segmenters).
        epoch: a checkpoint's epoch (None: not one checkpoint).
        postprocessing: a CV folder's recorded step (None: nothing recorded).
        members: the checkpoints of a CV folder's ensemble, in fold order.
    """

    kind: str
    path: Path
    task: str
    image_size: int
    probabilities: Probabilities
    network: nn.Module | None = None
    epoch: int | None = None
    postprocessing: Postprocessing | None = None
    members: tuple[Path, ...] = ()


def open_model(kind: str, path: str | Path, tta: str = "none") -> ReviewModel:
    """Open the model ``path`` of ``kind`` (:data:`KINDS`); ``tta`` ("none", "flip") applies
    to a CV folder's ensemble only.

    Raises:
        CheckpointError: one line naming the file, for an unreadable, corrupt or changed model.
        MedsegError: for an unknown kind or an unreadable postprocessing record.
    """
    path = Path(path)
    if kind == "run":
        loaded = load_model(path)
        size = loaded.config.data.image_size
        return ReviewModel(kind, path, loaded.task, size, _eager(loaded.model, size),
                           network=loaded.model, epoch=loaded.epoch)
    if kind == "onnx":
        engine = OnnxSegmenter.load(path)
        return ReviewModel(kind, path, SEGMENTATION.name, engine.image_size, engine.probabilities)
    if kind == "torchscript":
        size = _recorded_size(path.parent)
        module = _torchscript(path, path.parent)
        return ReviewModel(kind, path, SEGMENTATION.name, size, _traced(module))
    if kind == "bundle":
        folder = path.parents[1]
        size = bundle_image_size(folder)
        network = _torchscript(path, folder)
        return ReviewModel(kind, path, SEGMENTATION.name, size, _eager(network, size))
    if kind == "cv":
        ensemble = load_ensemble([path], "cpu")
        model = ensemble.probability_model(tta)
        size = ensemble.image_size
        return ReviewModel(kind, path, ensemble.task.name, size, _eager(model, size), network=model,
                           postprocessing=ensemble.postprocessing, members=ensemble.checkpoints)
    raise MedsegError(f"{path}: unknown kind of model {kind!r}; known: {', '.join(KINDS)}")


def _eager(model: nn.Module, size: int) -> Probabilities:
    return lambda slices: slice_probabilities(model, slices, size)


def _traced(module: torch.jit.ScriptModule) -> Probabilities:
    """Probabilities of a TorchScript export (the input rule is inside the module)."""

    def probabilities(slices: np.ndarray) -> np.ndarray:
        parts = []
        with torch.inference_mode():
            for start in range(0, len(slices), _CHUNK):
                batch = torch.from_numpy(np.array(slices[start : start + _CHUNK])).permute(0, 3, 1, 2)
                parts.append(module(batch.float())[:, 0].numpy())
        return np.concatenate(parts)

    return probabilities


def _torchscript(path: Path, folder: Path) -> torch.jit.ScriptModule:
    """A TorchScript file checked against its record, on the CPU, in eval mode.

    Raises:
        CheckpointError: for a missing, changed or unreadable file.
    """
    try:
        regular_file(path)
    except MedsegError as err:
        raise CheckpointError(str(err)) from None
    check_recorded(path, folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception:  # torch.jit raises its own types for every unreadable file
        raise CheckpointError(f"{path}: not a readable TorchScript model (corrupt, truncated or "
                              "not TorchScript)") from None
    return module.eval()


def _recorded_size(folder: Path) -> int:
    """The training size an export record states.

    Raises:
        CheckpointError: when there is no record or it states none.
    """
    record = read_record(folder)
    size = record.get("image_size") if record is not None else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CheckpointError(f"{folder / EXPORT_RECORD}: missing or without an image_size; "
                              "export the checkpoint again")
    return size


def bundle_image_size(folder: Path) -> int:
    """The training size a medseg bundle's ``configs/metadata.json`` states (its ``medseg``
    section).

    Raises:
        CheckpointError: for a missing or unreadable metadata file, or one without it.
    """
    path = folder / METADATA
    try:
        meta = json.loads(regular_file(path).read_text(encoding="utf-8"))
        size = meta["medseg"]["image_size"]
    except (MedsegError, OSError, ValueError, RecursionError, KeyError, TypeError):
        raise CheckpointError(f"{path}: not a medseg bundle's metadata (unreadable, or without "
                              "medseg.image_size)") from None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CheckpointError(f"{path}: medseg.image_size {size!r} is not a positive whole number")
    return size
