"""File names: the suffixes of the files ``medseg predict`` and the app read, and the one rule
that names every output after its input.

Outputs add :data:`PRED` (probability maps :data:`PROB`) to their input's name, so they are
never named like expert masks (``*_mask.*``) and never read back as inputs
(:data:`NOT_INPUT_STEM`):

| output | name |
|---|---|
| a slice's mask (0/255 PNG) and overlay | ``<stem>_pred.png`` (:data:`MASK_PNG`), ``<stem>_pred_overlay.png`` (:data:`OVERLAY_PNG`) |
| a volume's mask (NIfTI, on its grid) | ``<name>_pred.nii.gz`` (:data:`MASK_NIFTI`) |
| a volume's lesion report | ``<name>_pred.json`` (:data:`REPORT_JSON`) |
| the DICOM SEG of a DICOM reference | ``<name>_pred_seg.dcm`` (:data:`DICOM_SEG`) |
| ``--probabilities``: a slice's probability map (16-bit PNG) | ``<stem>_prob.png`` (:data:`PROB_PNG`) |
| ``--probabilities``: a volume's probability map (float32 NIfTI) | ``<name>_prob.nii.gz`` (:data:`PROB_NIFTI`) |

A volume's slice ``k`` (from 1) has the stem ``<name>_<k>`` (:func:`slice_stems`). The app's
downloads take the same endings after a safe stem of the uploaded name (:func:`download_name`).

Example:
    >>> output_path(Path("out"), "scan", MASK_NIFTI)
    PosixPath('out/scan_pred.nii.gz')
    >>> download_name("C:\\\\scans\\\\Case 1.PNG", MASK_PNG)
    'Case_1_pred.png'
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from medseg.imaging.sequences import NIFTI_SUFFIXES

#: slice images predict reads (RGB: three sequences; grey: one)
SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: NIfTI volumes
VOLUME_SUFFIXES = NIFTI_SUFFIXES
#: what one MR sequence of a scan may be uploaded as: a NIfTI volume or a zipped DICOM series
SEQUENCE_SUFFIXES = (*VOLUME_SUFFIXES, ".zip")

#: what predicted files add to their input's name
PRED = "_pred"
MASK_PNG = f"{PRED}.png"
OVERLAY_PNG = f"{PRED}_overlay.png"
MASK_NIFTI = f"{PRED}.nii.gz"
REPORT_JSON = f"{PRED}.json"
DICOM_SEG = f"{PRED}_seg.dcm"
#: what probability maps (``--probabilities``) add to their input's name
PROB = "_prob"
PROB_PNG = f"{PROB}.png"
PROB_NIFTI = f"{PROB}.nii.gz"
#: stems of files never read as inputs from a folder: expert masks, predictions, probabilities
NOT_INPUT_STEM = re.compile(rf".*(_mask|{PRED}|{PRED}_overlay|{PROB})", re.IGNORECASE)
#: longest stem kept in a download's file name, in characters
MAX_STEM_CHARS = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_suffix(name: str, suffixes: tuple[str, ...]) -> str | None:
    """The first of ``suffixes`` that ``name`` ends with, in any case, as given
    (``".nii.gz"``, ``".png"``...); None for none."""
    lower = name.lower()
    return next((suffix for suffix in suffixes if lower.endswith(suffix)), None)


def output_path(folder: Path, stem: str, ending: str) -> Path:
    """The output ``<folder>/<stem><ending>`` (``ending``: one of :data:`MASK_PNG`...)."""
    return folder / f"{stem}{ending}"


def slice_stems(name: str, count: int) -> list[str]:
    """The stems of a volume's ``count`` slices: ``<name>_1`` ... ``<name>_<count>``."""
    return [f"{name}_{k}" for k in range(1, count + 1)]


def download_name(upload_name: str, ending: str) -> str:
    """The download name of what is predicted for an upload: ``<stem><ending>``.

    The stem is the upload's base name without its suffix (a slice, NIfTI or ``.zip`` one), in
    ASCII letters, digits, ``.``, ``_`` and ``-`` only, at most :data:`MAX_STEM_CHARS`
    characters (``upload`` when nothing is left).

    Example:
        >>> download_name("../Müller T1.nii.gz", REPORT_JSON)
        'Muller_T1_pred.json'
    """
    base = re.split(r"[/\\]", upload_name)[-1]
    suffix = file_suffix(base, SEQUENCE_SUFFIXES + SLICE_SUFFIXES)
    if suffix is not None:
        base = base[: -len(suffix)]
    ascii_base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    stem = _UNSAFE.sub("_", ascii_base).strip("._-")[:MAX_STEM_CHARS].rstrip("._-")
    return f"{stem or 'upload'}{ending}"
