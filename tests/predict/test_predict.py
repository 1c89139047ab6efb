"""``medseg predict``: masks and overlays per slice, NIfTI masks on the input's grid, and a
plan checked before anything is written (no clashes, nothing existing replaced)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from medseg.cli.main import main
from medseg.data.lgg import find_lgg_root
from medseg.data.preprocess import preprocess_image
from medseg.engine import load_model
from medseg.imaging.images import read_slice_image
from medseg.predict import is_prediction, predict_paths
from tests.imaging.oversized import write_nifti_declaring


def _test_patient(trained_lgg, tiny_lgg):
    name = json.loads((trained_lgg.run_dir / "split.json").read_text())["test"][0]
    return find_lgg_root(tiny_lgg) / name


def _expected_mask(loaded, image: np.ndarray) -> np.ndarray:
    """By hand: the evaluation transform at the training size, sigmoid, bilinear back."""
    with torch.no_grad():
        logits = loaded.model(preprocess_image(image, loaded.config.data.image_size)[None])
    probs = torch.nn.functional.interpolate(torch.sigmoid(logits), size=image.shape[:2],
                                            mode="bilinear", align_corners=False)
    return (probs[0, 0] >= 0.5).numpy()


def test_slice_and_patient_folder(trained_lgg, tiny_lgg, tmp_path, capsys):
    best = trained_lgg.run_dir / "best.pt"
    folder = _test_patient(trained_lgg, tiny_lgg)
    one = folder / f"{folder.name}_2.tif"
    out = tmp_path / "out"
    assert main(["predict", str(best), str(one), str(folder), "--out", str(out)]) == 0
    assert "4 slice(s)" in capsys.readouterr().out

    loaded = load_model(best)
    mask = np.asarray(Image.open(out / f"{folder.name}_2_pred.png"))
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, _expected_mask(loaded, read_slice_image(one)))
    overlay = np.asarray(Image.open(out / f"{folder.name}_2_pred_overlay.png"))
    assert overlay.shape == (64, 64, 3)
    untouched = mask == 0
    assert np.array_equal(overlay[untouched], read_slice_image(one)[untouched])

    written = sorted(p.name for p in (out / folder.name).iterdir())
    assert written == sorted(f"{folder.name}_{k}_{kind}.png" for k in range(1, 5) for kind in ("pred", "pred_overlay"))


def test_masks_come_back_at_the_input_size(trained_lgg, tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(80, 96, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "wide.png")
    records = predict_paths(trained_lgg.run_dir / "best.pt", [tmp_path / "wide.png"], tmp_path / "out")
    mask = np.asarray(Image.open(tmp_path / "out" / "wide_pred.png"))
    assert mask.shape == (80, 96)
    expected = _expected_mask(load_model(trained_lgg.run_dir / "best.pt"), image)
    assert np.array_equal(mask == 255, expected)
    assert records[0].kind == "slice" and records[0].tumour_pixels == int(expected.sum())


def test_nifti_volume_keeps_the_input_grid(trained_lgg, tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(100, 20, size=(64, 64, 3)).astype(np.float32)
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -120], [0, 0, 3.0, -60], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    records = predict_paths(trained_lgg.run_dir / "best.pt", [tmp_path / "scan.nii.gz"], out,
                            single_sequence=True)
    mask_image = nib.load(out / "scan_pred.nii.gz")
    assert mask_image.shape == (64, 64, 3)
    assert np.allclose(mask_image.affine, affine)
    values = np.asarray(mask_image.dataobj)
    assert set(np.unique(values)) <= {0, 1}
    assert records[0].kind == "volume" and records[0].slices == 3
    assert int(values.sum()) == records[0].tumour_pixels
    assert sorted(p.name for p in (out / "scan").iterdir()) == sorted(
        f"scan_{k}_{kind}.png" for k in (1, 2, 3) for kind in ("pred", "pred_overlay"))
    assert all(is_prediction(path) for record in records for path in record.files)


def test_bad_inputs_and_classifiers_exit_2(trained_lgg, trained_pcam, tiny_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    out = tmp_path / "out"
    assert main(["predict", best, str(tmp_path / "missing.tif"), "--out", str(out)]) == 2
    assert "missing.tif: no such file" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["predict", best, str(tmp_path / "notes.txt"), "--out", str(out)]) == 2
    assert "notes.txt: not a slice" in capsys.readouterr().err
    assert not out.exists()
    folder = next(find_lgg_root(tiny_lgg).iterdir())
    assert main(["predict", str(trained_pcam.run_dir / "best.pt"), str(folder), "--out", str(out)]) == 2
    assert "classification checkpoint" in capsys.readouterr().err
    assert not out.exists()


def _png_slices(folder, names, *, masks=True, seed=3):
    """A folder of RGB PNG slices, each with an expert ``<name>_mask.png``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{name}.png")
        if masks:
            Image.fromarray(np.full((40, 48), 255, np.uint8)).save(folder / f"{name}_mask.png")
    return folder


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("medseg: error: ") and err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_expert_masks_beside_the_slices_are_never_touched(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    folder = _png_slices(tmp_path / "case", ["s1", "s2"])
    experts = _files(folder)
    assert main(["predict", best, str(folder), "--out", str(tmp_path)]) == 0  # into the folder itself
    capsys.readouterr()
    assert {p: b for p, b in _files(folder).items() if p in experts} == experts
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"s{k}{end}" for k in (1, 2) for end in (".png", "_mask.png", "_pred.png", "_pred_overlay.png"))

    # a second run reads the same two slices (not the predictions) and refuses to replace them
    first = _files(folder)
    assert main(["predict", best, str(folder), "--out", str(tmp_path)]) == 2
    _error(capsys, f"{folder / 's1_pred.png'}: already exists", "--overwrite")
    assert _files(folder) == first
    records = predict_paths(best, [folder], tmp_path, overwrite=True)
    assert records[0].slices == 2 and _files(folder) == first  # same predictions, rewritten


def test_two_inputs_mapping_to_one_output_are_refused(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    a, b = _png_slices(tmp_path / "a", ["x"]) / "x.png", _png_slices(tmp_path / "b", ["x"]) / "x.png"
    out = tmp_path / "out"
    assert main(["predict", best, str(a), str(b), "--out", str(out)]) == 2
    _error(capsys, f"{out / 'x_pred.png'}: both {a} and {b} would be written there")
    assert main(["predict", best, str(a), str(a), "--out", str(out)]) == 2
    _error(capsys, f"{a}: given twice")
    volume = tmp_path / "x.nii.gz"  # its slices x_1, x_2 meet a folder's slice x_1
    nib.save(nib.Nifti1Image(np.ones((8, 8, 2), np.float32), np.eye(4)), volume)
    other = _png_slices(tmp_path / "x", ["x_1"], masks=False) / "x_1.png"
    assert main(["predict", best, str(volume), str(other.parent), "--out", str(out),
                 "--single-sequence"]) == 2
    _error(capsys, f"both {volume} and {other} would be written there")
    assert not out.exists()


def test_existing_files_and_inputs_are_never_replaced(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    folder = _png_slices(tmp_path / "in", ["x"], masks=False)
    mine = folder / "x_pred.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(mine)  # the user's own file, not a prediction
    assert main(["predict", best, str(folder / "x.png"), "--out", str(folder)]) == 2
    _error(capsys, f"{mine}: already exists")
    assert main(["predict", best, str(folder / "x.png"), "--out", str(folder), "--overwrite"]) == 2
    _error(capsys, f"{mine}: exists and was not written by medseg predict")
    assert main(["predict", best, str(folder / "x.png"), str(mine), "--out", str(folder), "--overwrite",
                 "--single-sequence"]) == 2
    _error(capsys, f"{mine}: is an input")
    assert sorted(p.name for p in folder.iterdir()) == ["x.png", "x_pred.png"]
    assert np.asarray(Image.open(mine)).shape == (4, 4)


def test_out_must_be_a_writable_folder(trained_lgg, tmp_path, capsys, monkeypatch):
    best = str(trained_lgg.run_dir / "best.pt")
    image = _png_slices(tmp_path / "in", ["x"], masks=False) / "x.png"
    (tmp_path / "file").write_text("not a folder")
    assert main(["predict", best, str(image), "--out", str(tmp_path / "file")]) == 2
    _error(capsys, f"--out {tmp_path / 'file'}: exists and is not a folder")
    assert main(["predict", best, str(image), "--out", str(tmp_path / "file" / "sub")]) == 2
    _error(capsys, f"--out {tmp_path / 'file' / 'sub'}: {tmp_path / 'file'}: exists and is not a folder")

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    for out in (locked, locked / "new"):
        assert main(["predict", best, str(image), "--out", str(out)]) == 2
        _error(capsys, f"--out {out}", "not writable")
    assert not list(locked.iterdir())


def test_a_refused_volume_header_stops_the_run_before_anything_is_written(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    image = _png_slices(tmp_path / "in", ["x"], masks=False) / "x.png"
    nan = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), np.nan, np.float32), np.eye(4)), nan)
    out = tmp_path / "out"
    assert main(["predict", best, str(nan), "--out", str(out), "--single-sequence"]) == 2
    _error(capsys, f"{nan}: every voxel is NaN or infinite (192 NaN, 0 infinite)")
    assert not list(out.rglob("*.png"))  # not a tumour on every slice
    huge = write_nifti_declaring(tmp_path / "huge.nii", (500, 500, 500))
    assert main(["predict", best, str(image), str(huge), "--out", str(out)]) == 2
    _error(capsys, f"{huge}: the volume declares shape 500x500x500")
    assert not out.exists() or not list(out.rglob("*"))


def test_predict_device_errors_name_the_option(trained_lgg, tmp_path, capsys):
    image = _png_slices(tmp_path / "in", ["x"], masks=False) / "x.png"
    assert main(["predict", str(trained_lgg.run_dir / "best.pt"), str(image), "--out", str(tmp_path / "o"),
                 "--device", "tpu"]) == 2
    _error(capsys, "--device: 'tpu' is not a device")
