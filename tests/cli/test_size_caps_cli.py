"""Oversized slices in ``data check``, ``train`` and ``predict``: one line, exit code 2, never a
traceback. 20000x20000 is past Pillow's own DecompressionBombError; 12000x12000 is below it
and stopped by medseg's cap (``MEDSEG_MAX_IMAGE_PIXELS``) alone."""

from __future__ import annotations

import pytest

from medseg.cli.main import main
from tests.imaging.oversized import write_png_declaring, write_tiff_declaring
from tests.support import assert_log_ends_in_one_line_error, lgg_settings, write_config, write_lgg


def _one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("medseg: error: ") and err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


#: (side, what the message says): past Pillow's guard, and past medseg's cap only
SIZES = [(20000, "the image declares 400000000 pixels"),
         (12000, "the image declares 12000x12000 = 144000000 pixels")]


def _lgg_with_a_huge_slice(tmp_path, side=20000):
    lgg = write_lgg(tmp_path / "lgg", {"TCGA_AA_0001_20000101": 2, "TCGA_BB_0002_20010101": 2,
                                       "TCGA_CC_0003_20020202": 2})
    huge = []
    for patient in lgg.images:
        for k in (1, 2):
            huge.append(write_tiff_declaring(lgg.root / patient / f"{patient}_{k}.tif", side, side))
    return lgg, huge


@pytest.mark.parametrize(("side", "declared"), SIZES)
def test_data_check(tmp_path, capsys, side, declared):
    lgg, huge = _lgg_with_a_huge_slice(tmp_path, side)
    assert main(["data", "check", str(lgg.top)]) == 2
    _one_line_error(capsys, f"{huge[0]}: {declared}, over the limit")


@pytest.mark.parametrize(("side", "declared"), SIZES)
def test_train(tmp_path, capsys, side, declared):
    lgg, _ = _lgg_with_a_huge_slice(tmp_path, side)
    settings = lgg_settings(lgg.top, tmp_path / "run", epochs=1)
    settings["data"]["val_fraction"] = settings["data"]["test_fraction"] = 0.34
    assert main(["train", str(write_config(settings, tmp_path / "c.yaml"))]) == 2
    # the slices are read as the first epoch runs, after the log's first line (the precision)
    assert_log_ends_in_one_line_error(capsys.readouterr().err, f".tif: {declared}", "MEDSEG_MAX_IMAGE_PIXELS")


def test_predict(trained_lgg, tmp_path, capsys):
    out = tmp_path / "out"
    huge = write_tiff_declaring(tmp_path / "huge.tif", 20000, 20000)
    assert main(["predict", str(trained_lgg.run_dir / "best.pt"), str(huge), "--out", str(out)]) == 2
    _one_line_error(capsys, f"{huge}: the image declares 400000000 pixels")
    bomb = write_png_declaring(tmp_path / "bomb.png", 12000, 12000)
    assert main(["predict", str(trained_lgg.run_dir / "best.pt"), str(bomb), "--out", str(out)]) == 2
    _one_line_error(capsys, f"{bomb}: the image declares 12000x12000 = 144000000 pixels")
    assert not list(out.rglob("*.png"))
