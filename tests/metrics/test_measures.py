"""One patient's row of measures (units in the column names), the summary with undefined
values counted, and the meter that collects ``medseg evaluate``'s slices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.metrics import SegmentationMeter
from medseg.metrics.measures import (
    PatientMeasureMeter,
    measure_label,
    patient_measures,
    summarize,
    surface_columns,
)


def _patient() -> tuple[np.ndarray, np.ndarray]:
    """Two reference lesions, the large one found shifted by 2 columns, the small one missed."""
    ref = np.zeros((4, 20, 20), np.uint8)
    ref[1:3, 4:12, 4:12] = 1  # 128 voxels on slices 2-3
    ref[3, 16:18, 16:18] = 1  # 4 voxels on slice 4
    pred = np.zeros_like(ref)
    pred[1:3, 4:12, 6:14] = 1  # 128 voxels, 96 of them on the reference
    return pred, ref


def test_a_patient_row_in_pixels_and_voxels():
    pred, ref = _patient()
    row = patient_measures(pred, ref)
    assert list(row)[:5] == ["dice", "iou", "hd95_px", "assd_px", "nsd_2px"]
    assert row["dice"] == pytest.approx(2 * 96 / (128 + 132))
    # every voxel of a two-slice lesion is boundary: 132 reference points, of which the missed
    # lesion's 4 (3%, far away) fall above the 95th percentile; the rest are at most 2 off
    assert row["hd95_px"] == pytest.approx(2.0)
    assert (row["pred_volume_voxels"], row["ref_volume_voxels"], row["abs_volume_diff_voxels"]) == (128, 132, 4)
    assert row["rel_volume_diff"] == pytest.approx(-4 / 132)
    assert (row["ref_lesions"], row["detected_lesions"], row["missed_lesions"]) == (2, 1, 1)
    assert row["lesion_sensitivity"] == 0.5 and row["lesion_precision"] == 1.0


def test_a_patient_row_in_millimetres_and_millilitres():
    pred, ref = _patient()
    row = patient_measures(pred, ref, spacing=(5.0, 0.5, 0.5), tolerance=1.0)
    assert {"hd95_mm", "assd_mm", "nsd_1mm", "pred_volume_ml", "ref_volume_ml", "abs_volume_diff_ml"} <= set(row)
    assert not any(key.endswith(("_px", "_voxels")) for key in row)
    assert row["pred_volume_ml"] == pytest.approx(128 * 5.0 * 0.25 / 1000)
    assert row["abs_volume_diff_ml"] == pytest.approx(4 * 1.25 / 1000)


def test_column_names_say_the_unit():
    assert surface_columns(True) == ("hd95_mm", "assd_mm", "nsd_2mm")
    assert surface_columns(False, 1.5) == ("hd95_px", "assd_px", "nsd_1.5px")


def test_every_measure_has_an_on_screen_name_with_its_unit():
    pred, ref = _patient()
    for spacing in (None, (5.0, 0.5, 0.5)):
        for key in patient_measures(pred, ref, spacing):
            assert measure_label(key) != key
    assert measure_label("hd95_mm") == "HD95 (mm)" and measure_label("nsd_2px") == "NSD (2 px)"
    assert measure_label("pred_volume_ml") == "Model volume (mL)"
    assert measure_label("abs_volume_diff_voxels") == "|Δ volume| (voxels)"


def test_the_summary_by_hand_counts_undefined_values():
    rows = [{"patient": "a", "hd95_px": 1.0, "missed_lesions": 0},
            {"patient": "b", "hd95_px": 2.0, "missed_lesions": 1},
            {"patient": "c", "hd95_px": 4.0, "missed_lesions": 0},
            {"patient": "d", "hd95_px": 9.0, "missed_lesions": 3},
            {"patient": "e", "hd95_px": math.nan, "missed_lesions": 1}]
    summary = summarize(rows)
    assert list(summary) == ["hd95_px", "missed_lesions"]
    # 1, 2, 4, 9: mean 4, median 3; numpy's linear quartiles at positions 0.75 and 2.25
    assert summary["hd95_px"] == {"mean": 4.0, "median": 3.0, "q25": 1.75, "q75": 5.25,
                                  "n": 4, "n_undefined": 1}
    assert summary["missed_lesions"]["n"] == 5 and summary["missed_lesions"]["mean"] == 1.0


def test_a_measure_undefined_everywhere_has_nan_statistics():
    summary = summarize([{"hd95_px": math.nan}])["hd95_px"]
    assert summary["n"] == 0 and summary["n_undefined"] == 1 and math.isnan(summary["median"])


def test_the_meter_scores_each_patient_as_its_stacked_slices():
    pred, ref = _patient()
    pred = np.roll(pred, -1, axis=0)  # slices 1-2: a stack in the wrong order would score otherwise
    other_pred, other_ref = np.zeros((2, 20, 20), np.uint8), np.zeros((2, 20, 20), np.uint8)
    other_pred[0, 0:3, 0:3] = 1  # a prediction on a patient without tumour
    meter = PatientMeasureMeter(threshold=0.5)
    counts = SegmentationMeter(threshold=0.5)
    for probs, labels, name in ((pred, ref, "A"), (other_pred, other_ref, "B")):
        numbers = list(range(len(probs), 0, -1))  # added last slice first: stacked by number
        for m in (meter, counts):
            m.update(probs[::-1].astype(np.float32).copy(), labels[::-1].copy(), [name] * len(probs), numbers)
    result = meter.compute()
    assert result["per_patient_measures"]["A"] == pytest.approx(patient_measures(pred, ref), nan_ok=True)
    assert result["per_patient"] == counts.compute()["per_patient"]
    b = result["per_patient_measures"]["B"]
    assert math.isnan(b["hd95_px"]) and b["spurious_lesions"] == 1 and math.isnan(b["lesion_sensitivity"])
    assert result["measure_summary"]["hd95_px"]["n"] == 1
    assert result["measure_summary"]["hd95_px"]["n_undefined"] == 1
    assert result["measure_summary"]["dice"]["n"] == 2
    first_b = next(row for row in result["per_slice"] if row["patient"] == "B" and row["slice"] == 1)
    assert math.isnan(first_b["hd95_px"]) and first_b["nsd_2px"] == 0.0
    empty_b = next(row for row in result["per_slice"] if row["patient"] == "B" and row["slice"] == 2)
    assert (empty_b["hd95_px"], empty_b["assd_px"], empty_b["nsd_2px"]) == (0.0, 0.0, 1.0)


def test_the_meter_thresholds_with_the_ge_rule_and_takes_a_spacing():
    probs = np.zeros((1, 8, 8), np.float32)
    probs[0, 2:4, 2:4] = 0.5  # exactly at the threshold: tumour
    labels = (probs > 0).astype(np.uint8)
    meter = PatientMeasureMeter(threshold=0.5, spacing=(3.0, 0.5, 0.5))
    meter.update(probs, labels, ["A"], [1])
    row = meter.compute()["per_patient_measures"]["A"]
    assert row["pred_volume_ml"] == pytest.approx(4 * 0.75 / 1000) and row["hd95_mm"] == 0.0
    meter.reset()
    with pytest.raises(ValueError, match="no slices"):
        meter.compute()


def test_compute_with_a_postprocess_scores_the_postprocessed_masks_and_keeps_the_raw_ones() -> None:
    # patient A: a true 2x2 lesion on slice 1 and a 1-pixel false positive on slice 2
    truth = np.zeros((2, 4, 4), np.float32)
    truth[0, :2, :2] = 1
    pred = truth.copy()
    pred[1, 3, 3] = 1
    meter = PatientMeasureMeter()
    meter.update(pred, truth, ["A", "A"], [1, 2])

    def drop_small(stack: np.ndarray) -> np.ndarray:
        assert stack.shape == (2, 4, 4)  # the patient's whole stack, slices in order
        out = stack.copy()
        out[1] = 0
        return out

    raw, cleaned = meter.compute(), meter.compute(postprocess=drop_small)
    assert raw["patient_dice"] == pytest.approx(8 / 9)
    assert raw["n_empty_fp_slices"] == 1
    assert cleaned["patient_dice"] == 1.0 and cleaned["n_empty_fp_slices"] == 0
    assert cleaned["per_patient_measures"]["A"]["lesion_precision"] == 1.0
    assert raw["per_patient_measures"]["A"]["lesion_precision"] == 0.5
    assert meter.compute() == raw  # the stored masks are unchanged
