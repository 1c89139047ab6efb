"""DICOM SEG of a mask over a DICOM series: read back with pydicom (and highdicom), each frame
checked against the source file holding that slice, found by its own header (not the reader's
order)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg.errors import DataError
from medseg.imaging.dicom import scan_dicom_series
from medseg.imaging.dicom_seg import (
    SEG_SOP_CLASS,
    SEGMENT_LABEL,
    build_segmentation,
    save_segmentation,
    seg_model_name,
    seg_refusal,
)
from tests.support import write_dicom_series

ROWS, COLUMNS = 12, 16  # not square: a transposition cannot go unnoticed
STUDY = "1.2.826.0.1.3680043.8.498.99"  # write_dicom_series' StudyInstanceUID
SERIES = "1.2.826.0.1.3680043.8.498.1"
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.77"
#: slice z positions (LPS mm), in the order the files are written: not sorted
POSITIONS_Z = (6.0, -3.0, 9.0, 0.0, 3.0)
NAMES = ("IM5", "IM1", "IM3", "IM4", "IM2")  # names give no order either
#: (Rows, Columns) tumour patterns by slice position: distinct shapes, off-centre
PATTERNS = {3.0: (slice(2, 5), slice(3, 10)), 9.0: (slice(7, 11), slice(12, 14))}


def _series(folder: Path, *, frame_of_reference: bool = True) -> list[Path]:
    """A 5-slice axial series in shuffled file order (PatientID set, FrameOfReferenceUID
    added unless told not to)."""
    pixels = np.random.default_rng(0).integers(0, 900, (len(POSITIONS_Z), ROWS, COLUMNS)).astype(np.uint16)
    files = write_dicom_series(folder, pixels, [(-20.0, -30.0, z) for z in POSITIONS_Z], names=NAMES,
                               pixel_spacing=(0.8, 0.5), series_uid=SERIES)
    for file in files:
        ds = pydicom.dcmread(file)
        ds.PatientID = "anon-17"
        if frame_of_reference:
            ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
        ds.save_as(file, enforce_file_format=True)
    return files


def _instances_by_z(files: list[Path]) -> dict[float, str]:
    """Slice position -> SOPInstanceUID, read from the files themselves."""
    found = {}
    for file in files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        found[float(ds.ImagePositionPatient[2])] = str(ds.SOPInstanceUID)
    return found


def _mask(series) -> np.ndarray:
    """PATTERNS as a mask in the series' voxel order (Columns, Rows, N): slice k of the series
    placed by the z its header gives."""
    mask = np.zeros(series.shape, np.uint8)
    for k, header in enumerate(series.headers):
        pattern = PATTERNS.get(float(header.ImagePositionPatient[2]))
        if pattern is not None:
            plane = np.zeros((ROWS, COLUMNS), np.uint8)
            plane[pattern] = 1
            mask[:, :, k] = plane.T
    return mask


def _frames(seg: pydicom.Dataset) -> np.ndarray:
    return seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))


def _referenced(frame) -> str:
    return str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)


@pytest.mark.parametrize("as_zip", [False, True])
def test_each_frame_refers_to_the_source_slice_holding_its_tumour(tmp_path, as_zip):
    files = _series(tmp_path / "flair")
    source: Path = tmp_path / "flair"
    if as_zip:
        source = tmp_path / "flair.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for file in files:
                archive.write(file, f"flair/{file.name}")
    series = scan_dicom_series(source)
    assert [float(h.ImagePositionPatient[2]) for h in series.headers] == sorted(POSITIONS_Z)
    assert seg_refusal(series) is None
    path = save_segmentation(build_segmentation(_mask(series), series, model_name="medseg predict",
                                                parameters={"threshold": "0.5"}), tmp_path / "seg.dcm")

    seg = pydicom.dcmread(path)
    assert seg.SOPClassUID == SEG_SOP_CLASS == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == STUDY and seg.FrameOfReferenceUID == FRAME_OF_REFERENCE
    assert seg.PatientID == "anon-17"
    assert seg.SeriesInstanceUID != SERIES and "RESEARCH USE ONLY" in seg.SeriesDescription
    assert seg.ManufacturerModelName == "medseg predict" and seg_model_name(path) == "medseg predict"
    referenced = seg.ReferencedSeriesSequence
    assert len(referenced) == 1 and referenced[0].SeriesInstanceUID == SERIES
    by_z = _instances_by_z(files)
    assert {str(item.ReferencedSOPInstanceUID) for item in referenced[0].ReferencedInstanceSequence} == set(
        by_z.values())
    assert len(seg.SegmentSequence) == 1
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == SEGMENT_LABEL and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "medseg" and algorithm.AlgorithmParameters == "threshold=0.5"

    # only the slices with tumour have frames (empty frames omitted), each the right pattern
    assert int(seg.NumberOfFrames) == len(PATTERNS)
    z_by_instance = {uid: z for z, uid in by_z.items()}
    for frame, pixels in zip(seg.PerFrameFunctionalGroupsSequence, _frames(seg), strict=True):
        z = z_by_instance[_referenced(frame)]
        assert float(frame.PlanePositionSequence[0].ImagePositionPatient[2]) == z
        expected = np.zeros((ROWS, COLUMNS), np.uint8)
        expected[PATTERNS[z]] = 1
        np.testing.assert_array_equal(pixels, expected)


def test_highdicom_reads_it_back_by_source_instance(tmp_path):
    files = _series(tmp_path / "flair")
    series = scan_dicom_series(tmp_path / "flair")
    path = save_segmentation(build_segmentation(_mask(series), series, model_name="medseg predict"),
                             tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    uids = list(_instances_by_z(files).items())
    pixels = seg.get_pixels_by_source_instance([uid for _, uid in uids], segment_numbers=[1],
                                               assert_missing_frames_are_empty=True)
    for (z, _), plane in zip(uids, pixels[..., 0], strict=True):
        expected = np.zeros((ROWS, COLUMNS), np.uint8)
        if z in PATTERNS:
            expected[PATTERNS[z]] = 1
        np.testing.assert_array_equal(plane, expected)


def test_an_empty_mask_keeps_every_frame_empty(tmp_path):
    files = _series(tmp_path / "flair")
    series = scan_dicom_series(tmp_path / "flair")
    seg = pydicom.dcmread(save_segmentation(
        build_segmentation(np.zeros(series.shape, np.uint8), series, model_name="medseg predict"),
        tmp_path / "seg.dcm"))
    assert int(seg.NumberOfFrames) == len(files)
    assert not _frames(seg).any()
    assert sorted(_referenced(f) for f in seg.PerFrameFunctionalGroupsSequence) == sorted(
        _instances_by_z(files).values())


def test_a_series_without_a_frame_of_reference_is_refused_by_name(tmp_path):
    _series(tmp_path / "flair", frame_of_reference=False)
    series = scan_dicom_series(tmp_path / "flair")
    first = series.files[0]
    reason = f"{first}: no FrameOfReferenceUID; a DICOM SEG cannot refer to this series"
    assert seg_refusal(series) == reason
    with pytest.raises(DataError) as err:
        build_segmentation(np.zeros(series.shape, np.uint8), series, model_name="medseg predict")
    assert str(err.value) == reason


def test_a_mask_of_another_shape_is_refused(tmp_path):
    _series(tmp_path / "flair")
    series = scan_dicom_series(tmp_path / "flair")
    wrong = np.zeros((ROWS, COLUMNS, len(POSITIONS_Z)), np.uint8)  # (Rows, Columns, N): transposed
    with pytest.raises(DataError, match=r"flair: mask of shape \(12, 16, 5\), the series is \(16, 12, 5\)"):
        build_segmentation(wrong, series, model_name="medseg predict")


def test_seg_model_name_reads_only_segs(tmp_path):
    files = _series(tmp_path / "flair")
    (tmp_path / "notes.dcm").write_text("not DICOM")
    assert seg_model_name(tmp_path / "notes.dcm") is None
    assert seg_model_name(files[0]) is None  # an MR image, not a SEG
    assert seg_model_name(tmp_path / "missing.dcm") is None


def _set(file: Path, keyword: str, value: str) -> None:
    ds = pydicom.dcmread(file)
    setattr(ds, keyword, value)
    if keyword == "SOPInstanceUID":
        ds.file_meta.MediaStorageSOPInstanceUID = value
    ds.save_as(file, enforce_file_format=True)


def _refused(series, reason: str) -> None:
    """``seg_refusal`` gives ``reason`` and building the SEG raises it, as one line."""
    assert seg_refusal(series) == reason
    with pytest.raises(DataError) as err:
        build_segmentation(_mask(series), series, model_name="medseg predict")
    assert str(err.value) == reason


def test_a_series_with_a_duplicated_sop_instance_uid_is_refused_by_name(tmp_path):
    files = dict(zip(NAMES, _series(tmp_path / "flair"), strict=True))
    _set(files["IM3"], "SOPInstanceUID", str(pydicom.dcmread(files["IM1"]).SOPInstanceUID))
    series = scan_dicom_series(tmp_path / "flair")  # the images themselves are a fine series
    assert series.files[-1] == str(files["IM3"])  # z = 9 mm: the last slice, met second
    _refused(series, f"{files['IM3']}: a SOPInstanceUID another file of the series has; a DICOM SEG "
                     "cannot tell them apart")


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "FrameOfReferenceUID"])
def test_a_series_spanning_two_studies_or_frames_of_reference_is_refused_by_name(tmp_path, keyword):
    files = dict(zip(NAMES, _series(tmp_path / "flair"), strict=True))
    _set(files["IM2"], keyword, "1.2.826.0.1.3680043.8.498.12345")
    series = scan_dicom_series(tmp_path / "flair")
    assert series.files[0] == str(files["IM1"])  # z = -3 mm, the first slice
    _refused(series, f"{files['IM2']}: another {keyword} than {files['IM1']}; a DICOM SEG refers to "
                     "one study and frame of reference")
