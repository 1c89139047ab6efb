"""``medseg predict``: tumour masks for slices, folders of slices and NIfTI volumes.

For every slice it writes ``<name>_mask.png`` (0/255, the input's size) and
``<name>_overlay.png`` (the slice with the predicted tumour tinted yellow); a volume also
gets ``<name>_mask.nii.gz`` on the input's voxel grid, with its affine.

Example:
    >>> written = predict_paths("models/demo_lgg/best.pt", ["brain.nii.gz"], "predictions")
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medseg.data import load_volume, read_slice_image, save_mask_volume
from medseg.engine.checkpoint import load_model
from medseg.engine.distributed import resolve_device
from medseg.engine.inference import slice_probabilities
from medseg.errors import CheckpointError, DataError, MedsegError
from medseg.files import atomic_path
from medseg.tasks import SEGMENTATION

SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
VOLUME_SUFFIXES = (".nii", ".nii.gz")
OVERLAY_RGB = np.array([255, 221, 0], dtype=np.float32)  # the app's "predicted tumour" yellow
OVERLAY_ALPHA = 0.45
_CHUNK = 32  # slice files read and predicted at a time


@dataclass
class Prediction:
    """What was written for one input."""

    input: Path
    kind: str  # "slice", "folder" or "volume"
    slices: int = 0
    tumour_slices: int = 0
    tumour_pixels: int = 0
    files: list[Path] = field(default_factory=list)


def _is_volume(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def _volume_name(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def folder_slices(folder: Path) -> list[Path]:
    """The slice images of a folder (kaggle_3m patient folder or any folder of slices),
    masks (``*_mask.*``) left out, in natural order (``_2`` before ``_10``)."""
    return sorted(
        (p for p in folder.iterdir()
         if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.stem.lower().endswith("_mask")),
        key=_natural_key,
    )


def overlay(image_hwc: np.ndarray, mask_hw: np.ndarray) -> np.ndarray:
    """The slice with mask pixels blended towards yellow, (H, W, 3) uint8."""
    blended = image_hwc.astype(np.float32)
    tumour = mask_hw.astype(bool)
    blended[tumour] = (1 - OVERLAY_ALPHA) * blended[tumour] + OVERLAY_ALPHA * OVERLAY_RGB
    return np.rint(blended).clip(0, 255).astype(np.uint8)


def predict_masks(
    model: torch.nn.Module, images: Sequence[np.ndarray], image_size: int, threshold: float
) -> list[np.ndarray]:
    """Binary masks (H, W) uint8 in {0, 1} for RGB slices (H, W, 3) uint8 of any sizes:
    :func:`~medseg.engine.inference.slice_probabilities` at or above ``threshold``."""
    masks: list[np.ndarray] = [np.empty(0, np.uint8)] * len(images)
    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        by_size[image.shape[:2]].append(index)
    for indices in by_size.values():
        probs = slice_probabilities(model, [images[i] for i in indices], image_size)
        for index, prob in zip(indices, probs, strict=True):
            masks[index] = (prob >= threshold).astype(np.uint8)
    return masks


def _write_slice_outputs(image: np.ndarray, mask: np.ndarray, out_dir: Path, name: str, record: Prediction) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_path, overlay_path = out_dir / f"{name}_mask.png", out_dir / f"{name}_overlay.png"
    for path, picture in ((mask_path, mask * 255), (overlay_path, overlay(image, mask))):
        with atomic_path(path) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
    record.files += [mask_path, overlay_path]
    record.slices += 1
    record.tumour_pixels += int(mask.sum())
    record.tumour_slices += int(mask.any())


def predict_paths(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    threshold: float = 0.5,
    device: str = "auto",
) -> list[Prediction]:
    """Predict tumour masks for every input and write them under ``out_dir``.

    Args:
        checkpoint: a segmentation checkpoint written by ``medseg train``.
        inputs: slice images (.tif/.png/.jpg), folders of slices (a kaggle_3m patient
            folder: masks beside the slices are ignored) or NIfTI volumes (.nii/.nii.gz).
        out_dir: single slices are written here; a folder or volume gets ``out_dir/<name>/``
            for its slices, and a volume ``out_dir/<name>_mask.nii.gz``.
        threshold: probability at or above which a pixel is tumour.
        device: "auto", "cpu", "cuda", ...

    Raises:
        CheckpointError: for an unreadable or classification checkpoint.
        DataError: for a missing or unreadable input (checked before anything is written).
        MedsegError: for a threshold outside (0, 1).
    """
    if not 0.0 < threshold < 1.0:
        raise MedsegError(f"--threshold: {threshold} must be between 0 and 1")
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_file() and not (_is_volume(path) or path.suffix.lower() in SLICE_SUFFIXES):
            raise DataError(
                f"{path}: not a slice ({', '.join(SLICE_SUFFIXES)}) or a NIfTI volume (.nii, .nii.gz)"
            )
        if path.is_dir() and not folder_slices(path):
            raise DataError(f"{path}: folder holds no slice images ({', '.join(SLICE_SUFFIXES)})")
    loaded = load_model(checkpoint, device=resolve_device(device))
    if loaded.task != SEGMENTATION.name:
        raise CheckpointError(
            f"{checkpoint}: a {loaded.task} checkpoint; medseg predict needs a segmentation checkpoint"
        )
    size = loaded.config.data.image_size
    out_dir = Path(out_dir)
    results = []
    for path in paths:
        if _is_volume(path):
            volume = load_volume(path)
            name = _volume_name(path)
            record = Prediction(path, "volume")
            images = list(volume.slices)
            masks = predict_masks(loaded.model, images, size, threshold)
            for index, (image, mask) in enumerate(zip(images, masks, strict=True), start=1):
                _write_slice_outputs(image, mask, out_dir / name, f"{name}_{index}", record)
            nifti_path = out_dir / f"{name}_mask.nii.gz"
            save_mask_volume(np.stack(masks), volume, nifti_path)
            record.files.append(nifti_path)
        elif path.is_dir():
            record = Prediction(path, "folder")
            slice_paths = folder_slices(path)
            for start in range(0, len(slice_paths), _CHUNK):
                chunk = slice_paths[start : start + _CHUNK]
                images = [read_slice_image(p) for p in chunk]
                masks = predict_masks(loaded.model, images, size, threshold)
                for slice_path, image, mask in zip(chunk, images, masks, strict=True):
                    _write_slice_outputs(image, mask, out_dir / path.resolve().name, slice_path.stem, record)
        else:
            record = Prediction(path, "slice")
            image = read_slice_image(path)
            mask = predict_masks(loaded.model, [image], size, threshold)[0]
            _write_slice_outputs(image, mask, out_dir, path.stem, record)
        results.append(record)
    return results
