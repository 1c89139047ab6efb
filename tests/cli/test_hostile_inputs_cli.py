"""Issue 22 at the command line: ``predict``, ``data check`` and ``evaluate`` given a FIFO, a
sparse DICOM declaring 2 GiB, a NIfTI overflowing float32, RGB24 voxels, no voxel at all or a
NumberOfFrames of "abc": exit code 2, one line naming the file and the problem, nothing written,
never a wait or a traceback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medseg.cli.main import main
from tests.imaging.hostile import (
    fifo,
    no_hang,
    rgb24,
    write_mr_small,
    write_nifti,
    write_sparse_dicom,
)
from tests.support import write_dicom_series, write_lgg

FIFO_REFUSAL = "not a regular file (a FIFO); medseg reads only regular files"


def _one_line_error(capsys, expected: str) -> None:
    assert capsys.readouterr().err == f"medseg: error: {expected}\n"


def _predict(trained_lgg, tmp_path, *args: str) -> int:
    out = tmp_path / "out"
    with no_hang():
        code = main(["predict", str(trained_lgg.run_dir / "best.pt"), *args, "--out", str(out)])
    assert not out.exists() or not any(out.iterdir())
    return code


def test_predict_refuses_a_fifo_given_as_a_sequence(trained_lgg, tmp_path, capsys):
    for name in ("flair", "flair.nii.gz", "flair.zip"):
        pipe = fifo(tmp_path / name)
        assert _predict(trained_lgg, tmp_path, "--flair", str(pipe), "--single-sequence") == 2
        _one_line_error(capsys, f"{pipe}: {FIFO_REFUSAL}")


def test_predict_refuses_a_fifo_among_a_dicom_series(trained_lgg, tmp_path, capsys):
    folder = tmp_path / "flair"
    write_dicom_series(folder, np.ones((2, 8, 8), np.uint16), [(0, 0, 0), (0, 0, 1)])
    pipe = fifo(folder / "slice2.dcm")
    assert _predict(trained_lgg, tmp_path, "--flair", str(folder), "--single-sequence") == 2
    _one_line_error(capsys, f"{pipe}: {FIFO_REFUSAL}")


def test_data_check_and_evaluate_refuse_a_fifo_slice(trained_lgg, tmp_path, capsys):
    lgg = write_lgg(tmp_path / "lgg")
    patient = sorted(lgg.images)[-1]
    pipe = lgg.root / patient / f"{patient}_1.tif"
    pipe.unlink()
    fifo(pipe)
    with no_hang():
        assert main(["data", "check", str(lgg.top)]) == 2
    _one_line_error(capsys, f"{pipe}: {FIFO_REFUSAL}")
    with no_hang():
        assert main(["evaluate", str(trained_lgg.run_dir / "best.pt"), "--data", str(lgg.top),
                     "--split", "all"]) == 2
    _one_line_error(capsys, f"{pipe}: {FIFO_REFUSAL}")


def test_predict_refuses_a_sparse_dicom_declaring_2_gib(trained_lgg, tmp_path, capsys):
    path = write_sparse_dicom(tmp_path / "flair.dcm")
    assert _predict(trained_lgg, tmp_path, "--flair", str(path), "--single-sequence") == 2
    _one_line_error(capsys, f"{path}: PixelData declares {2**31} bytes, but 64x64 pixels of 16 bits "
                            "take 8192; refused before reading")


def test_predict_refuses_a_volume_overflowing_float32(trained_lgg, tmp_path, capsys):
    """Before: read as all zeros, exit 0 with lesions reported."""
    data = np.random.default_rng(0).random((8, 8, 3, 3)) * 1e300
    path = write_nifti(tmp_path / "scan.nii", data)
    assert _predict(trained_lgg, tmp_path, str(path)) == 2
    _one_line_error(capsys, f"{path}: voxel values reach {data.max():.3g}, beyond the float32 range "
                            "(±3.4e+38) intensities are computed in; refused, not read as zeros")
    slope = write_nifti(tmp_path / "flair.nii", np.full((8, 8, 3), 7, np.int16), slope=3e38)
    assert _predict(trained_lgg, tmp_path, "--flair", str(slope), "--single-sequence") == 2
    assert "flair.nii: voxel values reach 2.1e+39 once scaled by scl_slope 3e+38" in capsys.readouterr().err


@pytest.mark.parametrize("as_sequence", [False, True])
def test_predict_refuses_rgb24_and_empty_volumes(trained_lgg, tmp_path, capsys, as_sequence):
    """Before: RGB24 was a traceback; a volume of no voxel "changed on disk since it was checked"."""
    for name, data, message in (
            ("rgb.nii", rgb24((8, 8, 3)), "stores voxels of NIfTI datatype 128 (RGB); expected one grey "
                                          "value per voxel (an integer or floating-point datatype)"),
            ("empty.nii", np.zeros((8, 8, 0), np.float32), "the volume declares shape 8x8x0, holding "
                                                          "no voxel; there is no image")):
        path = write_nifti(tmp_path / name, data)
        args = ("--flair", str(path)) if as_sequence else (str(path),)
        assert _predict(trained_lgg, tmp_path, *args, "--single-sequence") == 2
        _one_line_error(capsys, f"{path}: {message}")


def test_predict_refuses_a_number_of_frames_that_is_not_a_number(trained_lgg, tmp_path, capsys):
    path = write_mr_small(tmp_path / "flair.dcm", NumberOfFrames="abc")
    assert _predict(trained_lgg, tmp_path, "--flair", str(path), "--single-sequence") == 2
    _one_line_error(capsys, f"{path}: NumberOfFrames 'abc' is not a whole number")


def test_predict_refuses_a_fifo_slice_and_a_fifo_in_out_named_like_an_output(trained_lgg, tmp_path, capsys):
    pipe = fifo(tmp_path / "in" / "scan.png")
    assert _predict(trained_lgg, tmp_path, str(pipe)) == 2
    _one_line_error(capsys, f"{pipe}: {FIFO_REFUSAL}")
    rng = np.random.default_rng(0)
    image = tmp_path / "s_1.png"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "fifo_out"
    for name in ("s_1_pred.png", "s_1_pred_overlay.png"):
        pipe = fifo(out / name)
        with no_hang():
            code = main(["predict", str(trained_lgg.run_dir / "best.pt"), str(image), "--out", str(out),
                         "--overwrite"])
        assert code == 2
        assert "exists and was not written by medseg predict" in capsys.readouterr().err
        pipe.unlink()
