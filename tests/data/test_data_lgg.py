"""The kaggle_3m layout: finding the root, listing patients in numeric order, reading TIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from medseg.data import find_lgg_root, list_patients, read_mask, read_slice_image
from medseg.errors import DataError


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
