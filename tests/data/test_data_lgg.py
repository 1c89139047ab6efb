"""The kaggle_3m layout: finding the root, listing patients in numeric order, reading TIFFs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from medseg.data.lgg import find_lgg_root, list_patients, scan_lgg
from medseg.errors import DataError
from medseg.imaging.images import read_mask, read_slice_image
from tests.imaging.hostile import fifo, no_hang
from tests.support import write_lgg


def test_find_lgg_root_accepts_the_top_folder_and_kaggle_3m(lgg):
    assert find_lgg_root(lgg.top) == lgg.root
    assert find_lgg_root(lgg.root) == lgg.root


def test_list_patients_sorts_slices_numerically(lgg):
    patients = list_patients(lgg.top)
    assert [p.name for p in patients] == sorted(lgg.images)
    first = patients[0]
    assert [s.index for s in first.slices] == list(range(1, 12))
    assert [s.image_path.name for s in first.slices[8:11]] == [
        "TCGA_AA_0001_20000101_9.tif", "TCGA_AA_0001_20000101_10.tif",
        "TCGA_AA_0001_20000101_11.tif",
    ]
    for s in first.slices:
        assert s.mask_path.name == f"TCGA_AA_0001_20000101_{s.index}_mask.tif"
        assert read_slice_image(s.image_path)[0, 0, 0] == s.index  # the k written in the pixel


def test_readers_return_the_written_pixels_unchanged(lgg):
    patient = list_patients(lgg.root)[2]
    for s, image, mask in zip(patient.slices, lgg.images[patient.name], lgg.masks[patient.name],
                              strict=True):
        read = read_slice_image(s.image_path)
        assert read.shape == image.shape == (40, 56, 3) and read.dtype == np.uint8
        np.testing.assert_array_equal(read, image)
        np.testing.assert_array_equal(read_mask(s.mask_path), mask)


def test_read_mask_accepts_0_1_masks(tmp_path):
    mask = np.zeros((40, 56), np.uint8)
    mask[3:7, 10:30] = 1
    tifffile.imwrite(tmp_path / "m.tif", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), mask)


def test_healthy_patient_has_empty_masks(lgg):
    healthy = next(p for p in list_patients(lgg.root) if p.name == lgg.healthy)
    assert all(read_mask(s.mask_path).max() == 0 for s in healthy.slices)


def test_truncated_tif_is_a_data_error_naming_the_file(lgg):
    path = lgg.root / "TCGA_CC_0003_20020202" / "TCGA_CC_0003_20020202_2.tif"
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(DataError, match=r"TCGA_CC_0003_20020202_2\.tif: cannot read TIFF"):
        read_slice_image(path)


def test_grayscale_slice_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "g.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"g\.tif: expected an 8-bit RGB slice"):
        read_slice_image(tmp_path / "g.tif")


def test_non_binary_mask_lists_its_values(tmp_path):
    mask = np.zeros((40, 56), np.uint8)
    mask[0, :3] = [17, 255, 128]
    tifffile.imwrite(tmp_path / "m_mask.tif", mask)
    with pytest.raises(DataError, match=r"m_mask\.tif: mask is not binary \(values 0, 17, 128, 255"):
        read_mask(tmp_path / "m_mask.tif")


def test_image_without_mask(lgg):
    (lgg.root / "TCGA_CC_0003_20020202" / "TCGA_CC_0003_20020202_3_mask.tif").unlink()
    with pytest.raises(DataError, match=r"TCGA_CC_0003_20020202_3\.tif: image has no mask"):
        list_patients(lgg.top)


def test_mask_without_image(lgg):
    (lgg.root / "TCGA_DD_0004_20030303" / "TCGA_DD_0004_20030303_5.tif").unlink()
    with pytest.raises(DataError, match=r"TCGA_DD_0004_20030303_5_mask\.tif: mask has no image"):
        list_patients(lgg.top)


def test_unexpected_tif_name(lgg):
    (lgg.root / "TCGA_DD_0004_20030303" / "notes.tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"notes\.tif: unexpected file name"):
        list_patients(lgg.top)


def test_folder_without_patients_describes_both_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"not an LGG dataset folder.*kaggle_3m.*camelyonpatch"):
        find_lgg_root(tmp_path / "empty")


def _add_macos_metadata(lgg) -> int:
    """What unzipping kaggle_3m on a Mac leaves: AppleDouble ``._*`` files beside the slices,
    ``.DS_Store`` files and a ``__MACOSX`` folder mirroring the patients. Returns the count of
    entries added inside kaggle_3m."""
    folder = lgg.root / "TCGA_AA_0001_20000101"
    (folder / "._TCGA_AA_0001_20000101_1.tif").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (folder / "._TCGA_AA_0001_20000101_1_mask.tif").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (lgg.root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    mirror = lgg.root / "__MACOSX" / "TCGA_AA_0001_20000101"
    mirror.mkdir(parents=True)
    (mirror / "._TCGA_AA_0001_20000101_1.tif").write_bytes(b"\x00\x05\x16\x07")
    (lgg.top / "__MACOSX").mkdir()  # beside kaggle_3m: outside the dataset, not counted
    return 5


def test_macos_metadata_is_skipped_and_recorded(lgg):
    before = list_patients(lgg.top)
    added = _add_macos_metadata(lgg)
    scan = scan_lgg(lgg.top)
    assert scan.patients == before
    assert len(scan.skipped) == added
    assert {p.name for p in scan.skipped} == {
        "._TCGA_AA_0001_20000101_1.tif", "._TCGA_AA_0001_20000101_1_mask.tif", ".DS_Store", "__MACOSX",
    }
    assert find_lgg_root(lgg.top) == lgg.root


def _unreadable(monkeypatch, folder):
    """``folder`` cannot be listed (chmod 000 does not stop root, who runs the tests)."""
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.abspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    folder.chmod(0)
    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_patient_folder_is_reported_as_such(lgg, monkeypatch):
    folder = lgg.root / "TCGA_CC_0003_20020202"
    try:
        _unreadable(monkeypatch, folder)
        with pytest.raises(DataError, match=r"TCGA_CC_0003_20020202: cannot read folder \(permission denied\)"):
            list_patients(lgg.top)
    finally:
        folder.chmod(0o755)


def test_an_unreadable_kaggle_3m_folder_is_reported_as_such(lgg, monkeypatch):
    try:
        _unreadable(monkeypatch, lgg.root)
        with pytest.raises(DataError, match=r"kaggle_3m: cannot read folder \(permission denied\)"):
            find_lgg_root(lgg.top)
    finally:
        lgg.root.chmod(0o755)


@pytest.mark.parametrize("role", ["image", "mask"])
def test_a_fifo_named_like_a_slice_is_refused_when_listed_without_blocking(tmp_path, role):
    """``data check``, ``evaluate`` and training list patients first: a FIFO named like a
    slice is refused there by name, never opened (opening it would wait forever)."""
    lgg = write_lgg(tmp_path / "lgg", {"TCGA_AA_0001_20000101": 2})
    folder = lgg.root / "TCGA_AA_0001_20000101"
    pipe = folder / f"TCGA_AA_0001_20000101_2{'' if role == 'image' else '_mask'}.tif"
    pipe.unlink()
    fifo(pipe)
    with no_hang(), pytest.raises(DataError) as err:
        scan_lgg(lgg.top)
    assert str(err.value) == f"{pipe}: not a regular file (a FIFO); medseg reads only regular files"
