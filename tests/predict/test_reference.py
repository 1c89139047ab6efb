"""``medseg predict --reference``: the prediction of one input scored against a reference mask
(:mod:`medseg.predict.reference`), in the report and in one printed line; refusals."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medseg.cli.main import main
from medseg.engine.lesions import lesion_report, stack_geometry
from medseg.errors import DataError
from medseg.predict.plan import plan_jobs
from medseg.predict.reference import read_reference, score_reference
from medseg.predict.run import Predictor

SPACING = (0.5, 2.0, 4.0)  # mm along the file's x, y, z: voxel 4 mm³ = 0.004 mL


class BrightPixels(Predictor):
    """A predictor whose mask is the slice's bright FLAIR pixels: the prediction is known."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Identity(), image_size=16)

    def probabilities(self, images):
        return [(np.asarray(image)[..., 1] > 128).astype(np.float32) for image in images]


def _scan(tmp_path, predicted: np.ndarray) -> tuple:
    """A 3-channel NIfTI scan (x, y, z, 3) whose FLAIR is bright exactly on ``predicted``."""
    data = np.full((*predicted.shape, 3), 40, np.uint8)
    data[..., 1] = np.where(predicted, 250, 10)
    data[0, 0, 0, 1] = 0  # a fixed range for the rescaling
    affine = np.diag([*SPACING, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    return tmp_path / "scan.nii.gz", affine


def test_a_missed_lesion_halves_the_lesion_sensitivity_in_mm_and_ml(tmp_path):
    predicted = np.zeros((8, 8, 4), bool)
    predicted[1:3, 1:3, 1] = True  # 4 voxels: one lesion, also in the reference
    predicted[6, 6, 3] = True  # 1 voxel: a spurious lesion
    reference = np.zeros_like(predicted)
    reference[1:3, 1:3, 1] = True
    reference[5:7, 0, 0] = True  # 2 voxels the model misses
    scan, affine = _scan(tmp_path, predicted)
    nib.save(nib.Nifti1Image(reference.astype(np.uint8), affine), tmp_path / "ref.nii.gz")

    jobs = plan_jobs([scan], tmp_path / "out")
    mask = read_reference(tmp_path / "ref.nii.gz", jobs)
    assert mask.shape == (4, 8, 8) and mask.sum() == 6  # the input's slice order: z first
    record = BrightPixels().predict(jobs, ("ref.nii.gz", mask))[0]

    section = json.loads((tmp_path / "out" / "scan_pred.json").read_text())["reference"]
    measures = section["patient_measures"]
    assert section["mask"] == "ref.nii.gz"
    assert measures["lesion_sensitivity"] == 0.5 and measures["lesion_precision"] == 0.5
    assert (measures["ref_lesions"], measures["detected_lesions"], measures["missed_lesions"]) == (2, 1, 1)
    assert (measures["pred_lesions"], measures["spurious_lesions"]) == (2, 1)
    assert measures["dice"] == pytest.approx(2 * 4 / (5 + 6))
    assert measures["pred_volume_ml"] == pytest.approx(5 * 0.004)  # 5 voxels of 0.5 x 2 x 4 mm³
    assert measures["ref_volume_ml"] == pytest.approx(6 * 0.004)
    assert "hd95_mm" in measures and "hd95_px" not in measures
    assert [(lesion["status"], lesion["voxels"]) for lesion in section["lesions"]["reference"]] == \
        [("detected", 4), ("missed", 2)]
    assert [(lesion["status"], lesion["voxels"]) for lesion in section["lesions"]["predicted"]] == \
        [("true", 4), ("spurious", 1)]
    # the missed lesion lies on the first slice (z = 0), the widest of the detected one on z = 1
    assert section["lesions"]["reference"][1]["slices"] == [1, 1]
    assert section["lesions"]["reference"][0]["widest_slice"] == 2
    assert record.reference is not None
    assert record.reference.summary().startswith(f"against ref.nii.gz: Dice {8 / 11:.3f}, HD95 ")
    assert record.reference.summary().endswith(" mm, lesions found 1 of 2, missed 1, spurious 1")


def test_a_slice_is_scored_in_pixels(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[2:4, 2:4, 1] = 255
    Image.fromarray(image).save(tmp_path / "case.png")
    ref = np.zeros((8, 8), np.uint8)
    ref[2:4, 2:5] = 255
    Image.fromarray(ref).save(tmp_path / "case_ref.png")
    jobs = plan_jobs([tmp_path / "case.png"], tmp_path / "out")
    mask = read_reference(tmp_path / "case_ref.png", jobs)
    record = BrightPixels().predict(jobs, ("case_ref.png", mask))[0]
    assert record.reference is not None
    assert record.reference.measures["dice"] == pytest.approx(2 * 4 / (4 + 6))
    assert record.reference.measures["ref_volume_voxels"] == 6 and "hd95_px" in record.reference.measures


def test_references_off_the_input_are_refused_in_one_line(tmp_path):
    predicted = np.zeros((8, 8, 4), bool)
    scan, affine = _scan(tmp_path, predicted)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.uint8), affine), tmp_path / "ref5.nii.gz")
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), 2, np.uint8), affine), tmp_path / "ref2.nii.gz")
    jobs = plan_jobs([scan], tmp_path / "out")
    with pytest.raises(DataError, match=r"ref5.nii.gz and .*scan.nii.gz differ in shape: \(8, 8, 5\) vs \(8, 8, 4\)"):
        read_reference(tmp_path / "ref5.nii.gz", jobs)
    with pytest.raises(DataError, match=r"ref2.nii.gz: mask is not binary \(values 2; expected 0/1"):
        read_reference(tmp_path / "ref2.nii.gz", jobs)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "case.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "case_ref.png")
    with pytest.raises(DataError, match=r"case_ref.png: the mask is 8x9 but .*case.png is 8x8"):
        read_reference(tmp_path / "case_ref.png", plan_jobs([tmp_path / "case.png"], tmp_path / "o2"))


def test_cli_refuses_a_reference_with_two_inputs_or_off_grid(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    scan, affine = _scan(tmp_path, np.zeros((8, 8, 4), bool))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.uint8), affine), tmp_path / "ref.nii.gz")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "case.png")
    out = tmp_path / "out"
    assert main(["predict", best, str(scan), str(tmp_path / "case.png"), "--out", str(out),
                 "--reference", str(tmp_path / "ref.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("needs exactly one input (a volume, one scan's sequences or one slice), got 2")
    assert main(["predict", best, str(scan), "--out", str(out), "--reference", str(tmp_path / "ref.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ in shape: (8, 8, 5) vs (8, 8, 4)" in err[0]
    assert not out.exists() or not list(out.rglob("*_pred*"))  # refused before anything is written

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), affine), tmp_path / "ref.nii.gz")
    assert main(["predict", best, str(scan), "--out", str(out), "--reference", str(tmp_path / "ref.nii.gz")]) == 0
    report = json.loads((out / "scan_pred.json").read_text())
    measures = report["reference"]["patient_measures"]
    assert measures["ref_lesions"] == 0 and measures["ref_volume_ml"] == 0.0
    line = f"{scan}: against {tmp_path / 'ref.nii.gz'}: Dice {measures['dice']:.3f}, HD95 "
    assert any(printed.startswith(line) for printed in capsys.readouterr().out.splitlines())


def test_a_sheared_grid_gives_the_report_s_volume_in_the_reference_measures():
    """Under a gantry tilt's shear the voxel volume is |det| of the affine (2 mm³ here), not the
    product of the column norms (2.24 mm³): the lesion report and the reference measures agree."""
    affine = np.array([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    to_slices = np.array([[2, 1], [1, 1], [0, 1]])  # file (x, y, z) -> stack (column, row, slice)
    pred = np.zeros((3, 4, 5), np.uint8)
    pred[1, 1:3, 1:4] = 1  # 6 voxels
    ref = pred.copy()
    ref[2, 0, 0] = 1  # 7 voxels
    geometry = stack_geometry(affine, to_slices)
    assert geometry.voxel_ml == pytest.approx(0.002)
    assert geometry.spacing == pytest.approx((5 ** 0.5, 1.0, 1.0))  # the z column (0, 1, 2)
    measures = score_reference(pred, ref, geometry, "mask.nii.gz").section()["patient_measures"]
    report = lesion_report(pred, affine, to_slices)
    assert measures["pred_volume_ml"] == pytest.approx(report["tumour_volume_ml"]) == pytest.approx(0.012)
    assert measures["ref_volume_ml"] == pytest.approx(0.014)
