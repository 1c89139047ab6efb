"""``medseg export``: a segmentation checkpoint as ONNX, TorchScript or a MONAI bundle, each
checked against PyTorch eager before it is kept (:mod:`medseg.export.parity`).

| format | files in ``out`` |
|---|---|
| ``onnx`` | ``model.onnx`` (:class:`~medseg.export.graph.SliceModel`: input rule, network, sigmoid, resize back) |
| ``torchscript`` | ``model.ts`` (the same module, traced) |
| ``bundle`` | :data:`~medseg.export.bundle.BUNDLE_FILES` (``models/model.ts``: the network alone) |

and, last, the record ``export.json`` (:data:`~medseg.predict.exported.EXPORT_RECORD`):
format, source checkpoint and its SHA-256, the SHA-256 of every file, the parity check. Every
file is written atomically; a folder that already holds an export (its record or any of
these files) is refused, never overwritten.

A cross-validation folder (:class:`medseg.runs.CvFolder`) exports its ensemble
(:func:`medseg.engine.ensemble.load_ensemble`: the mean of its folds' probabilities,
:class:`~medseg.engine.probability.Ensemble`) inside the ONNX or TorchScript graph, checked
against the eager ensemble; the record names the members (``members``: checkpoint, SHA-256,
epoch) and the CV folder's postprocessing step, which stays outside the graph (it acts on a
patient's whole mask stack). A MONAI bundle holds one network (``network_def``): a CV folder
is refused for it.

Example:
    >>> result = export_checkpoint("models/demo_lgg/best.pt", "onnx", "exports/demo_onnx")
    >>> print(result.parity.line())
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medseg import __version__
from medseg.demo.marker import file_sha256
from medseg.engine.checkpoint import LoadedModel, load_model
from medseg.engine.ensemble import LoadedEnsemble, load_ensemble
from medseg.errors import CheckpointError, DataError
from medseg.export.bundle import check_bundle_network, write_bundle
from medseg.export.graph import SliceModel
from medseg.export.layout import BUNDLE_FILES, MODEL_TS, TORCHSCRIPT
from medseg.export.onnx import OPSET, write_onnx
from medseg.export.parity import Parity, check_parity
from medseg.export.torchscript import load_torchscript, write_torchscript
from medseg.files import atomic_path, write_text
from medseg.locks import folder_lock
from medseg.metrics.threshold import DEFAULT_THRESHOLD
from medseg.predict.exported import (
    EXPORT_RECORD,
    META_IMAGE_SIZE,
    META_INPUT,
    META_OUTPUT,
    META_TASK,
    META_VERSION,
    MODEL_ONNX,
    OnnxSegmenter,
)
from medseg.runs import CvFolder
from medseg.tasks import SEGMENTATION

#: format -> the files it writes (besides the record)
FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": (MODEL_ONNX,),
    "torchscript": (MODEL_TS,),
    "bundle": BUNDLE_FILES,
}
INPUT_TEXT = ("image: (N, 3, H, W) float32, values 0..255; channels pre-contrast T1, FLAIR, "
              "post-contrast T1; any N, H, W (resized to {size} x {size} and z-scored per slice "
              "and channel inside the model)")
OUTPUT_TEXT = "probability: (N, 1, H, W) float32 in [0, 1], tumour; a mask is probability >= threshold"


@dataclass
class ExportResult:
    """What ``medseg export`` wrote."""

    format: str
    out: Path
    files: list[Path] = field(default_factory=list)
    parity: Parity | None = None


def check_out(out: Path, fmt: str) -> None:
    """Refuse an ``out`` that is a file or already holds an export.

    Raises:
        DataError: naming ``out`` and the file in the way.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    for name in (EXPORT_RECORD, *FORMATS[fmt]):
        if (out / name).exists() or (out / name).is_symlink():
            raise DataError(f"--out {out}: already holds an export ({name}); exports are never "
                            "overwritten: choose another --out")


def _loaded(checkpoint: Path) -> LoadedModel:
    if checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint}: a folder but not a cross-validation folder (no "
                              f"{CvFolder.FOLDS_NAME}); medseg export takes one checkpoint file "
                              "(.pt) or a CV folder")
    loaded = load_model(checkpoint, device="cpu")
    if loaded.task != SEGMENTATION.name:
        raise CheckpointError(f"{checkpoint}: a {loaded.task} checkpoint; medseg export exports "
                              "segmentation checkpoints")
    return loaded


def _ensemble(folder: Path, fmt: str) -> LoadedEnsemble:
    """A CV folder's ensemble, refused for a bundle or a classification task.

    Raises:
        CheckpointError: one line naming the folder.
    """
    if fmt == "bundle":
        raise CheckpointError(f"{folder}: a cross-validation folder is an ensemble, and a MONAI "
                              "bundle holds one network (network_def); export it with --format "
                              "onnx or torchscript, or export one fold's last.pt as a bundle")
    ensemble = load_ensemble([folder], "cpu")
    if ensemble.task.name != SEGMENTATION.name:
        raise CheckpointError(f"{folder}: a {ensemble.task.name} cross-validation; medseg export "
                              "exports segmentation models")
    return ensemble


def _torch_probabilities(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def probabilities(stack: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(stack)).permute(0, 3, 1, 2).float()
            return module(batch)[:, 0].numpy()

    return probabilities


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path) -> ExportResult:
    """Export a segmentation checkpoint to ``out`` in format ``fmt`` (module docstring).

    Raises:
        MedsegError: for an unknown format.
        DataError: when ``out`` is a file or already holds an export.
        CheckpointError: for an unreadable, classification or (bundle) BGN checkpoint, a folder
            that is not a CV folder, a CV folder as a bundle or lacking a fold's member, or an
            export that fails the parity check (then nothing is kept).
    """
    if fmt not in FORMATS:
        raise DataError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")
    checkpoint, out = Path(checkpoint), Path(out)
    check_out(out, fmt)
    source: LoadedModel | LoadedEnsemble
    network: torch.nn.Module
    if CvFolder.is_cv_folder(checkpoint):
        source = _ensemble(checkpoint, fmt)
        network = source.probability_model()
    else:
        source = _loaded(checkpoint)
        network = source.model
    if fmt == "bundle":
        assert isinstance(source, LoadedModel)  # _ensemble refuses a bundle
        check_bundle_network(source)
    with folder_lock(out, what="export folder"):
        check_out(out, fmt)  # again, now that no other medseg process writes there
        result = _export(network, source, fmt, out)
        _write_record(result, source, checkpoint)
    return result


def _export(network: torch.nn.Module, source: LoadedModel | LoadedEnsemble, fmt: str,
            out: Path) -> ExportResult:
    """Write ``network`` (one checkpoint's, or an ensemble's probability model) as ``fmt``."""
    size = source.config.data.image_size
    result = ExportResult(fmt, out)
    if fmt == "onnx":
        import onnxruntime

        meta = {META_TASK: SEGMENTATION.name, META_IMAGE_SIZE: str(size), META_VERSION: __version__,
                META_INPUT: INPUT_TEXT.format(size=size), META_OUTPUT: OUTPUT_TEXT}
        with atomic_path(out / MODEL_ONNX) as tmp:
            write_onnx(SliceModel(network, size).eval(), tmp, meta)
            engine = OnnxSegmenter.load(tmp)
            result.parity = check_parity(engine.probabilities, network, size,
                                         f"ONNX Runtime {onnxruntime.__version__}")
        result.files.append(out / MODEL_ONNX)
    elif fmt == "torchscript":
        with atomic_path(out / MODEL_TS) as tmp:
            write_torchscript(SliceModel(network, size).eval(), tmp, size)
            module = load_torchscript(tmp)
            result.parity = check_parity(_torch_probabilities(module), network, size, "TorchScript")
        result.files.append(out / MODEL_TS)
    else:
        (out / TORCHSCRIPT).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / TORCHSCRIPT) as tmp:
            write_torchscript(network, tmp, size)
            wrapped = SliceModel(load_torchscript(tmp), size).eval()
            result.parity = check_parity(_torch_probabilities(wrapped), network, size,
                                         "TorchScript (bundle)")
        result.files.append(out / TORCHSCRIPT)
        assert isinstance(source, LoadedModel)
        result.files += write_bundle(source, out, threshold=DEFAULT_THRESHOLD,
                                     parity=result.parity.as_dict())
    return result


def _write_record(result: ExportResult, source: LoadedModel | LoadedEnsemble, given: Path) -> None:
    """``export.json``, written last: a folder holding it holds a complete export. For a CV
    folder, ``checkpoint`` names the folder and ``members`` its folds' checkpoints."""
    assert result.parity is not None
    size = source.config.data.image_size
    if isinstance(source, LoadedModel):
        origin: dict[str, object] = {
            "checkpoint": str(source.checkpoint_path),
            "checkpoint_sha256": file_sha256(source.checkpoint_path), "epoch": source.epoch}
    else:
        origin = {
            "checkpoint": str(given), "checkpoint_sha256": None, "epoch": None,
            "ensemble": "mean of the members' probabilities",
            "members": [{"checkpoint": str(member.checkpoint_path),
                         "sha256": file_sha256(member.checkpoint_path), "epoch": member.epoch}
                        for member in source.members],
            "postprocessing": source.postprocessing.to_dict(),
            "postprocessing_file": (None if source.postprocessing_file is None
                                    else str(source.postprocessing_file)),
        }
    task = source.members[0].task if isinstance(source, LoadedEnsemble) else source.task
    record = {
        "written_by": "medseg export", "version": __version__, "format": result.format,
        "task": task, "image_size": size, "threshold": DEFAULT_THRESHOLD,
        **origin,
        "input": None if result.format == "bundle" else INPUT_TEXT.format(size=size),
        "output": None if result.format == "bundle" else OUTPUT_TEXT,
        "onnx_opset": OPSET if result.format == "onnx" else None,
        "files": {path.relative_to(result.out).as_posix(): file_sha256(path) for path in result.files},
        "parity": result.parity.as_dict(),
    }
    write_text(result.out / EXPORT_RECORD, json.dumps(record, indent=2) + "\n")
    result.files.append(result.out / EXPORT_RECORD)
