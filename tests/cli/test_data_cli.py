"""``medseg demo-data`` and ``medseg data check`` through the CLI entry point."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tifffile

from medseg.cli.main import main
from tests.support import write_lgg


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("medseg: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_demo_lgg_then_check_json_matches_an_independent_count(tmp_path, capsys):
    out = tmp_path / "lgg"
    code, stdout, _ = run_cli(capsys, "demo-data", "lgg", str(out), "--seed", "3")
    assert code == 0 and "SYNTHETIC" in stdout and "patients: 12" in stdout

    patients = positive_slices = positive_patients = 0
    slices = 0
    for folder in sorted(p for p in (out / "kaggle_3m").iterdir() if p.is_dir()):
        masks = [tifffile.imread(p) for p in folder.glob("*_mask.tif")]
        assert len(masks) == len(list(folder.glob("*.tif"))) // 2
        patients += 1
        slices += len(masks)
        positive_slices += sum(int(m.any()) for m in masks)
        positive_patients += any(m.any() for m in masks)

    code, stdout, _ = run_cli(capsys, "data", "check", str(out), "--json")
    assert code == 0
    assert json.loads(stdout) == {
        "format": "lgg",
        "root": str(out / "kaggle_3m"),
        "patients": patients,
        "slices": slices,
        "positive_slices": positive_slices,
        "positive_patients": positive_patients,
        "skipped": 0,
    }
    code, stdout, _ = run_cli(capsys, "data", "check", str(out / "kaggle_3m"))
    assert code == 0 and f"slices:   {slices} ({positive_slices} with tumour)" in stdout


def test_demo_data_refuses_a_non_empty_folder_unless_forced(tmp_path, capsys):
    out = tmp_path / "pcam"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, stdout, err = run_cli(capsys, "demo-data", "pcam", str(out))
    assert code == 2 and stdout == ""
    assert_one_line_error(err, f"{out}: folder is not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    code, stdout, err = run_cli(capsys, "demo-data", "pcam", str(out), "--force")
    assert code == 2 and stdout == ""  # no marker: not demo data, never replaced
    assert_one_line_error(err, f"{out}: holds files but no medseg_demo.json")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_only_the_files_of_an_earlier_demo(tmp_path, capsys):
    out = tmp_path / "pcam"
    code, stdout, _ = run_cli(capsys, "demo-data", "pcam", str(out))
    assert code == 0 and "SYNTHETIC" in stdout
    (out / "keep.txt").write_text("mine")
    code, stdout, _ = run_cli(capsys, "demo-data", "pcam", str(out), "--force", "--seed", "1")
    assert code == 0 and "SYNTHETIC" in stdout
    assert (out / "keep.txt").read_text() == "mine"
    assert json.loads((out / "medseg_demo.json").read_text())["seed"] == 1

    code, stdout, _ = run_cli(capsys, "data", "check", str(out), "--json")
    report = json.loads(stdout)
    positives = {}
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        with h5py.File(out / f"camelyonpatch_level_2_split_{name}_y.h5") as f:
            positives[split] = int(f["y"][:].sum())
    assert code == 0 and report["format"] == "pcam"
    assert report["splits"] == {"train": 768, "val": 192, "test": 192}
    assert report["positives"] == positives

    real = out / "camelyonpatch_level_2_split_test_x.h5"
    real.write_bytes(b"a real PCam file copied over the demo one")
    code, _, err = run_cli(capsys, "demo-data", "pcam", str(out), "--force")
    assert code == 2
    assert_one_line_error(err, f"{real}: changed since medseg demo-data wrote it")
    assert real.read_bytes() == b"a real PCam file copied over the demo one"
    code, _, err = run_cli(capsys, "demo-data", "lgg", str(out), "--force")
    assert code == 2
    assert_one_line_error(err, f"{out}: holds the pcam demo data")


def test_force_never_deletes_a_real_kaggle_3m(tmp_path, capsys):
    top = write_lgg(tmp_path / "lgg", {"TCGA_AA_0001_20000101": 2}).top
    (top / "kaggle_3m" / "my_notes.txt").write_text("mine")
    before = sorted(p.relative_to(top) for p in top.rglob("*"))
    code, stdout, err = run_cli(capsys, "demo-data", "lgg", str(top), "--force")
    assert code == 2 and stdout == ""
    assert_one_line_error(err, f"{top}: holds files but no medseg_demo.json")
    assert sorted(p.relative_to(top) for p in top.rglob("*")) == before


def test_invalid_lgg_data_exits_2_naming_the_file(tmp_path, capsys):
    folder = tmp_path / "kaggle_3m" / "TCGA_AA_0001_20000101"
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "TCGA_AA_0001_20000101_1.tif", np.zeros((8, 8, 3), np.uint8),
                     photometric="rgb")
    tifffile.imwrite(folder / "TCGA_AA_0001_20000101_1_mask.tif", np.full((8, 8), 7, np.uint8))
    code, stdout, err = run_cli(capsys, "data", "check", str(tmp_path), "--json")
    assert code == 2 and stdout == ""
    assert_one_line_error(err, "TCGA_AA_0001_20000101_1_mask.tif: mask is not binary")


def test_gzipped_pcam_exits_2_with_the_gunzip_command(tmp_path, capsys):
    (tmp_path / "camelyonpatch_level_2_split_train_x.h5.gz").write_bytes(b"\x1f\x8b")
    code, _, err = run_cli(capsys, "data", "check", str(tmp_path))
    gz = tmp_path / "camelyonpatch_level_2_split_train_x.h5.gz"
    assert code == 2
    assert_one_line_error(err, f"gunzip {gz}")


@pytest.mark.parametrize("make", ["empty", "other"])
def test_unrecognised_folder_describes_both_layouts(tmp_path, capsys, make):
    if make == "other":
        (tmp_path / "photo.png").write_bytes(b"x")
    code, _, err = run_cli(capsys, "data", "check", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "kaggle_3m/<patient>/<patient>_<k>.tif",
                          "camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5")


def test_data_requires_an_action(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data"])
    assert exc.value.code == 2
    assert "check" in capsys.readouterr().err


def test_data_check_notes_skipped_macos_files(tmp_path, capsys):
    top = write_lgg(tmp_path / "lgg", {"TCGA_AA_0001_20000101": 2}).top
    folder = top / "kaggle_3m" / "TCGA_AA_0001_20000101"
    (folder / "._TCGA_AA_0001_20000101_1.tif").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (top / "kaggle_3m" / "__MACOSX").mkdir()
    code, stdout, err = run_cli(capsys, "data", "check", str(top))
    assert code == 0 and err == ""
    assert "skipped:  2 hidden or macOS metadata entries" in stdout and "slices:   2" in stdout
