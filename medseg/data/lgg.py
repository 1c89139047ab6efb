"""The LGG MRI segmentation dataset (Buda et al.; Kaggle "lgg-mri-segmentation") on disk.

Layout (``kaggle_3m``)::

    lgg-mri-segmentation/            <- either this folder ...
      kaggle_3m/                     <- ... or this one may be given
        data.csv  README.md          (ignored)
        TCGA_CS_4941_19960909/
          TCGA_CS_4941_19960909_1.tif       256x256 RGB uint8 (pre-contrast, FLAIR, post-contrast)
          TCGA_CS_4941_19960909_1_mask.tif  256x256 uint8, 0 or 255
          ...

Slice numbers ``k`` sort numerically (10 after 9). Hidden entries (``._*`` AppleDouble files,
``.DS_Store``) and ``__MACOSX`` folders are skipped (:data:`SKIPPED_NAMES`); a slice or mask
that is not a regular file (a FIFO, a device, a folder) is refused when the patient folder is
listed (:func:`~medseg.paths.regular_file`), so nothing ever waits on opening it; images are
decoded only after their header passed :func:`~medseg.imaging.limits.load_image`'s size check.

Example:
    >>> patients = list_patients("demo_data/lgg")
    >>> first = patients[0].slices[0]
    >>> read_slice_image(first.image_path).shape, read_mask(first.mask_path).max()
    ((256, 256, 3), 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import DataError
from medseg.imaging.files import SKIPPED_NAMES, list_folder
from medseg.paths import regular_file

#: Explains both layouts ``medseg`` reads; part of every "unrecognised folder" error.
EXPECTED_LAYOUTS = (
    "expected LGG (kaggle_3m/<patient>/<patient>_<k>.tif with <patient>_<k>_mask.tif, "
    "or the folder holding kaggle_3m/) or PatchCamelyon "
    "(camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5)"
)


@dataclass(frozen=True)
class Slice:
    """One axial slice: its number ``index`` (the k of ``<patient>_<k>.tif``) and its files."""

    index: int
    image_path: Path
    mask_path: Path


@dataclass(frozen=True)
class Patient:
    """A patient folder and its slices in numeric order."""

    name: str
    slices: list[Slice] = field(default_factory=list)


@dataclass(frozen=True)
class LggScan:
    """What :func:`scan_lgg` found: the ``kaggle_3m`` folder, its patients, and the hidden or
    macOS metadata entries skipped (:data:`SKIPPED_NAMES`)."""

    root: Path
    patients: list[Patient]
    skipped: list[Path]


def _slice_number(path: Path, patient: str, suffix: str) -> int | None:
    """Return k when ``path`` is named ``<patient>_<k><suffix>``, else None."""
    match = re.fullmatch(re.escape(patient) + r"_(\d+)" + re.escape(suffix), path.name)
    return int(match.group(1)) if match else None


def _is_patient_folder(folder: Path) -> bool:
    try:
        entries = list_folder(folder)
    except DataError:  # only detection: list_patients reports the unreadable folder
        return False
    return any(_slice_number(p, folder.name, ".tif") is not None for p in entries)


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in list_folder(folder) if p.is_dir() and not SKIPPED_NAMES.fullmatch(p.name)]


def is_lgg_root(folder: Path) -> bool:
    """True when ``folder`` holds at least one patient folder of ``<patient>_<k>.tif`` slices."""
    try:
        subfolders = _subfolders(folder)
    except DataError:
        return False
    return any(_is_patient_folder(sub) for sub in subfolders)


def locate_lgg_root(path: str | Path) -> Path | None:
    """The ``kaggle_3m`` folder: ``path`` itself when it holds a patient folder
    (:func:`is_lgg_root`), else its ``kaggle_3m`` subfolder when that does, else None (also
    when ``path`` is not a folder).

    Raises:
        DataError: when ``path`` or its ``kaggle_3m`` subfolder cannot be listed (say so, not
            "not an LGG folder").
    """
    path = Path(path)
    for candidate in (path, path / "kaggle_3m"):
        if candidate.is_dir():
            list_folder(candidate)
            if is_lgg_root(candidate):
                return candidate
    return None


def find_lgg_root(path: str | Path) -> Path:
    """Return the ``kaggle_3m`` folder given it or the download's top folder
    (:func:`locate_lgg_root`).

    Raises:
        DataError: when ``path`` is not a folder, cannot be read, or holds no patient folders.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    root = locate_lgg_root(path)
    if root is None:
        raise DataError(f"{path}: not an LGG dataset folder; {EXPECTED_LAYOUTS}")
    return root


def _patient_slices(folder: Path, skipped: list[Path]) -> list[Slice]:
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    for path in list_folder(folder):
        if SKIPPED_NAMES.fullmatch(path.name):
            skipped.append(path)
            continue
        if path.suffix != ".tif":
            continue
        mask_k = _slice_number(path, folder.name, "_mask.tif")
        image_k = _slice_number(path, folder.name, ".tif")
        if mask_k is not None:
            target, k = masks, mask_k
        elif image_k is not None:
            target, k = images, image_k
        else:
            raise DataError(
                f"{path}: unexpected file name; slices are {folder.name}_<k>.tif and "
                f"{folder.name}_<k>_mask.tif"
            )
        if k in target:
            raise DataError(f"{path}: slice {k} appears twice (also {target[k].name})")
        target[k] = regular_file(path)
    for k, image in images.items():
        if k not in masks:
            raise DataError(f"{image}: image has no mask (expected {folder.name}_{k}_mask.tif)")
    for k, mask in masks.items():
        if k not in images:
            raise DataError(f"{mask}: mask has no image (expected {folder.name}_{k}.tif)")
    if not images:
        raise DataError(f"{folder}: patient folder holds no slices ({folder.name}_<k>.tif)")
    return [Slice(k, images[k], masks[k]) for k in sorted(images)]


def scan_lgg(root: str | Path) -> LggScan:
    """List every patient folder under ``root`` (see :func:`find_lgg_root`), sorted by name,
    skipping hidden entries and ``__MACOSX`` (:data:`SKIPPED_NAMES`) and recording them.

    Raises:
        DataError: on an unreadable folder, a slice or mask that is not a regular file, a
            slice without its mask or the reverse, an unexpected ``.tif`` name, a duplicated
            slice number or an empty patient folder (the message names the file or folder).
    """
    root = find_lgg_root(root)
    skipped = [p for p in list_folder(root) if SKIPPED_NAMES.fullmatch(p.name)]
    patients = [Patient(folder.name, _patient_slices(folder, skipped)) for folder in _subfolders(root)]
    return LggScan(root, patients, skipped)


def list_patients(root: str | Path) -> list[Patient]:
    """The patients of :func:`scan_lgg`.

    Raises:
        DataError: as :func:`scan_lgg`.
    """
    return scan_lgg(root).patients
