"""``medseg predict``: masks and overlays per slice, NIfTI masks on the input's grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from medseg.cli.main import main
from medseg.data import find_lgg_root, preprocess_image, read_slice_image
from medseg.engine import load_model, predict_paths


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
    mask = np.asarray(Image.open(out / f"{folder.name}_2_mask.png"))
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, _expected_mask(loaded, read_slice_image(one)))
    overlay = np.asarray(Image.open(out / f"{folder.name}_2_overlay.png"))
    assert overlay.shape == (64, 64, 3)
    untouched = mask == 0
    assert np.array_equal(overlay[untouched], read_slice_image(one)[untouched])

    written = sorted(p.name for p in (out / folder.name).iterdir())
    assert written == sorted(f"{folder.name}_{k}_{kind}.png" for k in range(1, 5) for kind in ("mask", "overlay"))


def test_masks_come_back_at_the_input_size(trained_lgg, tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(80, 96, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "wide.png")
    records = predict_paths(trained_lgg.run_dir / "best.pt", [tmp_path / "wide.png"], tmp_path / "out")
    mask = np.asarray(Image.open(tmp_path / "out" / "wide_mask.png"))
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
    records = predict_paths(trained_lgg.run_dir / "best.pt", [tmp_path / "scan.nii.gz"], out)
    mask_image = nib.load(out / "scan_mask.nii.gz")
    assert mask_image.shape == (64, 64, 3)
    assert np.allclose(mask_image.affine, affine)
    values = np.asarray(mask_image.dataobj)
    assert set(np.unique(values)) <= {0, 1}
    assert records[0].kind == "volume" and records[0].slices == 3
    assert int(values.sum()) == records[0].tumour_pixels
    assert len(list((out / "scan").glob("scan_*_mask.png"))) == 3


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
