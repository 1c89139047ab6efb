"""The run folder type: the names of its files, its history reader, the best-epoch rule."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.engine.records import write_history
from medseg.errors import MedsegError
from medseg.runs import CvFolder, RunFolder, best_epoch, improves, parse_history, split_path

NAN = math.nan


def test_every_file_has_the_name_users_know(tmp_path):
    run = RunFolder(str(tmp_path / "demo"))
    assert run.path == tmp_path / "demo"
    named = {
        run.config_file: "config.yaml", run.split_file: "split.json", run.last_checkpoint: "last.pt",
        run.best_checkpoint: "best.pt", run.history_file: "history.csv",
        run.metrics_file: "metrics.json", run.lock_file: ".medseg.lock", run.app_cache: "app_cache",
        run.compare_record: "compare_run.json", run.grad_stats_file: "grad_stats.jsonl",
        run.worker_log: "compare_train.log",
    }
    for path, name in named.items():
        assert path == tmp_path / "demo" / name
    assert [path.name for path in run.checkpoints] == ["best.pt", "last.pt"]
    assert [path.name for path in run.result_files] == ["last.pt", "best.pt", "history.csv", "metrics.json"]
    assert RunFolder.of_checkpoint(tmp_path / "demo" / "best.pt") == run
    assert split_path(tmp_path) == tmp_path / "split.json"


def test_tensorboard_events_are_found_by_their_prefix(tmp_path):
    for name in ("events.out.tfevents.2.host", "events.out.tfevents.1.host", "events.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in RunFolder(tmp_path).tensorboard_events()] == [
        "events.out.tfevents.1.host", "events.out.tfevents.2.host"]


def test_history_round_trips_through_the_trainer_s_writer(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 0.75, "val_dice": NAN, "lr": 1e-3},
        {"epoch": 2, "train_loss": 0.5, "val_dice": 0.625, "lr": 5e-4, "images_per_s": 12.5},
        {"epoch": 3, "train_loss": 0.25, "val_dice": math.inf, "lr": 0.0},
    ]
    run = RunFolder(tmp_path)
    write_history(rows, run.history_file)
    back = run.read_history()
    assert [list(row) for row in back] == [list(row) for row in rows]  # an empty cell is left out
    for read, written in zip(back, rows, strict=True):
        for key, value in written.items():
            assert read[key] == value or (math.isnan(read[key]) and math.isnan(value)), key


@pytest.mark.parametrize(("text", "problem"), [
    ("epoch,val_dice\n1,0.5\n2,high\n", "row 2 holds 'high' in val_dice, not a number"),
    ("epoch,val_dice\n1,0.5,7\n", "row 1 has more cells than the header has columns"),
    ("epoch\n" + "1" * 200_000 + "\n", "not CSV (field larger than field limit"),
], ids=["word", "extra_cell", "huge_cell"])
def test_a_history_that_is_not_numbers_is_named(tmp_path, text, problem):
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(MedsegError, match=f"^{re.escape(str(path))}: cannot read the run history: ") as info:
        RunFolder(tmp_path).read_history()
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_a_missing_history_is_named(tmp_path):
    with pytest.raises(MedsegError, match=f"^{re.escape(str(tmp_path / 'history.csv'))}: cannot read the run history"):
        RunFolder(tmp_path).read_history()


def test_parse_history_reads_text_as_the_file_reader_does():
    assert parse_history("epoch,val_auc,lr\n1,,0.1\n2,nan,0.05\n", Path("h.csv"))[0] == {"epoch": 1.0, "lr": 0.1}
    assert parse_history("", Path("h.csv")) == []


def test_improves_ranks_numbers_above_nan_and_keeps_the_earlier_of_a_tie():
    assert improves(NAN, None) and improves(0.1, None)  # the first epoch is the best of one
    assert improves(0.6, 0.5) and not improves(0.4, 0.5)
    assert not improves(0.5, 0.5)  # a tie keeps the earlier epoch
    assert improves(0.0, NAN) and improves(-math.inf, NAN)  # any number beats no number
    assert not improves(NAN, 0.0) and not improves(NAN, NAN)


def _history(*scores):
    return [{"epoch": epoch, "val_dice": score} for epoch, score in enumerate(scores, start=1)]


@pytest.mark.parametrize(("scores", "expected"), [
    ((0.2, 0.5, 0.4), (2, 0.5)),
    ((0.5, 0.5, 0.4), (1, 0.5)),  # tie: the earlier epoch
    ((0.2, 0.5, 0.5), (2, 0.5)),
    ((NAN, 0.1, NAN), (2, 0.1)),  # NaN at the first epoch does not pin the best there
    ((0.3, NAN, 0.2), (1, 0.3)),
])
def test_best_epoch_of_hand_written_histories(scores, expected):
    assert best_epoch(_history(*scores), "val_dice") == expected


def test_best_epoch_without_any_score_is_the_first_epoch():
    best = best_epoch(_history(NAN, NAN), "val_dice")
    assert best is not None and best[0] == 1 and math.isnan(best[1])
    rows = [{"epoch": 1.0}, {"epoch": 2.0, "val_dice": 0.3}]  # epoch 1 has no val_dice cell
    assert best_epoch(rows, "val_dice") == (2, 0.3)
    assert best_epoch([], "val_dice") is None


def test_best_epoch_of_a_run_folder_reads_its_history(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,val_dice\n1,nan\n2,0.75\n3,0.75\n4,0.5\n")
    assert RunFolder(tmp_path).best_epoch("val_dice") == (2, 0.75)


def test_the_module_stays_light():
    code = "import sys, medseg.runs; print(sorted(m for m in ('torch', 'monai', 'medseg.engine') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_a_cv_folder_is_recognised_by_its_folds_file_and_names_its_members(tmp_path):
    cv = CvFolder(tmp_path / "cv")
    assert not CvFolder.is_cv_folder(cv.path)
    (cv.path / "folds.json").mkdir(parents=True)  # a folder of that name is not the record
    assert not CvFolder.is_cv_folder(cv.path)
    (cv.path / "folds.json").rmdir()
    cv.folds_file.write_text("{}")
    assert CvFolder.is_cv_folder(cv.path)
    assert cv.fold(3).path == cv.path / "fold_3"
    assert cv.member_checkpoint(3) == cv.fold(3).last_checkpoint  # last.pt, never best.pt
    assert [cv.results_file.name, cv.report_file.name, cv.postprocessing_file.name] == [
        "cv_results.json", "cv_results.md", "postprocessing.json"]
