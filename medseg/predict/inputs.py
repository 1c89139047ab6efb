"""Finding and classifying inputs: slice images, folders of slices and NIfTI volumes, each
classified once (:func:`classify_input`) from its name and header, by ``medseg predict`` and by
the app's uploads alike.

The models read three MR sequences (pre-contrast T1, FLAIR, post-contrast T1 as RGB;
:mod:`medseg.imaging.sequences`). An input holding one sequence (a grey slice image, a folder
holding one, a 3-D NIfTI volume) is refused with
:class:`~medseg.imaging.sequences.OneSequenceError` unless ``single_sequence``; then that
sequence is repeated into all three channels (:func:`read_slice`, :func:`~medseg.imaging.nifti.load_volume`).
A scan's sequences given separately are classified by
:func:`~medseg.imaging.sequences.plan_sequences`.

Example:
    >>> item = classify_input(Path("case_3/"), single_sequence=False)
    >>> item.kind, len(item.slices)
    ('folder', 22)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.imaging.dicom import is_dicom_file
from medseg.imaging.files import SKIPPED_NAMES, list_folder
from medseg.imaging.images import read_slice_image
from medseg.imaging.nifti import count_volume_slices, volume_channels
from medseg.imaging.sequences import (
    input_name,
    one_sequence_error,
    read_single_sequence_slice,
    slice_sequences,
)
from medseg.predict.outputs import NOT_INPUT_STEM, SLICE_SUFFIXES, VOLUME_SUFFIXES, file_suffix

_GIVE_DICOM = ("give a DICOM series as --pre, --flair and --post (or one of them with "
               "--single-sequence)")


@dataclass(frozen=True)
class Input:
    """One input, classified.

    Attributes:
        path: the file or folder given.
        kind: ``"slice"``, ``"folder"`` or ``"volume"``.
        name: what a volume's outputs are named after (:func:`~medseg.imaging.sequences.input_name`).
        slices: the slice files read (none for a volume).
        count: the number of slices (a volume's, from its header).
        grey: the one-sequence (grey) slice files, repeated into three channels when read.
        single_sequence: the input holds one MR sequence (accepted with ``single_sequence``).
    """

    path: Path
    kind: str
    name: str
    slices: tuple[Path, ...]
    count: int
    grey: frozenset[Path] = frozenset()
    single_sequence: bool = False


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def folder_slices(folder: Path) -> list[Path]:
    """The slice images of a folder (kaggle_3m patient folder or any folder of slices) in
    natural order (``_2`` before ``_10``); expert masks (``*_mask.*``), predictions
    (``*_pred.*``, ``*_pred_overlay.*``), probability maps (``*_prob.*``) and hidden files
    (``._*`` included) left out.

    Raises:
        DataError: when the folder cannot be read.
    """
    return sorted(
        (p for p in list_folder(folder)
         if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not SKIPPED_NAMES.fullmatch(p.name)
         and not NOT_INPUT_STEM.fullmatch(p.stem)),
        key=_natural_key,
    )


def grey_slices(sources: list[Path], single_sequence: bool) -> frozenset[Path]:
    """The one-sequence (grey) slice files among ``sources``, from their headers.

    Raises:
        OneSequenceError: naming the first, unless ``single_sequence``.
    """
    grey = [p for p in sources if slice_sequences(p) == 1]
    if grey and not single_sequence:
        raise one_sequence_error(grey[0])
    return frozenset(grey)


def classify_input(path: Path, single_sequence: bool = False) -> Input:
    """Classify one input from its name and header (no pixel or voxel is read).

    Raises:
        OneSequenceError: for one MR sequence without ``single_sequence``.
        DataError: for a missing input, an unsupported file, a DICOM input (given as
            sequences instead), a folder without slices, or a volume whose header is refused.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        slices = folder_slices(path)
        if not slices:
            if any(p.is_file() and is_dicom_file(p) for p in list_folder(path)):
                raise DataError(f"{path}: holds DICOM files, not slice images; {_GIVE_DICOM}")
            raise DataError(f"{path}: folder holds no slice images ({', '.join(SLICE_SUFFIXES)})")
        grey = grey_slices(slices, single_sequence)
        return Input(path, "folder", path.resolve().name, tuple(slices), len(slices), grey, bool(grey))
    if file_suffix(path.name, VOLUME_SUFFIXES) is not None:
        count = count_volume_slices(path)
        single = volume_channels(path) == 1
        if single and not single_sequence:
            raise one_sequence_error(path)
        return Input(path, "volume", input_name(path), (), count, single_sequence=single)
    if path.suffix.lower() in SLICE_SUFFIXES:
        grey = grey_slices([path], single_sequence)
        return Input(path, "slice", path.stem, (path,), 1, grey, bool(grey))
    if path.suffix.lower() in (".zip", ".dcm") or is_dicom_file(path):
        raise DataError(f"{path}: a DICOM input; {_GIVE_DICOM}")
    raise DataError(f"{path}: not a slice ({', '.join(SLICE_SUFFIXES)}) or a NIfTI volume (.nii, .nii.gz)")


def read_slice(path: Path, grey: bool) -> np.ndarray:
    """A slice as the model reads it, (H, W, 3) uint8: an RGB slice as stored, a ``grey`` one
    repeated into the three channels.

    Raises:
        DataError: when the file is unreadable, too large or not of the kind expected.
    """
    return read_single_sequence_slice(path) if grey else read_slice_image(path)
