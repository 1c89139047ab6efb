"""The lesion report ``medseg predict`` writes beside a volume's mask (``<name>_pred.json``),
and the report's fields as :func:`~medseg.predict.formats.prediction_report` sets them."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.predict import is_prediction, predict_paths


def test_predict_writes_a_report_beside_a_volume_and_no_seg(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    data = np.random.default_rng(2).integers(0, 255, (64, 64, 3, 3)).astype(np.uint8)
    affine = np.diag([-0.9, 0.9, 3.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", best, str(tmp_path / "scan.nii.gz"), "--out", str(out), "--threshold", "0.3"]) == 0
    report = json.loads((out / "scan_pred.json").read_text())
    mask = np.asarray(nib.load(out / "scan_pred.nii.gz").dataobj)
    assert report["written_by"] == "medseg predict" and report["input"] == str(tmp_path / "scan.nii.gz")
    assert report["single_sequence"] is False and report["threshold"] == 0.3
    assert "sequences" not in report and "dicom_seg" not in report
    assert report["voxel_size_mm"] == pytest.approx([0.9, 0.9, 3.0])
    assert report["tumour_voxels"] == int(mask.sum())
    assert report["tumour_volume_ml"] == pytest.approx(mask.sum() * 0.9 * 0.9 * 3.0 / 1000, abs=1e-5)
    assert sum(lesion["voxels"] for lesion in report["lesions"]) == report["tumour_voxels"]
    assert report["n_lesions"] == len(report["lesions"])
    assert not list(out.glob("*.dcm"))  # a NIfTI input gets no DICOM SEG
    printed = capsys.readouterr().out.splitlines()
    assert f"{tmp_path / 'scan.nii.gz'}: tumour volume {report['tumour_volume_ml']:.2f} mL in " \
           f"{report['n_lesions']} lesion(s)" in printed
    assert is_prediction(out / "scan_pred.json")

    # the report is an earlier prediction: --overwrite replaces it, a foreign file is kept
    records = predict_paths(best, [tmp_path / "scan.nii.gz"], out, overwrite=True)
    assert out / "scan_pred.json" in records[0].files and records[0].lesions is not None
    (out / "scan_pred.json").write_text(json.dumps({"written_by": "someone else"}))
    assert not is_prediction(out / "scan_pred.json")
    assert main(["predict", best, str(tmp_path / "scan.nii.gz"), "--out", str(out), "--overwrite"]) == 2
    assert "scan_pred.json: exists and was not written by medseg predict" in capsys.readouterr().err
