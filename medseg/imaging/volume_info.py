"""What a volume file holds, from its headers: size, spacing and orientation, and for DICOM the
series description and modality, so that a reader sees which file sits in which slot.

:func:`nifti_info` reads a NIfTI header (:func:`~medseg.imaging.nifti.open_nifti`), :func:`dicom_info`
a DICOM series' headers (:func:`~medseg.imaging.dicom.scan_dicom_series`), :func:`seg_info` a
DICOM SEG's; no voxel data is read. Orientation is given as nibabel's axis codes of the
voxel-to-world affine (``aff2axcodes``: the direction each voxel axis points to, RAS) and, for
DICOM, the plane of the images from ImageOrientationPatient.

:func:`suggested_sequence` reads a SeriesDescription for the sequence it names, by keywords
(case-insensitive), first match wins:

1. ``flair`` -> FLAIR;
2. ``pre`` as a word (``Pre-contrast``, ``T1 pre``) -> pre-contrast T1;
3. a contrast word with T1 or alone: ``post``, ``gd``, ``gad``, ``contrast``, ``+c``, ``ce``
   (word), ``t1c``/``t1ce`` -> post-contrast T1;
4. ``t1`` (not ``t10``...) -> pre-contrast T1;

anything else (T2, DWI, a blank description) suggests nothing.

Example:
    >>> suggested_sequence("AX T1 POST GD"), suggested_sequence("Sag T1 MPRAGE")
    ('post', 'pre')
    >>> dicom_info(scan_dicom_series("flair.zip")).text()
    'DICOM MR “AX FLAIR”: 256 × 256 × 22 (rows × columns × slices), pixels 0.9 × 0.9 mm, ...'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from medseg.errors import DataError
from medseg.imaging.dicom import DicomSeries
from medseg.imaging.nifti import open_nifti
from medseg.paths import regular_file

#: the plane of images whose normal points mostly along world axis 0, 1, 2 (RAS)
PLANES = ("sagittal", "coronal", "axial")
#: a normal whose largest component is below this is oblique
OBLIQUE_BELOW = 0.8
#: the keyword rules of the module docstring, in order: (pattern, sequence)
SEQUENCE_KEYWORDS = (
    (re.compile(r"flair"), "flair"),
    (re.compile(r"(?<![a-z0-9])pre(?![a-z0-9])"), "pre"),
    (re.compile(r"(?<![a-z0-9])(post|gd|gad|contrast|ce)(?![a-z0-9])|\+c|t1c"), "post"),
    (re.compile(r"t1(?!\d)"), "pre"),
)


def _numbers(values: tuple[float, ...] | np.ndarray, unit: str = "") -> str:
    return " × ".join(f"{float(v):.3g}" for v in values) + (f" {unit}" if unit else "")


def axis_codes(affine: np.ndarray) -> str:
    """The direction each voxel axis points to, as nibabel's ``aff2axcodes`` (``"LPS"``)."""
    return "".join(str(code) for code in nib.aff2axcodes(np.asarray(affine, dtype=float)))


def image_plane(affine: np.ndarray) -> str:
    """The plane of the images (voxel axes 0 and 1): ``axial``, ``coronal``, ``sagittal``, or
    ``oblique`` when their normal is within no world axis' :data:`OBLIQUE_BELOW`."""
    directions = np.asarray(affine, dtype=float)[:3, :2]
    normal = np.cross(directions[:, 0], directions[:, 1])
    normal = np.abs(normal) / np.linalg.norm(normal)
    axis = int(np.argmax(normal))
    return PLANES[axis] if normal[axis] >= OBLIQUE_BELOW else "oblique"


@dataclass(frozen=True)
class VolumeInfo:
    """A volume file's headers, as a slot shows them.

    Attributes:
        kind: ``"NIfTI"``, ``"DICOM"`` or ``"DICOM SEG"``.
        size: NIfTI: the voxel shape; DICOM: (Rows, Columns, slices); SEG: (Rows, Columns, frames).
        spacing: NIfTI: the zooms (mm); DICOM: PixelSpacing (rows, columns) and the distance
            between slices (mm); SEG: its PixelSpacing (empty when absent).
        axes: nibabel's axis codes of the affine ("" for a SEG).
        description: DICOM SeriesDescription ("" when absent or NIfTI).
        modality: a DICOM series' Modality ("" when absent, NIfTI or a SEG).
        plane: DICOM: the images' plane (:func:`image_plane`); "" otherwise.
        thickness: DICOM SliceThickness in mm (None when absent).
    """

    kind: str
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    axes: str = ""
    description: str = ""
    modality: str = ""
    plane: str = ""
    thickness: float | None = None

    def text(self) -> str:
        """One line: what, its size, spacing and orientation."""
        head = " ".join(part for part in (self.kind, self.modality) if part)
        if self.description:
            head += f" “{self.description}”"
        if self.kind == "NIfTI":
            parts = [f"{_numbers(self.size)} voxels", f"voxels {_numbers(self.spacing, 'mm')}",
                     f"axes {self.axes}"]
        elif self.kind == "DICOM":
            slices = f"slices {self.spacing[2]:.3g} mm apart"
            if self.thickness is not None:
                slices += f" ({self.thickness:.3g} mm thick)"
            parts = [f"{_numbers(self.size)} (rows × columns × slices)",
                     f"pixels {_numbers(self.spacing[:2], 'mm')}", slices, f"{self.plane}, axes {self.axes}"]
        else:
            parts = [f"{self.size[2]} frames of {self.size[0]} × {self.size[1]}"]
            if self.spacing:
                parts.append(f"pixels {_numbers(self.spacing, 'mm')}")
        return f"{head}: {', '.join(parts)}"


def nifti_info(path: str | Path) -> VolumeInfo:
    """The size, zooms and axis codes of a NIfTI volume (header only).

    Raises:
        DataError: naming the file when :func:`~medseg.imaging.nifti.open_nifti` refuses it.
    """
    image = open_nifti(Path(path))
    zooms = image.header.get_zooms()
    return VolumeInfo("NIfTI", tuple(int(n) for n in image.shape), tuple(float(z) for z in zooms[:3]),
                      axis_codes(image.affine))


def _text(header: pydicom.Dataset, keyword: str) -> str:
    return " ".join(str(header.get(keyword, "") or "").split())


def dicom_info(series: DicomSeries) -> VolumeInfo:
    """The description, modality, size, spacing and orientation of a scanned DICOM series."""
    affine = np.asarray(series.affine, dtype=float)
    steps = np.linalg.norm(affine[:3, :3], axis=0)
    first = series.headers[0] if series.headers else pydicom.Dataset()
    try:
        thickness: float | None = float(first.get("SliceThickness"))
    except (TypeError, ValueError):
        thickness = None
    if thickness is not None and not (np.isfinite(thickness) and thickness > 0):
        thickness = None
    columns, rows, slices = series.shape
    return VolumeInfo("DICOM", (rows, columns, slices), (float(steps[1]), float(steps[0]), float(steps[2])),
                      axis_codes(affine), series.description.strip(), _text(first, "Modality"),
                      image_plane(affine), thickness)


def seg_info(path: str | Path) -> VolumeInfo:
    """The description, size and pixel spacing of a DICOM SEG (header only).

    Raises:
        DataError: naming the file when it is not a readable DICOM file.
    """
    path = regular_file(path)
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # not DICOM, truncated
        raise DataError(f"{path}: not a readable DICOM file ({' '.join(str(err).split()) or type(err).__name__})") from None
    spacing: tuple[float, ...] = ()
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared and "PixelMeasuresSequence" in shared[0] and shared[0].PixelMeasuresSequence:
        try:
            spacing = tuple(float(v) for v in shared[0].PixelMeasuresSequence[0].get("PixelSpacing", []))
        except (TypeError, ValueError):
            spacing = ()
    try:
        size = (int(header.get("Rows", 0)), int(header.get("Columns", 0)), int(header.get("NumberOfFrames", 1)))
    except (TypeError, ValueError):
        raise DataError(f"{path}: Rows, Columns or NumberOfFrames is not a whole number") from None
    return VolumeInfo("DICOM SEG", size, spacing, description=_text(header, "SeriesDescription"))


def suggested_sequence(description: str) -> str | None:
    """The sequence (a key of :data:`~medseg.imaging.sequences.SEQUENCES`) a SeriesDescription
    names by the keyword rules of the module docstring, or None."""
    text = description.lower()
    return next((key for pattern, key in SEQUENCE_KEYWORDS if pattern.search(text)), None)
