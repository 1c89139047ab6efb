"""The cohort: scores at every threshold equal the case browser's, the cache is keyed by the
checkpoint and the data folder, and the tables sort and difference as they say."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from medseg.app.cohort import (
    THRESHOLD_STEP,
    THRESHOLDS,
    CohortCache,
    cohort_frame,
    fingerprint,
    lowest_dice,
    mean_dice_curve,
    measure_patient,
    runs_frame,
    score_patient,
    stale,
    threshold_index,
)
from medseg.app.scoring import score_volume
from medseg.data.lgg import Patient, Slice
from medseg.metrics import DEFAULT_THRESHOLD, SegmentationMeter, check_threshold
from medseg.metrics.measures import patient_measures
from tests.imaging.hostile import no_hang


def patient_arrays(seed: int, n: int = 3, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, size, size)).astype(np.float32)
    masks = (rng.random((n, size, size)) > 0.6).astype(np.uint8)
    masks[0] = 0  # a tumour-free slice: its false positives count
    return probs, masks


def record(name: str, seed: int):
    probs, masks = patient_arrays(seed)
    return score_patient(name, probs, masks, [1, 2, 3], f"print-{seed}")


def test_thresholds_are_the_sliders_and_index_by_value():
    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 19
    assert threshold_index(0.5) == 9 and threshold_index(0.1 + 0.2) == 5  # float noise tolerated
    with pytest.raises(ValueError, match="not one of"):
        threshold_index(0.52)


def test_every_position_of_the_slider_is_a_scored_threshold():
    # the sidebar's slider runs from THRESHOLDS[0] to THRESHOLDS[-1] in steps of THRESHOLD_STEP
    # and opens on DEFAULT_THRESHOLD: each value it can give indexes its own cohort score
    positions = round((THRESHOLDS[-1] - THRESHOLDS[0]) / THRESHOLD_STEP) + 1
    assert positions == len(THRESHOLDS)
    for k in range(positions):
        assert threshold_index(THRESHOLDS[0] + k * THRESHOLD_STEP) == k
    assert THRESHOLDS[threshold_index(DEFAULT_THRESHOLD)] == 0.5
    assert all(check_threshold(t) == t for t in THRESHOLDS)


def test_patient_record_equals_the_case_browser_at_every_threshold():
    probs, masks = patient_arrays(0)
    rec = score_patient("p", probs, masks, [4, 5, 6], "x")
    for index, threshold in enumerate(THRESHOLDS):
        volume = score_volume(probs, masks, "p", [4, 5, 6], threshold)
        assert rec.dice[index] == volume["patient_dice"] and rec.iou[index] == volume["patient_iou"]
        assert rec.empty_fp_slices[index] == volume["n_empty_fp_slices"]
        assert rec.predicted_pixels[index] == int((probs >= threshold).sum())
    assert rec.reference_pixels == int(masks.sum()) and rec.n_slices == 3 and rec.n_empty_slices == 1


def test_mean_dice_curve_is_the_meters_patient_dice():
    arrays = {f"p{seed}": patient_arrays(seed) for seed in range(3)}
    records = {name: score_patient(name, p, m, [1, 2, 3], "") for name, (p, m) in arrays.items()}
    curve = mean_dice_curve(records, ["p0", "p2"])
    for index in (0, 9, 18):
        meter = SegmentationMeter(threshold=THRESHOLDS[index])
        for name in ("p0", "p2"):
            meter.update(*arrays[name], [name] * 3, [1, 2, 3])
        assert curve[index] == pytest.approx(meter.compute()["patient_dice"], abs=1e-12)
    assert all(math.isnan(v) for v in mean_dice_curve(records, ["nobody"]))


def test_tables_sort_by_dice_and_difference_runs():
    records = {"a": record("a", 1), "b": record("b", 2), "c": record("c", 3)}
    frame = cohort_frame(records, {"a": "test", "b": "val"}, 0.5, ["a", "b", "c"])
    assert list(frame["Dice (3-D)"]) == sorted(r.dice[9] for r in records.values())
    assert frame.set_index("Patient")["Subset"].to_dict() == {"a": "test", "b": "val", "c": ""}
    assert lowest_dice(records, ["a", "b", "c"], 0.5) == frame["Patient"][0]
    assert lowest_dice(records, ["nobody"], 0.5) is None
    other = {"a": record("a", 4), "b": record("b", 5)}
    table = runs_frame({"run1": records, "run2": other}, ["a", "b", "c"], 0.3)
    assert list(table.columns) == ["Patient", "run1", "run2", "Δ run2 − run1"]
    assert table["Δ run2 − run1"][0] == pytest.approx(other["a"].dice[5] - records["a"].dice[5])
    assert math.isnan(table["run2"][2])  # c has no record in run2


def test_cache_round_trip_and_invalidation(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "best.pt"
    checkpoint.write_bytes(b"weights")
    records = {"a": record("a", 1), "b": record("b", 2)}
    cache = CohortCache(run, checkpoint, tmp_path / "data")
    assert cache.load() == {}
    assert cache.save(records) is None
    assert cache.path.parent == run / "app_cache" and not list(cache.path.parent.glob(".*"))
    assert CohortCache(run, checkpoint, tmp_path / "data").load() == records
    assert CohortCache(run, checkpoint, tmp_path / "other").load() == {}  # another folder
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a new checkpoint
    assert CohortCache(run, checkpoint, tmp_path / "data").load() == {}


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # truncated
    lambda text: json.dumps({**json.loads(text), "patients": {"a": {"dice": [1.0]}}}),
    lambda text: json.dumps({**json.loads(text), "format": 0}),
    lambda text: "[]",
])
def test_a_damaged_cache_is_ignored_then_rewritten(tmp_path, damage):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    cache = CohortCache(tmp_path, checkpoint, tmp_path)
    cache.save({"a": record("a", 1)})
    cache.path.write_text(damage(cache.path.read_text()))
    assert cache.load() == {}
    assert cache.save({"b": record("b", 2)}) is None and set(cache.load()) == {"b"}


def test_unwritable_cache_says_why(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    (tmp_path / "app_cache").write_text("a file where the folder should be")
    problem = CohortCache(tmp_path, checkpoint, tmp_path).save({"a": record("a", 1)})
    assert problem is not None and "cannot write the cohort cache" in problem


def test_fingerprint_changes_with_the_files_and_stale_lists_them(tmp_path):
    paths = []
    for name in ("p_1.tif", "p_1_mask.tif"):
        (tmp_path / name).write_bytes(b"x")
        paths.append(tmp_path / name)
    patient = Patient("p", [Slice(1, paths[0], paths[1])])
    before = fingerprint(patient)
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10))
    after = fingerprint(patient)
    assert before != after
    records = {"p": score_patient("p", *patient_arrays(0), [1, 2, 3], before)}
    assert stale(records, {"p": before}) == [] and stale(records, {"p": after, "q": "x"}) == ["p", "q"]


def test_a_fifo_in_place_of_the_cache_is_ignored_without_blocking_then_replaced(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    cache = CohortCache(tmp_path, checkpoint, tmp_path)
    cache.path.parent.mkdir()
    os.mkfifo(cache.path)
    with no_hang():
        assert cache.load() == {}
    assert cache.save({"a": record("a", 1)}) is None
    assert cache.load() == {"a": record("a", 1)}


def test_measures_at_the_chosen_threshold_fill_the_table_and_survive_the_cache(tmp_path):
    """The measures beyond Dice are patient_measures of the thresholded probabilities, kept
    per threshold in the record and the cache file (format 2); a threshold not measured yet
    shows empty cells, an undefined distance an empty cell too."""
    probs, masks = patient_arrays(1)
    a = measure_patient(record("a", 1), probs, masks, 0.5)
    expected = patient_measures((probs >= 0.5).astype(np.uint8), masks)
    assert a.measures_at(0.5) == pytest.approx(expected, nan_ok=True) and a.measures_at(0.3) is None
    empty = np.zeros_like(masks)
    b = measure_patient(score_patient("b", probs * 0.0, empty, [1, 2, 3], "x"), probs * 0.0, empty, 0.5)
    records = {"a": a, "b": b}
    frame = cohort_frame(records, {}, 0.5).set_index("Patient")
    assert frame.loc["a", "HD95 (px)"] == pytest.approx(expected["hd95_px"])
    assert frame.loc["a", "Lesions found"] == f"{expected['detected_lesions']} of {expected['ref_lesions']}"
    assert frame.loc["a", "Missed lesions"] == expected["missed_lesions"]
    assert frame.loc["b", "HD95 (px)"] == 0.0 and frame.loc["b", "NSD (2 px)"] == 1.0  # both empty
    assert math.isnan(cohort_frame(records, {}, 0.3).set_index("Patient").loc["a", "HD95 (px)"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    cache = CohortCache(run, run / "best.pt", tmp_path / "data")
    assert cache.save(records) is None
    assert json.loads(cache.path.read_text())["format"] == 2
    loaded = cache.load()
    assert loaded["a"].measures_at(0.5) == pytest.approx(expected, nan_ok=True)
    with pytest.raises(ValueError):
        measure_patient(a, probs, masks, 0.51)  # not a threshold of the slider
