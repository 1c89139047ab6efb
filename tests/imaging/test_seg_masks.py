"""A DICOM SEG read back as a mask on its series: medseg's own SEG over a series written here,
its frames placed by their positions (moved by hand, the mask moves with them), and the
refusals of a SEG drawn on another series or another geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.errors import DataError
from medseg.imaging.dicom import scan_dicom_series
from medseg.imaging.dicom_seg import build_segmentation, save_segmentation
from medseg.imaging.seg_masks import read_seg_mask
from tests.support import write_dicom_series

ROWS, COLUMNS = 6, 8  # not square: a transposition cannot go unnoticed
SERIES = "1.2.826.0.1.3680043.8.498.31"
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.32"
#: slice z (LPS mm), written out of order: 4 slices 2.5 mm apart
POSITIONS_Z = (5.0, -2.5, 2.5, 0.0)


def series_folder(folder: Path, *, uid: str = SERIES, shift_z: float = 0.0,
                  spacing: tuple[float, float] = (0.7, 0.5)) -> Path:
    """A 4-slice axial series written into ``folder`` (FrameOfReferenceUID added)."""
    pixels = np.arange(len(POSITIONS_Z) * ROWS * COLUMNS, dtype=np.uint16).reshape(-1, ROWS, COLUMNS)
    files = write_dicom_series(folder, pixels, [(-10.0, -20.0, z + shift_z) for z in POSITIONS_Z],
                               pixel_spacing=spacing, series_uid=uid)
    for file in files:
        dataset = pydicom.dcmread(file)
        dataset.FrameOfReferenceUID = FRAME_OF_REFERENCE
        dataset.save_as(file, enforce_file_format=True)
    return folder


def hand_mask() -> np.ndarray:
    """(Columns, Rows, N) with tumour on sorted slices 1 and 3, distinct off-centre shapes."""
    mask = np.zeros((COLUMNS, ROWS, len(POSITIONS_Z)), np.uint8)
    mask[1:3, 4:6, 1] = 1  # columns 1-2, rows 4-5
    mask[6, 0:3, 3] = 1
    return mask


def seg_file(tmp_path: Path, series_path: Path, mask: np.ndarray) -> Path:
    series = scan_dicom_series(series_path)
    seg = build_segmentation(mask, series, model_name="test")
    return save_segmentation(seg, tmp_path / "expert_seg.dcm")


def test_medseg_seg_reads_back_as_its_mask(tmp_path):
    folder = series_folder(tmp_path / "series")
    path = seg_file(tmp_path, folder, hand_mask())
    series = scan_dicom_series(folder)
    found, mask = read_seg_mask(path, [series])
    assert found is series and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, hand_mask())


def test_frames_are_placed_by_position_not_order(tmp_path):
    """Moving a frame's ImagePositionPatient by one slice step (2.5 mm) moves its tumour there."""
    folder = series_folder(tmp_path / "series")
    path = seg_file(tmp_path, folder, hand_mask())
    dataset = pydicom.dcmread(path)
    frames = dataset.PerFrameFunctionalGroupsSequence
    moved = next(f for f in frames if float(f.PlanePositionSequence[0].ImagePositionPatient[2]) == 0.0)
    moved.PlanePositionSequence[0].ImagePositionPatient = [-10.0, -20.0, -2.5]  # slice 1 -> slice 0
    dataset.save_as(path)
    _, mask = read_seg_mask(path, [scan_dicom_series(folder)])
    expected = hand_mask()
    expected[:, :, 0], expected[:, :, 1] = expected[:, :, 1], 0
    np.testing.assert_array_equal(mask, expected)


def test_the_series_referred_to_is_chosen_among_several(tmp_path):
    other = scan_dicom_series(series_folder(tmp_path / "other", uid="1.2.826.0.1.3680043.8.498.40"))
    folder = series_folder(tmp_path / "series")
    path = seg_file(tmp_path, folder, hand_mask())
    series = scan_dicom_series(folder)
    found, mask = read_seg_mask(path, [other, series])
    assert found is series
    np.testing.assert_array_equal(mask, hand_mask())


def refusal(path: Path, series_path: Path) -> str:
    with pytest.raises(DataError) as err:
        read_seg_mask(path, [scan_dicom_series(series_path)])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_a_seg_of_another_series_or_geometry_is_refused(tmp_path):
    path = seg_file(tmp_path, series_folder(tmp_path / "series"), hand_mask())
    other = series_folder(tmp_path / "other", uid="1.2.826.0.1.3680043.8.498.40")
    assert refusal(path, other) == (f"{path}: the DICOM SEG refers to {SERIES}, not the uploaded "
                                    "series 1.2.826.0.1.3680043.8.498.40")
    shifted = series_folder(tmp_path / "shifted", shift_z=1.0)  # same UID, slices 1 mm higher
    assert "lies on no slice of the series" in refusal(path, shifted)
    finer = series_folder(tmp_path / "finer", spacing=(0.7, 0.6))
    assert "has PixelSpacing [0.7, 0.5], the series [0.7, 0.6]" in refusal(path, finer)

    dataset = pydicom.dcmread(path)
    dataset.FrameOfReferenceUID = "1.2.3"
    dataset.save_as(tmp_path / "elsewhere.dcm")
    assert "FrameOfReferenceUID 1.2.3 is not the series'" in refusal(tmp_path / "elsewhere.dcm",
                                                                     tmp_path / "series")
    dataset = pydicom.dcmread(path)
    dataset.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient = [
        0, 1, 0, 0, 0, -1]
    dataset.save_as(tmp_path / "sagittal.dcm")
    assert "frame 1 is oriented" in refusal(tmp_path / "sagittal.dcm", tmp_path / "series")
    image = next((tmp_path / "series").iterdir())
    assert "not a DICOM SEG" in refusal(image, tmp_path / "series")
    (tmp_path / "notes.dcm").write_bytes(b"hello")
    assert refusal(tmp_path / "notes.dcm", tmp_path / "series").endswith("not a DICOM file")
