"""medseg predict on an ONNX export: ONNX Runtime gives the checkpoint's masks and files, and
an engine that cannot run the file, or a corrupt export, is refused in one line."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image

from medseg.cli.main import main
from medseg.engine.checkpoint import load_model
from medseg.engine.inference import slice_probabilities
from medseg.predict.run import Predictor
from tests.export.test_export import PATIENT, _one_line_error, _slices, _volume


def test_predict_with_onnx_runtime_writes_the_checkpoint_s_masks(onnx_export, best_checkpoint, tiny_lgg,
                                                                 tmp_path, capsys):
    folder = tiny_lgg / "kaggle_3m" / PATIENT
    volume = _volume(tiny_lgg, tmp_path / "case.nii.gz")
    assert main(["predict", str(best_checkpoint), str(folder), str(volume), "--out", str(tmp_path / "pt")]) == 0
    capsys.readouterr()
    assert main(["predict", str(onnx_export.out), str(folder), str(volume), "--out", str(tmp_path / "onnx")]) == 0
    assert "predicting with ONNX Runtime" in capsys.readouterr().out
    torch_files = sorted(p.relative_to(tmp_path / "pt") for p in (tmp_path / "pt").rglob("*") if p.is_file())
    onnx_files = sorted(p.relative_to(tmp_path / "onnx") for p in (tmp_path / "onnx").rglob("*") if p.is_file())
    assert onnx_files == torch_files and len(torch_files) > 10
    for name in torch_files:
        if name.name.endswith("_pred.png"):
            assert np.array_equal(np.asarray(Image.open(tmp_path / "onnx" / name)),
                                  np.asarray(Image.open(tmp_path / "pt" / name)))
    masks = [np.asarray(nib.load(tmp_path / kind / "case_pred.nii.gz").dataobj) for kind in ("pt", "onnx")]
    assert masks[0].any() and np.array_equal(*masks)


def test_the_onnx_engine_gives_predict_s_probabilities(onnx_export, best_checkpoint, tiny_lgg):
    engine = Predictor.from_checkpoint(onnx_export.out / "model.onnx", engine="onnxruntime").model
    loaded = load_model(best_checkpoint)
    slices = _slices(tiny_lgg)
    expected = slice_probabilities(loaded.model, slices, loaded.config.data.image_size)
    got = engine.probabilities(list(slices))
    assert got.shape == expected.shape and np.max(np.abs(got - expected)) <= 1e-4


def test_engines_that_cannot_run_the_file_and_corrupt_exports_exit_2(onnx_export, best_checkpoint,
                                                                     tiny_lgg, tmp_path, capsys):
    one = tiny_lgg / "kaggle_3m" / PATIENT / f"{PATIENT}_2.tif"
    out = str(tmp_path / "out")
    assert main(["predict", str(onnx_export.out), str(one), "--out", out, "--engine", "torch"]) == 2
    assert "runs in ONNX Runtime" in _one_line_error(capsys)
    assert main(["predict", str(best_checkpoint), str(one), "--out", out, "--engine", "onnxruntime"]) == 2
    assert "medseg export" in _one_line_error(capsys)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07" + (onnx_export.out / "model.onnx").read_bytes()[2:4096])
    assert main(["predict", str(corrupt), str(one), "--out", out]) == 2
    assert f"{corrupt}: not a readable ONNX model" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
