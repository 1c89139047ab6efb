"""What predicted files hold, by hand: the overlay's blend, the PNG marks, the report's keys."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from medseg import __version__
from medseg.predict import (
    SINGLE_SEQUENCE_NOTE,
    mask_picture,
    overlay_picture,
    png_bytes,
    prediction_report,
    report_text,
)


def test_the_overlay_blends_the_predicted_yellow_at_0_45():
    image = np.full((1, 2, 3), 100, np.uint8)
    picture = overlay_picture(image, np.array([[1, 0]]))
    # 0.55 * 100 + 0.45 * (255, 221, 0) = (169.75, 154.45, 55)
    assert picture.tolist() == [[[170, 154, 55], [100, 100, 100]]]
    assert picture.dtype == np.uint8 and image[0, 0].tolist() == [100, 100, 100]


def test_mask_pngs_are_black_and_white_and_marked():
    mask = np.array([[0, 1, 1], [0, 0, 1]], np.uint8)
    assert mask_picture(np.array([[0, 1], [3, 0]])).tolist() == [[0, 255], [255, 0]]
    for single in (False, True):
        with Image.open(io.BytesIO(png_bytes(mask_picture(mask), single))) as image:
            np.testing.assert_array_equal(np.asarray(image), mask * 255)
            assert image.info["Software"] == "medseg predict"
            assert image.info.get("Comment") == (SINGLE_SEQUENCE_NOTE if single else None)


def test_the_report_s_keys_in_order():
    lesions = {"tumour_voxels": 3, "n_lesions": 1}
    report = prediction_report("flair/", 0.4, lesions, sequences={"flair": "flair/"},
                               single_sequence=True, dicom_seg="flair_pred_seg.dcm")
    assert list(report) == ["written_by", "medseg_version", "input", "sequences", "single_sequence",
                            "threshold", "tumour_voxels", "n_lesions", "dicom_seg"]
    assert report["medseg_version"] == __version__ and report["dicom_seg"] == {"file": "flair_pred_seg.dcm"}
    plain = prediction_report("scan.nii.gz", 0.5, lesions)
    assert "sequences" not in plain and "dicom_seg" not in plain and plain["single_sequence"] is False
    skipped = prediction_report("f/", 0.5, lesions, dicom_seg_skipped="no FrameOfReferenceUID")
    assert skipped["dicom_seg"] == {"file": None, "skipped": "no FrameOfReferenceUID"}
    assert json.loads(report_text(report)) == report and report_text(report).endswith("}\n")
