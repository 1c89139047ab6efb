"""``medseg predict`` with an ensemble (``--member``, a CV folder), ``--tta flip``,
``--probabilities`` and a CV folder's postprocessing, on the session's real tiny checkpoints:
every expectation computed by hand from the members' networks."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation
from PIL import Image

from medseg.cli.main import main
from medseg.engine import load_model
from medseg.imaging.nifti import load_volume
from medseg.postprocessing import Postprocessing
from medseg.predict import is_prediction, predict_paths
from medseg.runs import CvFolder
from tests.ensemble_support import hand_probabilities, shifted_checkpoint, write_cv_folder

#: the 16-bit PNG's scale: a probability p is stored as round(p x 65535)
SCALE = 65535


@pytest.fixture(scope="module")
def members(trained_lgg, module_tmp) -> list[Path]:
    """The session segmenter and a copy whose logits are 2 lower (it predicts less tumour)."""
    best = trained_lgg.run_dir / "best.pt"
    return [best, shifted_checkpoint(best, module_tmp / "down.pt", -2.0)]


def _hand_probabilities(checkpoints, image: np.ndarray, *, flip: bool = False) -> np.ndarray:
    return hand_probabilities([load_model(checkpoint) for checkpoint in checkpoints], image, flip=flip)


def _slice(tmp_path: Path, seed: int = 1) -> tuple[Path, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 255, size=(80, 96, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "wide.png")
    return tmp_path / "wide.png", image


def _volume(tmp_path: Path) -> Path:
    data = np.random.default_rng(2).normal(100, 20, size=(64, 64, 3)).astype(np.float32)
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -120], [0, 0, 3.0, -60], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    return tmp_path / "scan.nii.gz"


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_a_slices_probability_map_is_the_ensemble_mean_and_thresholds_to_its_mask(members, tmp_path, capsys):
    path, image = _slice(tmp_path)
    out = tmp_path / "out"
    expected = _hand_probabilities(members, image)
    threshold = round(float(np.median(expected)), 4)  # a threshold that splits this slice's pixels
    assert main(["predict", str(members[0]), str(path), "--member", str(members[1]), "--probabilities",
                 "--threshold", str(threshold), "--out", str(out)]) == 0
    stored = _read_png(out / "wide_prob.png")
    assert stored.dtype == np.uint16 and stored.shape == (80, 96)
    probs = stored / SCALE
    assert np.abs(probs - expected).max() <= 0.5 / SCALE + 1e-6  # lossless to 1/65535
    alone = [_hand_probabilities([member], image) for member in members]
    assert all(np.abs(expected - each).max() > 0.01 for each in alone)  # neither member alone
    mask = _read_png(out / "wide_pred.png") == 255
    certain = np.abs(expected - threshold) > 1 / SCALE  # pixels not within rounding of the threshold
    assert np.array_equal((probs >= threshold)[certain], mask[certain]) and 0 < mask.sum() < mask.size
    assert is_prediction(out / "wide_prob.png")


def test_flip_tta_is_the_mean_over_flipped_inputs_flipped_back(members, tmp_path, capsys):
    path, image = _slice(tmp_path, seed=5)
    out = tmp_path / "out"
    assert main(["predict", str(members[0]), str(path), "--tta", "flip", "--probabilities",
                 "--out", str(out)]) == 0
    probs = _read_png(out / "wide_prob.png") / SCALE
    expected = _hand_probabilities(members[:1], image, flip=True)
    assert np.abs(probs - expected).max() <= 0.5 / SCALE + 1e-6
    assert np.abs(expected - _hand_probabilities(members[:1], image)).max() > 1e-3  # mirroring mattered


def test_a_volumes_probability_map_is_float32_on_its_grid(members, tmp_path):
    scan, out = _volume(tmp_path), tmp_path / "out"
    records = predict_paths(members[0], [scan], out, single_sequence=True, members=members[1:],
                            probabilities=True)
    written = nib.load(out / "scan_prob.nii.gz")
    assert written.get_data_dtype() == np.float32 and written.shape == (64, 64, 3)
    assert np.allclose(written.affine, nib.load(scan).affine)
    in_file_order = np.asarray(written.dataobj)
    mask = np.asarray(nib.load(out / "scan_pred.nii.gz").dataobj)
    assert np.array_equal(in_file_order >= 0.5, mask == 1) and mask.any()
    volume = load_volume(scan)
    by_slice = apply_orientation(in_file_order, volume.slice_transform())
    for k, image in enumerate(volume.slices):
        np.testing.assert_allclose(by_slice[k], _hand_probabilities(members, image), atol=1e-5)
    assert out / "scan_prob.nii.gz" in records[0].files and is_prediction(out / "scan_prob.nii.gz")
    report = json.loads((out / "scan_pred.json").read_text())
    assert report["prediction"]["members"] == [str(member) for member in members]
    assert report["prediction"]["probabilities"]["file"] == "scan_prob.nii.gz"
    assert "before the threshold" in report["prediction"]["probabilities"]["note"]


def test_a_cv_folders_postprocessing_changes_every_mask_but_not_the_probabilities(members, tmp_path, capsys):
    step = Postprocessing(min_voxels=10**6)  # removes every lesion of these tiny inputs
    folder = write_cv_folder(tmp_path / "cv", members, step)
    scan = _volume(tmp_path)
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    predict_paths(folder, [scan], raw, single_sequence=True, probabilities=True, postprocess=False)
    records = predict_paths(folder, [scan], processed, single_sequence=True, probabilities=True)
    raw_mask = np.asarray(nib.load(raw / "scan_pred.nii.gz").dataobj)
    mask = np.asarray(nib.load(processed / "scan_pred.nii.gz").dataobj)
    assert raw_mask.any() and not mask.any() and records[0].tumour_pixels == 0
    assert not any(_read_png(png).any() for png in (processed / "scan").glob("*_pred.png"))
    assert records[0].postprocessing == "remove lesions under 1000000 voxels"
    assert main(["predict", str(folder), str(scan), "--single-sequence", "--out", str(tmp_path / "cli")]) == 0
    assert "scan.nii.gz: postprocessing: remove lesions under 1000000 voxels" in capsys.readouterr().out
    assert np.array_equal(np.asarray(nib.load(raw / "scan_prob.nii.gz").dataobj),
                          np.asarray(nib.load(processed / "scan_prob.nii.gz").dataobj))
    report = json.loads((processed / "scan_pred.json").read_text())
    section = report["prediction"]["postprocessing"]
    assert section["min_voxels"] == 10**6 and section["raw_mask_written"] is False
    assert section["record"] == str(CvFolder(folder).postprocessing_file)
    assert report["tumour_voxels"] == 0
    assert json.loads((raw / "scan_pred.json").read_text())["prediction"]["postprocessing"]["raw_mask_written"]


def test_a_patient_folder_is_postprocessed_as_one_stack(members, tmp_path):
    from tests.support import write_lgg

    patient = next(p for p in write_lgg(tmp_path / "lgg").root.iterdir() if p.is_dir())
    raw = predict_paths(members[0], [patient], tmp_path / "raw")[0]
    from medseg.metrics.lesions import label_lesions

    stack = np.stack([_read_png(tmp_path / "raw" / patient.name / f"{patient.name}_{k}_pred.png") > 0
                      for k in range(1, raw.slices + 1)])
    labels, count = label_lesions(stack)
    lesion_sizes = np.bincount(labels.ravel())[1:]
    assert count >= 1
    # keep only lesions of at least the largest's size: a 3-D step (per slice, pieces of the
    # largest lesion would be smaller than it and vanish)
    step = Postprocessing(min_voxels=int(lesion_sizes.max()))
    folder = write_cv_folder(tmp_path / "cv", [members[0], members[0]], step)  # mean = the model
    predict_paths(folder, [patient], tmp_path / "processed")
    got = np.stack([_read_png(tmp_path / "processed" / patient.name / f"{patient.name}_{k}_pred.png") > 0
                    for k in range(1, raw.slices + 1)])
    assert np.array_equal(got, step.apply(stack) > 0) and got.any()


def test_onnx_exports_refuse_members_and_flip_tta(members, tmp_path, capsys):
    path, _ = _slice(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not read")
    for extra in (["--tta", "flip"], ["--member", str(members[1])]):
        assert main(["predict", str(tmp_path / "model.onnx"), str(path), "--out", str(tmp_path / "out"),
                     *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "ONNX export" in err and "--tta flip" in err
    assert not (tmp_path / "out").exists()


def test_mismatched_members_and_unknown_tta_are_refused_before_anything_is_written(
        members, trained_pcam, tmp_path, capsys):
    path, _ = _slice(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", str(members[0]), str(path), "--member", str(trained_pcam.run_dir / "best.pt"),
                 "--out", str(out)]) == 2
    assert "task classification differs from segmentation" in capsys.readouterr().err
    assert main(["predict", str(members[0]), str(path), "--tta", "sideways", "--out", str(out)]) == 2
    assert "--tta: 'sideways' is not one of none, flip" in capsys.readouterr().err
    assert not out.exists()


def test_a_foreign_file_where_a_probability_map_goes_is_never_replaced(members, tmp_path, capsys):
    path, _ = _slice(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(out / "wide_prob.png")  # not ours
    assert main(["predict", str(members[0]), str(path), "--probabilities", "--out", str(out),
                 "--overwrite"]) == 2
    assert "wide_prob.png: exists and was not written by medseg predict" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["wide_prob.png"]
    # an earlier prediction's map is replaced with --overwrite, and is never read as an input
    (out / "wide_prob.png").unlink()
    assert main(["predict", str(members[0]), str(path), "--probabilities", "--out", str(out)]) == 0
    assert main(["predict", str(members[0]), str(path), "--probabilities", "--out", str(out), "--overwrite"]) == 0
    assert main(["predict", str(members[0]), str(out), "--out", str(tmp_path / "again")]) == 2
    assert "folder holds no slice images" in capsys.readouterr().err


def test_an_onnx_export_writes_its_probability_map(members, tmp_path):
    from medseg.export.run import export_checkpoint
    from medseg.predict.exported import OnnxSegmenter
    from tests.support import one_thread

    with one_thread():
        export_checkpoint(members[0], "onnx", tmp_path / "onnx")
    path, image = _slice(tmp_path)
    predict_paths(tmp_path / "onnx", [path], tmp_path / "out", probabilities=True)
    probs = _read_png(tmp_path / "out" / "wide_prob.png") / SCALE
    expected = OnnxSegmenter.load(tmp_path / "onnx").probabilities([image])[0]
    assert np.abs(probs - expected).max() <= 0.5 / SCALE + 1e-6
    np.testing.assert_allclose(expected, _hand_probabilities(members[:1], image), atol=1e-4)
    mask = _read_png(tmp_path / "out" / "wide_pred.png") == 255
    assert np.array_equal(mask, expected >= 0.5)
