"""A reference (expert) mask given as a DICOM SEG, mapped onto the DICOM series it was drawn on.

A DICOM SEG (Segmentation Storage) stores a mask as frames, each with its own
ImagePositionPatient (Plane Position Sequence) and the orientation and pixel spacing of the
Shared (or Per-frame) Functional Groups. :func:`read_seg_mask` places each frame on the slice
of the series at that position, by geometry alone (frame order and source-image references are
not relied on), and takes every segment together as the mask: a voxel any segment marks is
tumour, as any non-zero voxel of a NIfTI mask is.

Refused with one line naming the file (:class:`~medseg.errors.DataError`): a file that is not
DICOM or not a DICOM SEG, a SEG that is not BINARY (FRACTIONAL and LABELMAP are not read),
one whose Referenced Series Sequence names none of the series given, another FrameOfReferenceUID,
frames of another size, orientation or pixel spacing than the series' images (tolerances of
:mod:`medseg.imaging.dicom`), a frame between two slices or off the series' stack, and more
frames than the series has slices times the SEG's segments (checked, with the voxel cap of
:mod:`medseg.imaging.limits`, before the pixel data is decoded).

Example:
    >>> series = scan_dicom_series("flair_dicom/")
    >>> series, mask = read_seg_mask("expert_seg.dcm", [series])  # mask: (Columns, Rows, N)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from medseg.errors import DataError
from medseg.imaging.dicom import (
    ORIENTATION_TOLERANCE,
    POSITION_TOLERANCE_MM,
    SPACING_RTOL,
    DicomSeries,
)
from medseg.imaging.dicom_seg import SEG_SOP_CLASS
from medseg.imaging.limits import check_volume_shape
from medseg.paths import regular_file

#: DICOM's patient axes (LPS) from NIfTI's world axes (RAS), and back
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _frame_item(dataset: pydicom.Dataset, frame: int, sequence: str) -> pydicom.Dataset | None:
    """The first item of a functional group ``sequence`` for ``frame``: its Per-frame
    Functional Groups item's, else the Shared Functional Groups' (None when neither has it)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = dataset.get(groups)
        found = items[index].get(sequence) if items is not None and len(items) > index else None
        if found:
            return found[0]
    return None


def _floats(path: Path, item: pydicom.Dataset | None, keyword: str, count: int, frame: int) -> np.ndarray:
    try:
        values = np.array([float(v) for v in item.get(keyword)], dtype=float) if item is not None else None
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (count,) or not np.isfinite(values).all():
        raise DataError(f"{path}: frame {frame + 1} has no usable {keyword}; cannot place it on the series")
    return values


def _referenced_series(path: Path, dataset: pydicom.Dataset, candidates: Sequence[DicomSeries]) -> DicomSeries:
    """The candidate series the SEG names (Referenced Series Sequence), its frame of reference
    checked; refused when it names none of them."""
    referenced = [str(item.get("SeriesInstanceUID", "")) for item in dataset.get("ReferencedSeriesSequence", [])]
    series = next((s for s in candidates if s.uid and s.uid in referenced), None)
    if series is None:
        named = ", ".join(referenced) if referenced else "no series"
        uploaded = ", ".join(s.uid or "(no SeriesInstanceUID)" for s in candidates)
        raise DataError(f"{path}: the DICOM SEG refers to {named}, not the uploaded series {uploaded}")
    frame_of_reference = str(series.headers[0].get("FrameOfReferenceUID", "")) if series.headers else ""
    own = str(dataset.get("FrameOfReferenceUID", ""))
    if frame_of_reference and own != frame_of_reference:
        raise DataError(f"{path}: the DICOM SEG's FrameOfReferenceUID {own or '(none)'} is not the "
                        f"series' {frame_of_reference}")
    return series


def _whole(path: Path, dataset: pydicom.Dataset, keyword: str, default: int) -> int:
    value: Any = dataset.get(keyword, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {keyword} {str(value)[:40]!r} is not a whole number") from None


def read_seg_mask(path: str | Path, candidates: Sequence[DicomSeries]) -> tuple[DicomSeries, np.ndarray]:
    """The mask a DICOM SEG holds over the series it refers to (module docstring).

    Args:
        path: the DICOM SEG file.
        candidates: the series it may refer to, headers kept
            (:func:`~medseg.imaging.dicom.scan_dicom_series`).

    Returns:
        the series referred to, and the mask in its voxel order: (Columns, Rows, N) uint8 in
        {0, 1}, voxel (i, j, k) column i, row j of slice k, as
        :func:`~medseg.imaging.dicom.read_dicom_series` orders the series' values.

    Raises:
        DataError: naming the file, for every refusal of the module docstring.
    """
    path = regular_file(path)
    try:
        dataset = pydicom.dcmread(path)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file") from None
    except Exception as err:  # truncated or damaged files raise many types
        raise DataError(f"{path}: cannot read DICOM ({' '.join(str(err).split()) or type(err).__name__})") from None
    if str(dataset.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise DataError(f"{path}: not a DICOM SEG (SOPClassUID {dataset.get('SOPClassUID', 'absent')}); "
                        "upload the expert mask as a NIfTI volume or a DICOM SEG")
    kind = str(dataset.get("SegmentationType", ""))
    if kind != "BINARY":
        raise DataError(f"{path}: a {kind or 'untyped'} DICOM SEG; only BINARY segmentations are read")
    series = _referenced_series(path, dataset, candidates)
    columns, rows, slices = series.shape
    shape = (_whole(path, dataset, "Rows", 0), _whole(path, dataset, "Columns", 0))
    if shape != (rows, columns):
        raise DataError(f"{path}: frames of {shape[0]}x{shape[1]} pixels, the series' images are "
                        f"{rows}x{columns}")
    frames = _whole(path, dataset, "NumberOfFrames", 1)
    segments = max(1, len(dataset.get("SegmentSequence", [])))
    if frames > slices * segments:
        raise DataError(f"{path}: {frames} frames, more than the series' {slices} slices times "
                        f"{segments} segment(s)")
    check_volume_shape(path, (columns, rows, frames))
    lps = _RAS_TO_LPS @ np.asarray(series.affine, dtype=float)
    row_step, column_step, slice_step, origin = lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3]
    cosines = np.concatenate([row_step / np.linalg.norm(row_step), column_step / np.linalg.norm(column_step)])
    spacing = np.array([np.linalg.norm(column_step), np.linalg.norm(row_step)])  # PixelSpacing: rows, columns
    tolerance = POSITION_TOLERANCE_MM + SPACING_RTOL * float(np.linalg.norm(slice_step))
    places = []
    for frame in range(frames):
        orientation = _floats(path, _frame_item(dataset, frame, "PlaneOrientationSequence"),
                              "ImageOrientationPatient", 6, frame)
        if np.abs(orientation - cosines).max() > ORIENTATION_TOLERANCE:
            raise DataError(f"{path}: frame {frame + 1} is oriented {orientation.tolist()}, the series "
                            f"{np.round(cosines, 6).tolist()}")
        pixel_spacing = _frame_item(dataset, frame, "PixelMeasuresSequence")
        if pixel_spacing is not None and "PixelSpacing" in pixel_spacing:
            given = _floats(path, pixel_spacing, "PixelSpacing", 2, frame)
            if not np.allclose(given, spacing, rtol=SPACING_RTOL, atol=0):
                raise DataError(f"{path}: frame {frame + 1} has PixelSpacing {given.tolist()}, the "
                                f"series {np.round(spacing, 6).tolist()}")
        position = _floats(path, _frame_item(dataset, frame, "PlanePositionSequence"),
                           "ImagePositionPatient", 3, frame)
        offset = position - origin
        k = round(float(offset @ slice_step) / float(slice_step @ slice_step))
        if not 0 <= k < slices or np.linalg.norm(offset - k * slice_step) > tolerance:
            raise DataError(f"{path}: frame {frame + 1} at ImagePositionPatient {position.tolist()} lies "
                            "on no slice of the series")
        places.append(k)
    try:
        pixels = np.asarray(dataset.pixel_array).reshape(frames, rows, columns)
    except Exception as err:  # truncated data, a decoder failing
        raise DataError(f"{path}: cannot decode the pixel data ({' '.join(str(err).split()) or type(err).__name__})") from None
    mask = np.zeros(series.shape, np.uint8)
    for k, frame_pixels in zip(places, pixels, strict=True):
        mask[:, :, k] |= (frame_pixels != 0).T.astype(np.uint8)
    return series, mask
