"""check_dataset: format detection, counts, and one clear error per kind of bad input."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import tifffile

from medseg.data.check import check_dataset
from medseg.data.formats import detect_format
from medseg.engine import evaluation
from medseg.errors import DataError
from tests.imaging.hostile import fifo, no_hang
from tests.support import write_lgg


def test_lgg_counts_from_the_top_folder_or_kaggle_3m(lgg):
    positives = sum(int(m.any()) for masks in lgg.masks.values() for m in masks)
    expected = {
        "format": "lgg",
        "root": str(lgg.root),
        "patients": 4,
        "slices": 11 + 3 + 4 + 5,
        "positive_slices": positives,
        "positive_patients": 3,
        "skipped": 0,
    }
    assert positives == 7 + 2 + 3  # no tumour at k = 1, 4, 7, 10 nor in the healthy patient
    assert check_dataset(lgg.top).to_dict() == expected
    assert check_dataset(lgg.root).to_dict() == expected
    summary = check_dataset(lgg.top).summary()
    assert "patients: 4 (3 with tumour)" in summary and "images 40x56x3" in summary


def test_macos_metadata_is_skipped_with_a_note(lgg):
    folder = lgg.root / "TCGA_AA_0001_20000101"
    (folder / "._TCGA_AA_0001_20000101_1.tif").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (lgg.root / "__MACOSX" / folder.name).mkdir(parents=True)
    (lgg.root / "__MACOSX" / folder.name / "._TCGA_AA_0001_20000101_1.tif").write_bytes(b"\x00")
    report = check_dataset(lgg.top)
    assert report.to_dict()["skipped"] == 2 and report.to_dict()["slices"] == 23
    assert "skipped:  2 hidden or macOS metadata entries (._*, .DS_Store, __MACOSX), not data" in report.summary()
    assert "  skipped:" not in check_dataset(write_lgg(lgg.top.parent / "clean").top).summary()


def test_pcam_counts(pcam):
    report = check_dataset(pcam.root)
    assert report.to_dict() == {
        "format": "pcam",
        "root": str(pcam.root),
        "splits": {"train": 24, "val": 10, "test": 8},
        "positives": {"train": 12, "val": 5, "test": 4},
    }
    assert "camelyonpatch_level_2_split_valid_x.h5): 10 patches, 5 positive" in report.summary()


def test_truncated_tif(lgg):
    path = lgg.root / "TCGA_AA_0001_20000101" / "TCGA_AA_0001_20000101_10.tif"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"TCGA_AA_0001_20000101_10\.tif: cannot read TIFF"):
        check_dataset(lgg.top)


def test_mask_of_another_size(lgg):
    path = lgg.root / "TCGA_CC_0003_20020202" / "TCGA_CC_0003_20020202_2_mask.tif"
    tifffile.imwrite(path, np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match=r"_2_mask\.tif: mask is 40x40 but its image is 40x56"):
        check_dataset(lgg.top)


def test_non_binary_mask(lgg):
    path = lgg.root / "TCGA_DD_0004_20030303" / "TCGA_DD_0004_20030303_4_mask.tif"
    tifffile.imwrite(path, np.full((40, 56), 3, np.uint8))
    with pytest.raises(DataError, match=r"_4_mask\.tif: mask is not binary \(values 3;"):
        check_dataset(lgg.top)


def test_image_without_mask(lgg):
    (lgg.root / "TCGA_BB_0002_20010101" / "TCGA_BB_0002_20010101_2_mask.tif").unlink()
    with pytest.raises(DataError, match=r"TCGA_BB_0002_20010101_2\.tif: image has no mask"):
        check_dataset(lgg.top)


def test_empty_folder_describes_both_layouts(tmp_path):
    with pytest.raises(DataError, match=r"folder is empty; expected LGG \(kaggle_3m/<patient>/"
                                        r".*PatchCamelyon \(camelyonpatch_level_2_split_"):
        check_dataset(tmp_path)


def test_unrecognised_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"is not a recognised dataset; expected LGG"):
        check_dataset(tmp_path)
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        check_dataset(tmp_path / "nowhere")


def test_empty_kaggle_3m_folder(tmp_path):
    (tmp_path / "kaggle_3m").mkdir()
    with pytest.raises(DataError, match=r"is not a recognised dataset; expected LGG"):
        check_dataset(tmp_path)


def test_detect_format_by_layout(lgg, pcam, tmp_path):
    assert detect_format(lgg.top) == "lgg"  # the download's top folder, parent of kaggle_3m
    assert detect_format(lgg.root) == "lgg"  # kaggle_3m itself
    assert detect_format(lgg.root / "TCGA_AA_0001_20000101") is None  # a patient folder
    assert detect_format(pcam.root) == "pcam"
    gzipped = tmp_path / "downloaded"
    gzipped.mkdir()
    (gzipped / "camelyonpatch_level_2_split_test_x.h5.gz").write_bytes(b"\x1f\x8b")
    assert detect_format(gzipped) == "pcam"  # check_dataset then says to gunzip it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_format(empty) is None
    assert detect_format(tmp_path / "nowhere") is None
    assert detect_format(pcam.root / "camelyonpatch_level_2_split_test_x.h5") is None  # a file
    (empty / "kaggle_3m" / "photos").mkdir(parents=True)
    (empty / "kaggle_3m" / "photos" / "photos_1.png").write_bytes(b"")
    assert detect_format(empty) is None  # kaggle_3m without <patient>/<patient>_<k>.tif


def test_a_folder_holding_both_datasets_is_pcam(lgg, pcam):
    shutil.copytree(lgg.root, pcam.root / "kaggle_3m")
    assert detect_format(pcam.root) == "pcam"
    assert check_dataset(pcam.root).format == "pcam"
    assert detect_format(pcam.root / "kaggle_3m") == "lgg"


def test_check_and_evaluate_detect_by_one_rule():
    assert evaluation.data_format is detect_format


def test_pcam_label_out_of_range(pcam):
    with h5py.File(pcam.root / "camelyonpatch_level_2_split_test_y.h5", "r+") as f:
        f["y"][3] = 2
    with pytest.raises(DataError, match=r"split_test_y\.h5: label 2 found; labels must be 0 or 1"):
        check_dataset(pcam.root)


def test_pcam_length_mismatch(pcam):
    with h5py.File(pcam.root / "camelyonpatch_level_2_split_valid_x.h5", "w") as f:
        f.create_dataset("x", data=np.zeros((11, 96, 96, 3), np.uint8))
    with pytest.raises(DataError, match=r"split_valid_y\.h5: holds 10 labels but .* holds 11"):
        check_dataset(pcam.root)


def test_pcam_wrong_label_dtype(pcam):
    with h5py.File(pcam.root / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((24, 1, 1, 1), np.float32))
    with pytest.raises(DataError, match=r"split_train_y\.h5: dataset /y has dtype float32, "
                                        r"expected uint8"):
        check_dataset(pcam.root)


def test_data_check_refuses_a_fifo_slice_by_name_without_blocking(tmp_path):
    lgg = write_lgg(tmp_path / "lgg", {"TCGA_AA_0001_20000101": 2, "TCGA_BB_0002_20010101": 1})
    pipe = lgg.root / "TCGA_BB_0002_20010101" / "TCGA_BB_0002_20010101_1.tif"
    pipe.unlink()
    fifo(pipe)
    with no_hang(), pytest.raises(DataError) as err:
        check_dataset(lgg.top)
    assert str(err.value) == f"{pipe}: not a regular file (a FIFO); medseg reads only regular files"
    assert detect_format(lgg.top) == "lgg"  # detection reads names only: it does not block either
