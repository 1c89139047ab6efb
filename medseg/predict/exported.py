"""Exported models as ``medseg predict`` reads them: the ONNX contract written by
``medseg export`` (:mod:`medseg.export`) and :class:`OnnxSegmenter`, the ONNX Runtime engine.

An ONNX export is a folder holding ``model.onnx`` and its record ``export.json`` (format, the
SHA-256 of every file, the parity check). The model takes ``image`` (N, 3, H, W) float32
values 0..255 (pre-contrast T1, FLAIR, post-contrast T1; any N, H and W) and gives
``probability`` (N, 1, H, W): the resize to the training size, the z-score and the resize
back are inside the graph (:class:`medseg.export.graph.SliceModel`). Its metadata
(``medseg.*`` properties) names the task and the training size.

A model is refused with one :class:`~medseg.errors.CheckpointError` line when it is not a
regular file, not ONNX (corrupt, truncated), not a medseg segmentation export, or no longer
the file its record lists (changed after export).

Example:
    >>> engine = OnnxSegmenter.load("exports/demo_onnx")  # or exports/demo_onnx/model.onnx
    >>> engine.probabilities([slice_hwc]).shape
    (1, 256, 256)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.demo.marker import file_sha256
from medseg.errors import CheckpointError, MedsegError
from medseg.paths import regular_file
from medseg.tasks import SEGMENTATION

MODEL_ONNX = "model.onnx"
EXPORT_RECORD = "export.json"
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
#: ONNX metadata properties of a medseg export
META_TASK = "medseg.task"
META_IMAGE_SIZE = "medseg.image_size"
META_VERSION = "medseg.version"
META_INPUT = "medseg.input"
META_OUTPUT = "medseg.output"
_CHUNK = 16  # slices per run
#: ``medseg predict --engine``: auto follows the model file (an ONNX export: ONNX Runtime)
ENGINES = ("auto", "torch", "onnxruntime")


def is_onnx_model(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX export: a ``.onnx`` file or a folder holding ``model.onnx``."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" or (path / MODEL_ONNX).exists()


def resolve_engine(model: str | Path, engine: str = "auto") -> str:
    """The engine that runs ``model``: "onnxruntime" for an ONNX export, "torch" for a
    checkpoint.

    Raises:
        MedsegError: for an unknown engine, or one that cannot run that file.
    """
    if engine not in ENGINES:
        raise MedsegError(f"--engine {engine}: unknown; choose one of {', '.join(ENGINES)}")
    needed = "onnxruntime" if is_onnx_model(model) else "torch"
    if engine not in ("auto", needed):
        if needed == "torch":
            raise MedsegError(f"{model}: a checkpoint runs in torch; for ONNX Runtime export it "
                              f"first: medseg export {model} --format onnx --out DIR")
        raise MedsegError(f"{model}: an ONNX export runs in ONNX Runtime (--engine onnxruntime), "
                          "not torch")
    return needed


def read_record(folder: Path) -> dict[str, Any] | None:
    """The export record ``export.json`` in ``folder`` (None when there is none).

    Raises:
        CheckpointError: for a record that is not a JSON object.
    """
    path = folder / EXPORT_RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(regular_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, MedsegError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise CheckpointError(f"{path}: not a medseg export record")
    return record


def check_recorded(path: Path, folder: Path | None = None) -> None:
    """Refuse ``path`` when the export record of ``folder`` (default: the folder holding
    ``path``) lists another SHA-256 for it (a bundle's ``models/model.ts`` is listed by its
    path in the export folder).

    Raises:
        CheckpointError: naming the file and its record.
    """
    folder = path.parent if folder is None else folder
    record = read_record(folder)
    name = path.relative_to(folder).as_posix()
    if record is None or name not in record["files"]:
        return
    if file_sha256(path) != record["files"][name]:
        raise CheckpointError(f"{path}: does not match its export record {EXPORT_RECORD} "
                              "(changed after export); export the checkpoint again")


class OnnxSegmenter:
    """A medseg segmentation export run by ONNX Runtime on the CPU.

    Args:
        session: an ``onnxruntime.InferenceSession`` of a checked model.
        image_size: the side the network was trained at (from the metadata).
        path: the model file.
    """

    def __init__(self, session: Any, image_size: int, path: Path) -> None:
        self.session = session
        self.image_size = image_size
        self.path = path

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None) -> OnnxSegmenter:
        """Open and check an ONNX export (a ``.onnx`` file or an export folder).

        Args:
            path: ``model.onnx`` or the folder holding it.
            threads: ONNX Runtime's intra-op threads (None: its default).

        Raises:
            CheckpointError: as the module docstring says.
        """
        import onnxruntime as ort

        path = Path(path)
        if path.is_dir():
            path = path / MODEL_ONNX
        if not path.exists():
            raise CheckpointError(f"{path}: ONNX model not found")
        try:
            regular_file(path)
        except MedsegError as err:
            raise CheckpointError(str(err)) from None
        check_recorded(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 4  # its refusals become our one line, not log noise
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # ONNX Runtime raises its own types for every unreadable model
            raise CheckpointError(f"{path}: not a readable ONNX model (corrupt, truncated or not "
                                  "ONNX)") from None
        return cls(session, _checked_size(session, path), path)

    def probabilities(self, slices: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Tumour probabilities (N, H, W) float32 of RGB slices (H, W, 3) uint8 of one size,
        as :func:`medseg.engine.inference.slice_probabilities` gives them.

        Raises:
            ValueError: when there is no slice or the slices differ in size.
        """
        if len(slices) == 0:
            raise ValueError("probabilities needs at least one slice")
        stack = np.stack([np.asarray(image) for image in slices])
        outputs = []
        for start in range(0, len(stack), _CHUNK):
            batch = np.ascontiguousarray(stack[start : start + _CHUNK].transpose(0, 3, 1, 2), np.float32)
            outputs.append(self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0][:, 0])
        return np.concatenate(outputs)


def _checked_size(session: Any, path: Path) -> int:
    """The training size a medseg segmentation export declares.

    Raises:
        CheckpointError: for a model that is not one.
    """
    meta = session.get_modelmeta().custom_metadata_map
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shapes_fit = (len(inputs) == 1 and inputs[0].name == INPUT_NAME and len(inputs[0].shape) == 4
                  and inputs[0].shape[1] == 3 and any(o.name == OUTPUT_NAME for o in outputs))
    task = meta.get(META_TASK)
    if task is not None and task != SEGMENTATION.name:
        raise CheckpointError(f"{path}: a {task} export; medseg predict needs a segmentation export")
    size = meta.get(META_IMAGE_SIZE, "")
    if task is None or not shapes_fit or not size.isdigit():
        raise CheckpointError(f"{path}: not a medseg segmentation export (expected input "
                              f"'{INPUT_NAME}' (N, 3, H, W), output '{OUTPUT_NAME}' and "
                              f"{META_TASK}/{META_IMAGE_SIZE} metadata); export it with medseg export")
    return int(size)
