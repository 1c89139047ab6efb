"""The runs view's plain parts: panel layout, the per-slice table across runs, subsets in the
runs' splits and the comparison folder."""

from __future__ import annotations

import shutil

import pytest

from medseg.app.runs_compare import (
    ALL_PATIENTS,
    LARGEST_DIFFERENCE,
    UNKNOWN_SUBSET,
    comparison_of,
    panel_columns,
    panel_zoom,
    patient_subsets,
    slice_differences,
    subset_patients,
)
from medseg.compare.report import RESULTS_CSV, format_summary, read_results_csv, write_results_csv
from medseg.errors import MedsegError


def test_panels_follow_the_zoom_and_wrap_never_below_native_size():
    # 64-px slices on a 960-px page with 16-px gaps: 1x 64 -> 12 fit (12 * 64 + 11 * 16 = 944);
    # 3x 192 -> 4; 4x 256 -> 3
    assert panel_columns(64, 1, 20) == 12
    assert panel_columns(64, 3, 5) == 4
    assert panel_columns(64, 4, 5) == 3
    assert panel_columns(64, 3, 2) == 2  # never more columns than panels
    assert panel_zoom(256, 3) == 3 and panel_columns(256, 3, 5) == 1  # 768 px: one a row
    assert panel_zoom(256, 4) == 3  # 1024 px would pass the page: 3x is the widest that fits
    assert panel_zoom(1200, 2) == 1 and panel_columns(1200, 2, 3) == 1  # wider than the page: native
    for width in (64, 96, 256):
        for zoom in (1, 2, 3, 4):
            for panels in (2, 5, 12):
                n = panel_columns(width, zoom, panels, page_px=960, gap_px=16)
                panel = width * panel_zoom(width, zoom)
                assert n == 1 or n * panel + (n - 1) * 16 <= 960  # the row fits the page
                assert panel >= width and (panel == width * zoom or panel + width > 960)


def test_slices_sorted_by_the_largest_difference_between_runs():
    per_slice = {
        "a": [{"slice": 1, "dice": 0.9}, {"slice": 2, "dice": 0.5}, {"slice": 3, "dice": 1.0},
              {"slice": 4, "dice": 0.2}],
        "b": [{"slice": 1, "dice": 0.8}, {"slice": 2, "dice": 0.9}, {"slice": 3, "dice": 1.0},
              {"slice": 4, "dice": 0.3}],
        "c": [{"slice": 1, "dice": 0.6}, {"slice": 2, "dice": 0.7}, {"slice": 3, "dice": 1.0},
              {"slice": 4, "dice": 0.1}],
    }
    table = slice_differences(per_slice)
    assert list(table.columns) == ["Slice", "a", "b", "c", LARGEST_DIFFERENCE]
    # 1: 0.9 - 0.6 = 0.3; 2: 0.9 - 0.5 = 0.4; 3: 0; 4: 0.3 - 0.1 = 0.2 (ties: lower slice first)
    assert list(table["Slice"]) == [2, 1, 4, 3]
    assert list(table[LARGEST_DIFFERENCE]) == pytest.approx([0.4, 0.3, 0.2, 0.0])
    assert list(table.loc[0, ["a", "b", "c"]]) == [0.5, 0.9, 0.7]
    tie = slice_differences({"a": [{"slice": 7, "dice": 0.5}, {"slice": 3, "dice": 0.5}],
                             "b": [{"slice": 7, "dice": 0.0}, {"slice": 3, "dice": 1.0}]})
    assert list(tie["Slice"]) == [3, 7]


def test_subsets_are_each_runs_and_a_subset_holds_patients_of_it_in_every_run():
    splits = {"a": {"p1": "test", "p2": "train", "p3": "val"},
              "b": {"p1": "test", "p2": "test", "p3": "val"}}
    names = ["p1", "p2", "p3", "p4"]
    assert patient_subsets(splits, names) == {"p1": "test", "p2": "a: train, b: test", "p3": "val",
                                              "p4": UNKNOWN_SUBSET}
    assert subset_patients(splits, names, "test") == ["p1"]  # p2 is a training patient of a
    assert subset_patients(splits, names, "val") == ["p3"]
    assert subset_patients(splits, names, "train") == []
    assert subset_patients(splits, names, ALL_PATIENTS) == names


def results_rows() -> list[dict]:
    rows = []
    for method, scores in (("adam", (0.70, 0.74, 0.72)), ("adam+znorm", (0.80, 0.78, 0.82)),
                           ("sgd", (0.5, 0.52, 0.51))):
        for seed, dice in enumerate(scores):
            rows.append({"method": method, "seed": seed, "test_dice": dice, "test_iou": dice - 0.1,
                         "val_metric": "val_dice", "best_val_metric": dice, "val_curve_area": dice / 2,
                         "epochs": 3, "status": "ok", "run_dir": f"runs/{method}/seed{seed}"})
    rows.append({"method": "sgd", "seed": 3, "epochs": 1, "status": "diverged", "note": "loss inf"})
    return rows


def compare_folder(tmp_path):
    folder = tmp_path / "cmp"
    for method in ("adam", "adam+znorm", "sgd"):
        for seed in range(3):
            (folder / "runs" / method / f"seed{seed}").mkdir(parents=True)
    write_results_csv(results_rows(), folder / RESULTS_CSV)
    return folder


def test_runs_of_one_comparison_get_its_cells_and_paired_tests(tmp_path):
    folder = compare_folder(tmp_path)
    runs = [folder / "runs" / "adam+znorm" / "seed0", folder / "runs" / "adam" / "seed1",
            folder / "runs" / "adam" / "seed0"]
    comparison = comparison_of(runs)
    assert comparison is not None
    assert comparison.folder == folder.resolve() and comparison.methods == ("adam+znorm", "adam")
    report = comparison.report("segmentation")
    assert format_summary([0.80, 0.78, 0.82], 4, (0.0, 1.0)) in report  # adam+znorm's Dice cell
    assert format_summary([0.70, 0.74, 0.72], 4, (0.0, 1.0)) in report
    assert "`sgd`" not in report and "Runs left out" not in report  # only the chosen runs' methods
    assert "Seeds: 3 (0, 1, 2)" in report  # not sgd's diverged seed 3
    assert "## Each method against `adam`" in report  # compare's own baseline
    assert "| `adam+znorm` | test Dice | 3 | +0.0800" in report  # paired over the 3 seeds


def test_runs_not_of_one_comparison(tmp_path):
    folder = compare_folder(tmp_path)
    other = compare_folder(tmp_path / "other")
    seed0 = folder / "runs" / "adam" / "seed0"
    assert comparison_of([]) is None
    assert comparison_of([seed0, other / "runs" / "adam" / "seed1"]) is None  # two comparisons
    loose = tmp_path / "models" / "adam" / "seed0"
    loose.mkdir(parents=True)
    assert comparison_of([seed0, loose]) is None  # not under runs/
    named = folder / "runs" / "adam" / "best"
    named.mkdir()
    assert comparison_of([seed0, named]) is None  # not a seed folder
    (folder / RESULTS_CSV).unlink()
    assert comparison_of([seed0, folder / "runs" / "sgd" / "seed0"]) is None  # no results.csv


def test_the_results_table_is_read_as_written_and_damage_is_named(tmp_path):
    folder = compare_folder(tmp_path)
    rows = read_results_csv(folder / RESULTS_CSV)
    assert [(row["method"], row["seed"], row["test_dice"], row["status"]) for row in rows] == [
        (row["method"], str(row["seed"]), str(row.get("test_dice", "")), row["status"]) for row in results_rows()]
    assert rows[0]["epochs_to_target"] == ""  # a missing value is an empty cell
    bad = tmp_path / "bad.csv"
    bad.write_text("method,test_dice\nadam,0.5\n")
    with pytest.raises(MedsegError, match=r"bad.csv: not a comparison's results table: no seed, status"):
        read_results_csv(bad)
    bad.write_text("method,seed,status\nadam,one,ok\n")
    with pytest.raises(MedsegError, match=r"bad.csv: .*seed that is not a whole number"):
        read_results_csv(bad)
    with pytest.raises(MedsegError, match=r"gone\.csv"):
        read_results_csv(tmp_path / "gone.csv")
    comparison = comparison_of([folder / "runs" / "adam" / "seed0", folder / "runs" / "sgd" / "seed0"])
    assert comparison is not None
    shutil.copy(bad, folder / RESULTS_CSV)
    with pytest.raises(MedsegError, match=RESULTS_CSV):
        comparison.report("segmentation")
