"""A mask predicted on a DICOM series as a DICOM SEG (Segmentation Storage) object (highdicom).

The SEG joins the source study, so that a PACS or viewer shows it over the series it was
predicted from:

- patient, study and frame of reference come from the source headers (highdicom copies them
  from the first source image); DICOM type-2 attributes the sources lack (PatientID,
  PatientName, StudyID, ...) are written empty, as the standard allows;
- a new series (:data:`SERIES_NUMBER`, SeriesDescription :data:`SERIES_DESCRIPTION`, research
  use only), Manufacturer ``medseg``, ManufacturerModelName the caller's ``model_name``
  (``medseg predict`` marks its files so), SoftwareVersions medseg's version;
- BINARY, one segment: :data:`SEGMENT_LABEL`, category Morphologically abnormal structure
  (SCT 49755003), type Neoplasm (SCT 108369006), anatomic region Brain, algorithm type
  AUTOMATIC, identified as ``medseg`` (family Artificial Intelligence, medseg's version, the
  caller's parameters);
- frame order: slice k of the mask, in the series' slice order (:mod:`medseg.imaging.dicom`:
  sorted along the slice normal), is derived from the source instance of slice k; each frame
  names that instance (Derivation Image Sequence) and its ImagePositionPatient.
  highdicom may store the frames in another order: read them by those references;
- empty frames are left out (highdicom's ``omit_empty_frames``): a slice without a frame has
  no tumour. A mask without any tumour keeps all its frames, empty (a SEG cannot have zero
  frames), so the SEG still says "no tumour found".

A series the SEG cannot refer to is named by :func:`seg_refusal` (a missing SOPInstanceUID,
SOPClassUID, StudyInstanceUID or FrameOfReferenceUID, or several studies or frames of
reference in one series); building it for one raises :class:`~medseg.errors.DataError`.

Example:
    >>> series = scan_dicom_series("flair_dicom/")  # headers only, slice order
    >>> seg = build_segmentation(mask_xyz, series, model_name="medseg predict")
    >>> save_segmentation(seg, "out/flair_pred_seg.dcm")
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from medseg import __version__
from medseg.errors import DataError
from medseg.files import atomic_path
from medseg.imaging.dicom import DicomSeries
from medseg.paths import is_regular_file

SEGMENT_LABEL = "Tumour (research model prediction)"
SERIES_DESCRIPTION = "medseg tumour mask - RESEARCH USE ONLY"
CONTENT_DESCRIPTION = "RESEARCH USE ONLY; automatic, not reviewed; not for diagnosis"
CONTENT_LABEL = "TUMOUR"
SERIES_NUMBER = 99
MANUFACTURER = "medseg"
ALGORITHM_NAME = "medseg"
#: Segmentation Storage
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: the source attributes a SEG cannot do without (type 1)
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")
#: type-2 attributes highdicom copies from the first source; written empty when absent
_TYPE_2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
           "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def seg_refusal(series: DicomSeries) -> str | None:
    """Why a DICOM SEG cannot refer to ``series`` (one line naming the file), or None.

    Example:
        >>> seg_refusal(scan_dicom_series("anonymised/"))
        'anonymised/IM0001: no FrameOfReferenceUID; a DICOM SEG cannot refer to this series'
    """
    if len(series.headers) != len(series.files) or not series.headers:
        return f"{series.source}: the series' headers were not kept; cannot refer to them"
    first: dict[str, str] = {}  # StudyInstanceUID / FrameOfReferenceUID of the first file
    instances: set[str] = set()
    for name, header in zip(series.files, series.headers, strict=True):
        for keyword in _REQUIRED:
            if not str(header.get(keyword) or ""):
                return f"{name}: no {keyword}; a DICOM SEG cannot refer to this series"
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
            if first.setdefault(keyword, str(header.get(keyword))) != str(header.get(keyword)):
                return (f"{name}: another {keyword} than {series.files[0]}; a DICOM SEG refers "
                        "to one study and frame of reference")
        instance = str(header.get("SOPInstanceUID"))
        if instance in instances:
            return f"{name}: a SOPInstanceUID another file of the series has; a DICOM SEG cannot tell them apart"
        instances.add(instance)
    return None


def _first_source(header: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of the first source header with its missing type-2 attributes empty."""
    first = copy.deepcopy(header)
    for keyword in _TYPE_2:
        if keyword not in first:
            setattr(first, keyword, None)
    return first


def build_segmentation(
    mask: np.ndarray,
    series: DicomSeries,
    *,
    model_name: str,
    parameters: Mapping[str, str] | None = None,
    content_description: str = CONTENT_DESCRIPTION,
) -> hd.seg.Segmentation:
    """A BINARY one-segment SEG of ``mask`` over the source ``series`` (module docstring).

    Args:
        mask: the mask in the series' voxel order, (Columns, Rows, N) as
            :func:`~medseg.imaging.dicom.read_dicom_series` reads it; nonzero is tumour.
        series: the source series with its headers (:func:`~medseg.imaging.dicom.scan_dicom_series`).
        model_name: ManufacturerModelName (what wrote the SEG).
        parameters: the algorithm's parameters, recorded in its identification (strings).
        content_description: ContentDescription (at most 64 characters).

    Raises:
        DataError: naming the series when the mask's shape is not the series', for a series
            :func:`seg_refusal` refuses, or when highdicom refuses the sources.

    Example:
        >>> seg = build_segmentation(mask, series, model_name="medseg predict",
        ...                          parameters={"threshold": "0.5"})
    """
    mask = np.asarray(mask)
    if mask.shape != series.shape:
        raise DataError(f"{series.source}: mask of shape {mask.shape}, the series is "
                        f"{series.shape} (Columns, Rows, N)")
    refusal = seg_refusal(series)
    if refusal is not None:
        raise DataError(refusal)
    frames = np.ascontiguousarray(mask.transpose(2, 1, 0) != 0)  # (N, Rows, Columns)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence, version=__version__,
        parameters=dict(parameters) if parameters else None)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, anatomic_regions=[codes.SCT.Brain])
    sources = [_first_source(series.headers[0]), *series.headers[1:]]
    try:
        return hd.seg.Segmentation(
            source_images=sources, pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment], series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer=MANUFACTURER, manufacturer_model_name=model_name,
            software_versions=__version__, device_serial_number="none",
            content_label=CONTENT_LABEL, content_description=content_description,
            series_description=SERIES_DESCRIPTION,
            omit_empty_frames=bool(frames.any()),  # all empty: keep every frame
        )
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"{series.source}: cannot make a DICOM SEG of this series ({reason})") from None


def save_segmentation(seg: hd.seg.Segmentation, path: str | Path) -> Path:
    """Write ``seg`` as a DICOM file (preamble and file meta) at ``path``, atomically.

    Raises:
        OSError: when the file cannot be written (nothing is left at ``path`` then).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(segmentation_bytes(seg))
    return path


def segmentation_bytes(seg: hd.seg.Segmentation) -> bytes:
    """``seg`` as the bytes of a DICOM file (preamble and file meta), as
    :func:`save_segmentation` writes it."""
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def seg_model_name(path: str | Path) -> str | None:
    """The ManufacturerModelName of the DICOM SEG at ``path`` (header only), or None when it
    is not a readable DICOM SEG (or not a regular file: never opened)."""
    if not is_regular_file(path):
        return None
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not DICOM, unreadable
        return None
    if str(header.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        return None
    return str(header.get("ManufacturerModelName", ""))
