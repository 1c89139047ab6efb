"""Output names, planned once for ``medseg predict`` and used by the app's downloads."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.predict import DICOM_SEG, MASK_NIFTI, MASK_PNG, REPORT_JSON, download_name, plan_jobs


def test_planned_outputs_of_a_slice_a_folder_and_a_volume(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "case").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "case" / "c_1.png")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2, 3), np.uint8), np.eye(4)), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    jobs = plan_jobs([tmp_path / "x.png", tmp_path / "case", tmp_path / "scan.nii.gz"], out)
    assert [[str(path.relative_to(out)) for path, _ in job.outputs()] for job in jobs] == [
        ["x_pred.png", "x_pred_overlay.png"],
        ["case/c_1_pred.png", "case/c_1_pred_overlay.png"],
        ["scan/scan_1_pred.png", "scan/scan_1_pred_overlay.png", "scan/scan_2_pred.png",
         "scan/scan_2_pred_overlay.png", "scan_pred.nii.gz", "scan_pred.json"],
    ]
    assert not out.exists()  # planning writes nothing


@pytest.mark.parametrize(
    ("name", "is_volume", "expected"),
    [
        ("brain.nii.gz", True, "brain_pred.nii.gz"),
        ("Brain.NII", True, "Brain_pred.nii.gz"),
        ("scan_mask.png", False, "scan_mask_pred.png"),
        ("case.tif", False, "case_pred.png"),
        ("../../x.nii.gz", True, "x_pred.nii.gz"),
        ("/tmp/abs.nii.gz", True, "abs_pred.nii.gz"),
        ("C:\\scans\\Case 1.PNG", False, "Case_1_pred.png"),
        ("Müller T1.jpg", False, "Muller_T1_pred.png"),
        ("[x](javascript:alert(1))<b>.png", False, "x_javascript_alert_1_b_pred.png"),
        (".hidden.png", False, "hidden_pred.png"),
        ("..nii.gz", True, "upload_pred.nii.gz"),
        ("\x00.png", False, "upload_pred.png"),
        ("a" * 300 + ".nii", True, "a" * 100 + "_pred.nii.gz"),
        ("FLAIR series.ZIP", True, "FLAIR_series_pred.nii.gz"),
    ],
)
def test_download_names_are_safe(name, is_volume, expected):
    assert download_name(name, MASK_NIFTI if is_volume else MASK_PNG) == expected
    stem = expected.split("_pred")[0]
    assert download_name(name, REPORT_JSON) == f"{stem}_pred.json"
    assert download_name(name, DICOM_SEG) == f"{stem}_pred_seg.dcm"
    assert Path(download_name(name, MASK_PNG)).name == download_name(name, MASK_PNG)  # never a path
