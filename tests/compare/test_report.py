"""results.csv and results.md from hand-made rows."""

from __future__ import annotations

import csv
import math

import pytest
from scipy import stats

from medseg.compare.report import (
    check_measures,
    csv_columns,
    format_summary,
    render_results_md,
    table_metrics,
    write_overlap_csv,
    write_results_csv,
)
from medseg.errors import ConfigError
from medseg.metrics.measures import (
    HIGHER_IS_BETTER,
    MEASURE_BOUNDS,
    measure_bounds,
    measure_names,
    measure_stem,
)


def _row(method, seed, auc, accuracy, reached=2):
    return {
        "method": method, "seed": seed, "test_auc": auc, "test_accuracy": accuracy,
        "test_sensitivity": 0.5, "val_metric": "val_auc", "best_val_metric": auc + 0.01,
        "best_epoch": 3, "target_metric": 0.7, "epochs_to_target": reached,
        "wall_time_s": 10.0 + seed, "run_dir": f"runs/{method}/seed{seed}",
    }


ROWS = [
    _row("adam", 0, 0.8, 0.70), _row("adam", 1, 0.6, 0.60), _row("adam", 2, 0.4, 0.50, None),
    _row("adam+znorm", 0, 0.9, 0.75), _row("adam+znorm", 1, 0.8, 0.65),
    _row("adam+znorm", 2, 0.7, 0.55),
]


def test_csv_has_one_row_per_run_and_stable_columns(tmp_path):
    path = tmp_path / "results.csv"
    write_results_csv(ROWS, path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == csv_columns(ROWS)
    assert reader.fieldnames[:5] == ["method", "seed", "test_accuracy", "test_auc", "test_sensitivity"]
    assert reader.fieldnames[-6:] == ["epochs_to_target", "seconds_to_target", "wall_time_s",
                                      "run_dir", "status", "note"]
    assert len(rows) == 6
    assert rows[2]["epochs_to_target"] == ""  # never reached: empty, not "None"
    assert float(rows[3]["test_auc"]) == 0.9 and rows[3]["method"] == "adam+znorm"


def test_format_summary_cells():
    assert format_summary([0.1, 0.2, 0.3], 4) == "0.2000 ± 0.1000 [-0.0484, 0.4484]"
    assert format_summary([0.5], 2) == "0.50 (1 seed)"
    assert format_summary([math.nan], 2) == "n/a"


def test_markdown_report_holds_summaries_and_paired_test():
    text = render_results_md(ROWS, task="classification", methods=["adam", "adam+znorm"],
                             baseline="adam", setup_lines=["Task: classification"],
                             images=["val_metric.png"])
    assert "Seeds: 3 (0, 1, 2)" in text and "intervals are wide" in text
    # adam auc 0.8, 0.6, 0.4: mean 0.6, sd 0.2, half-width 4.3027 * 0.2 / sqrt(3) = 0.4968;
    # an AUC is at most 1, so the interval [0.1032, 1.0968] ends at 1
    assert "0.6000 ± 0.2000 [0.1032, 1.0000]" in text and "clipped to the values" in text
    # znorm - adam auc per seed: 0.1, 0.2, 0.3 -> +0.2000 [-0.0484, +0.4484], t 3.464
    assert "| method | learned / runs | accuracy | AUC | best val |" in text  # on-screen names
    # d_z = 0.2 / 0.1; one method tested, so Holm leaves p as it is
    assert ("| `adam+znorm` | test AUC | 3 | +0.2000 [-0.0484, +0.4484] | +2.00 | 0.074 | 0.074 "
            "| no evidence of a difference |") in text
    assert "2/3 reached" in text and "3/3 reached" in text
    assert "![val_metric](val_metric.png)" in text
    assert "sensitivity" not in text.split("## Test metrics per method")[1].split("\n")[2]


def test_markdown_report_says_na_for_a_single_seed():
    rows = [_row("adam", 0, 0.8, 0.7), _row("adam+gc", 0, 0.9, 0.8)]
    text = render_results_md(rows, task="classification", methods=["adam", "adam+gc"],
                             baseline="adam")
    assert "Seeds: 1 (0)" in text
    assert "| `adam+gc` | test AUC | 1 | +0.1000 | n/a | n/a | n/a | too few seeds |" in text


def test_table_metrics_follow_the_task():
    seg_rows = [{"method": "adam", "seed": 0, "test_dice": 0.8, "test_iou": 0.7,
                 "test_patient_dice": 0.75, "test_empty_fp_rate": 0.1}]
    assert table_metrics("segmentation", seg_rows) == ["dice", "iou", "patient_dice"]
    assert table_metrics("classification", ROWS) == ["accuracy", "auc"]


def test_overlap_csv_has_one_line_per_run_step_and_block(tmp_path):
    rows = [
        {"method": "adam+bgn", "seed": 1, "step": 10, "block": "features.1", "skip_norm": 1.5,
         "branch_norm": 0.25, "total_norm": 1.6, "cosine": float("nan")},
        {"method": "adam", "seed": 0, "step": 20, "block": "features.3", "skip_norm": 2.0,
         "branch_norm": 1.0, "total_norm": 2.5, "cosine": 0.25},
    ]
    path = tmp_path / "overlap.csv"
    write_overlap_csv(rows, path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        lines = list(reader)
    assert reader.fieldnames == ["method", "seed", "step", "block", "skip_norm", "branch_norm",
                                 "total_norm", "cosine"]
    assert lines[0] == {"method": "adam+bgn", "seed": "1", "step": "10", "block": "features.1",
                        "skip_norm": "1.5", "branch_norm": "0.25", "total_norm": "1.6",
                        "cosine": ""}
    assert lines[1]["cosine"] == "0.25"


def _seeded(method, aucs, **extra):
    return [{**_row(method, seed, auc, 0.5), "epochs": 8, **extra}
            for seed, auc in enumerate(aucs)]


BASE_AUCS = [0.70, 0.72, 0.68, 0.71, 0.69]


def _shifted(differences):
    return [auc + difference for auc, difference in zip(BASE_AUCS, differences, strict=True)]


def _line(text, method, measure):
    return next(line for line in text.splitlines()
                if line.startswith(f"| `{method}` | {measure} |"))


def test_verdicts_follow_holm_adjusted_p_and_the_measures_direction():
    rows = (_seeded("adam", BASE_AUCS)
            + _seeded("clear", _shifted([0.10, 0.11, 0.09, 0.10, 0.12]))
            + _seeded("weak", _shifted([0.01, 0.04, 0.01, 0.05, 0.02]))
            + _seeded("none", _shifted([0.02, -0.03, 0.01, -0.01, 0.0])))
    text = render_results_md(rows, task="classification", baseline="adam",
                             methods=["adam", "clear", "weak", "none"])
    raw = {m: stats.ttest_rel(_aucs(rows, m), _aucs(rows, "adam")).pvalue
           for m in ("clear", "weak", "none")}
    assert raw["clear"] < raw["weak"] < 0.05 < raw["none"]
    # weak's p is the second smallest of 3: Holm doubles it, past 0.05
    weak = _line(text, "weak", "test AUC").split(" | ")
    assert float(weak[5]) == pytest.approx(raw["weak"], abs=5e-4)
    assert float(weak[6]) == pytest.approx(2 * raw["weak"], abs=5e-4) and float(weak[6]) > 0.05
    assert weak[7] == "no evidence of a difference |"
    assert _line(text, "clear", "test AUC").endswith("| **better** than the baseline |")
    assert _line(text, "none", "test AUC").endswith("| no evidence of a difference |")


def _aucs(rows, method):
    return [row["test_auc"] for row in rows if row["method"] == method]


def test_fewer_epochs_to_target_is_better_and_a_miss_counts_as_one_past_the_last():
    rows = (_seeded("adam", BASE_AUCS, epochs_to_target=None)  # never: counts as 9
            + [{**row, "epochs_to_target": 3 + row["seed"] % 2} for row in _seeded("fast", BASE_AUCS)])
    text = render_results_md(rows, task="classification", baseline="adam",
                             methods=["adam", "fast"])
    # fast - adam per seed: 3 - 9, 4 - 9, 3 - 9, 4 - 9, 3 - 9 -> mean -5.6
    line = _line(text, "fast", "epochs to target")
    assert "| 5 | -5.6000 [" in line and line.endswith("| **better** than the baseline |")
    assert "— (0/5 reached)" in _line(text, "adam", "5 / 5")
    # fast reached at 3, 4, 3, 4, 3: mean 3.4, sd 0.548, unclipped [2.7, 4.1]
    assert "3.4 ± 0.5 [2.7, 4.1] (5/5 reached)" in _line(text, "fast", "5 / 5")


def test_epochs_to_target_intervals_start_at_the_first_epoch():
    rows = [{**row, "epochs_to_target": 1 + 8 * (row["seed"] % 2)} for row in _seeded("adam", BASE_AUCS)]
    text = render_results_md(rows, task="classification", baseline="adam", methods=["adam"])
    # 1, 9, 1, 9, 1: mean 4.2, sd 4.38, t-interval [-1.2, 9.6]: no run reaches before epoch 1
    assert "4.2 ± 4.4 [1.0, 9.6] (5/5 reached)" in _line(text, "adam", "5 / 5")


def test_runs_that_did_not_learn_or_diverged_are_listed_never_pooled():
    rows = _seeded("adam", BASE_AUCS) + _seeded("adam+gc", [0.8, 0.8, 0.9, 0.9, 0.1])
    rows[-1].update(status="not learned", note="test AUC 0.1000 is not 0.1 above chance 0.5000")
    rows[4].update(status="diverged", note="loss 1e12 at step 3")
    text = render_results_md(rows, task="classification", baseline="adam",
                             methods=["adam", "adam+gc"])
    assert _line(text, "adam", "4 / 5") and _line(text, "adam+gc", "4 / 5")
    # the AUC cell averages 0.8, 0.8, 0.9, 0.9 only
    assert "| `adam+gc` | 4 / 5 | 0.5000 ± 0.0000 [0.5000, 0.5000] | 0.8500 ± " in text
    # seed 4 is out for both (each side lost it): 4 pairs
    assert "| `adam+gc` | test AUC | 4 |" in text
    left_out = text.split("## Runs left out")[1]
    assert "| `adam+gc` | 4 | not learned | test AUC 0.1000 is not 0.1 above chance" in left_out
    assert "| `adam` | 4 | diverged | loss 1e12 at step 3 |" in left_out


def _seg_row(method, seed, hd95, f1, undefined=0):
    """A segmentation run; ``hd95`` None: its metrics.json predates the per-patient measures."""
    row = {"method": method, "seed": seed, "test_dice": 0.7, "test_iou": 0.6,
           "test_patient_dice": 0.65, "status": "ok"}
    if hd95 is not None:
        row.update(measure_hd95_px=hd95, measure_hd95_px_n_undefined=undefined,
                   measure_lesion_f1=f1, measure_lesion_f1_n_undefined=0)
    return row


# znorm - adam HD95 per seed: -2, -3, -4 (lower: better), t = -3 / (1 / sqrt 3);
# Lesion F1: +0.1, +0.1, +0.2 (higher: better)
SEG_ROWS = [
    _seg_row("adam", 0, 10.0, 0.5, undefined=1), _seg_row("adam", 1, 12.0, 0.6),
    _seg_row("adam", 2, 14.0, 0.6), _seg_row("adam+znorm", 0, 8.0, 0.6),
    _seg_row("adam+znorm", 1, 9.0, 0.7, undefined=2), _seg_row("adam+znorm", 2, 10.0, 0.8),
    _seg_row("adam+znorm", 3, None, None),
]


def test_named_measures_are_tabulated_and_tested_with_their_direction():
    text = render_results_md(SEG_ROWS, task="segmentation", methods=["adam", "adam+znorm"],
                             baseline="adam", measures=["hd95_px", "lesion_f1"])
    assert "HD95 (px): lower is better; Lesion F1: higher is better" in text
    # adam HD95 10, 12, 14 over patients where defined; one patient left out on seed 0
    assert "| `adam` | HD95 (px) | 3 / 3 | 12.0000 ± 2.0000 [7.0317, 16.9683] | 1 |" in text
    # seed 3's metrics.json has no measures: counted as lacking them, not as a value
    assert "| `adam+znorm` | HD95 (px) | 3 / 4 | 9.0000 ± 1.0000 [6.5159, 11.4841] | 2 |" in text
    p_hd95 = stats.ttest_rel([8, 9, 10], [10, 12, 14]).pvalue
    assert f"| -3.0000 [-5.4841, -0.5159] | -3.00 | {p_hd95:.3f} | {p_hd95:.3f} | **better** than the baseline |" in text
    assert "| `adam+znorm` | test HD95 (px) (patient mean) | 3 |" in text
    p_f1 = stats.ttest_rel([0.6, 0.7, 0.8], [0.5, 0.6, 0.6]).pvalue
    assert "| `adam+znorm` | test Lesion F1 (patient mean) | 3 | +0.1333" in text
    assert f"| {p_f1:.3f} | {p_f1:.3f} | no evidence of a difference |" in text  # p = 0.057
    # without --measures the report is the headline metrics only
    plain = render_results_md(SEG_ROWS, task="segmentation", methods=["adam", "adam+znorm"],
                              baseline="adam")
    assert "HD95" not in plain and "Per-patient measures" not in plain


def test_named_measures_get_csv_columns(tmp_path):
    path = tmp_path / "results.csv"
    write_results_csv(SEG_ROWS, path, measures=["hd95_px"])
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames[2:7] == ["test_dice", "test_iou", "test_patient_dice", "measure_hd95_px",
                                      "measure_hd95_px_n_undefined"]
    assert (rows[0]["measure_hd95_px"], rows[0]["measure_hd95_px_n_undefined"]) == ("10.0", "1")
    assert rows[6]["measure_hd95_px"] == ""  # predates the measures


def test_a_measure_without_direction_says_which_way_it_differs():
    rows = [_seg_row(method, seed, 5.0, 0.5) for method in ("adam", "adam+gc") for seed in range(3)]
    for seed, (ours, theirs) in enumerate([(2.0, 1.0), (2.5, 1.0), (3.0, 1.0)]):
        rows[3 + seed]["measure_rel_volume_diff"], rows[seed]["measure_rel_volume_diff"] = ours, theirs
    text = render_results_md(rows, task="segmentation", methods=["adam", "adam+gc"],
                             baseline="adam", measures=["rel_volume_diff"])
    assert "Δ volume (relative): neither way is better" in text
    assert "**higher** than the baseline |" in text


def test_unknown_measure_is_refused_in_one_line_listing_the_known_ones():
    with pytest.raises(ConfigError) as err:
        check_measures(["dice", "hd96_px"], "segmentation")
    message = str(err.value)
    assert "\n" not in message and "'hd96_px'" in message
    assert message.endswith("known: " + ", ".join(measure_names()))
    assert check_measures(["hd95_px", "dice", "hd95_px"], "segmentation") == ["hd95_px", "dice"]
    with pytest.raises(ConfigError, match="segmentation, not classification"):
        check_measures(["dice"], "classification")


def test_every_measure_has_a_direction_and_bounds():
    assert {measure_stem(name) for name in measure_names()} == set(HIGHER_IS_BETTER) == set(MEASURE_BOUNDS)
    assert measure_bounds("hd95_mm") == (0.0, math.inf) and measure_bounds("nsd_2px") == (0.0, 1.0)
    assert measure_bounds("rel_volume_diff") == (-1.0, math.inf)


def test_a_patient_measure_interval_stops_at_its_bounds():
    rows = [_seg_row("adam", seed, hd95, 0.6) for seed, hd95 in enumerate([1.0, 1.0, 10.0])]
    text = render_results_md(rows, task="segmentation", methods=["adam"], baseline="adam",
                             measures=["hd95_px"])
    # 1, 1, 10: mean 4, sd 5.196, t-interval [-8.9, 16.9]: a distance is never below 0
    assert "| `adam` | HD95 (px) | 3 / 3 | 4.0000 ± 5.1962 [0.0000, 16.9080] | 0 |" in text
