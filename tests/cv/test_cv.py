"""``medseg cv`` end to end on the tiny LGG data (5 patients: 1 held out, 4 in 2 folds, each
fold 1 epoch): the plan / compare-run / collect path, out-of-fold results with each patient
once, the test scored by the ensemble and by each fold, a finished fold never retrained, and
a rerun with another setup refused."""

from __future__ import annotations

import contextlib
import io
import json
import shlex

import pytest
import yaml

import medseg.engine
from medseg.cli.main import main
from medseg.cv.scoring import ENSEMBLE
from medseg.engine.evaluation import evaluate
from medseg.postprocessing import load_postprocessing
from medseg.runs import CvFolder
from tests.support import lgg_settings, one_thread, pcam_settings

FOLDS = 2


def _medseg(*argv):
    """``medseg ARGV`` on one thread: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with one_thread(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def _cv(config, out, *extra):
    return _medseg("cv", config, "--folds", FOLDS, "--out", out, "--device", "cpu", *extra)


@pytest.fixture(scope="module")
def cv_config(tiny_lgg, tmp_path_factory):
    path = tmp_path_factory.mktemp("cv_cfg") / "cv.yaml"
    path.write_text(yaml.safe_dump(lgg_settings(tiny_lgg, tmp_path_factory.mktemp("unused"),
                                                epochs=1, warmup_epochs=0)))
    return path


@pytest.fixture(scope="module")
def scheduled(cv_config, module_tmp):
    """A cross-validation planned, its folds trained by the printed compare-run commands in
    reverse order (as a job array might), then collected; what each step gave."""
    out = module_tmp / "cv $(touch pwned); x"
    steps = {"plan": _cv(cv_config, out, "--plan")}
    cv = CvFolder(out)
    steps["trained_after_plan"] = [cv.member_checkpoint(k).exists() for k in range(FOLDS)]
    steps["early_collect"] = _cv(cv_config, out, "--collect")
    steps["commands"] = [shlex.split(line) for line in steps["plan"][1].splitlines()]
    steps["runs"] = [_medseg(*command[1:]) for command in reversed(steps["commands"])]
    steps["collect"] = _cv(cv_config, out, "--collect")
    return {"out": out, "cv": cv, "steps": steps, "folds": json.loads(cv.folds_file.read_text()),
            "results": json.loads(cv.results_file.read_text())}


def test_plan_prints_one_quoted_command_per_fold_and_trains_nothing(scheduled):
    cv, steps = scheduled["cv"], scheduled["steps"]
    assert steps["plan"][0] == 0
    assert steps["commands"] == [["medseg", "compare-run", str(cv.fold(k).path)] for k in range(FOLDS)]
    assert "2 folds planned" in steps["plan"][2]
    assert steps["trained_after_plan"] == [False] * FOLDS
    assert CvFolder.is_cv_folder(cv.path) and not (cv.path.parent / "pwned").exists()


def test_folds_are_disjoint_and_each_fold_validates_on_itself(scheduled):
    cv, folds = scheduled["cv"], scheduled["folds"]
    every = [p for fold in folds["folds"] for p in fold]
    assert len(every) == len(set(every)) == 4 and len(folds["test"]) == 1
    assert not set(every) & set(folds["test"])
    for k in range(FOLDS):
        split = json.loads(cv.fold(k).split_file.read_text())
        assert split["val"] == folds["folds"][k]
        assert split["train"] == sorted(folds["folds"][1 - k])
        assert split["test"] == folds["test"]


def test_collect_lists_unfinished_folds_then_reports(scheduled):
    code, _, err = scheduled["steps"]["early_collect"]
    assert code == 2 and err.count("\n") == 1 and "2 of 2 folds unfinished" in err
    assert "fold_0 (not started)" in err and "fold_1 (not started)" in err
    assert [run[0] for run in scheduled["steps"]["runs"]] == [0, 0]
    code, printed, _ = scheduled["steps"]["collect"]
    assert code == 0 and "out-of-fold patient Dice (4 patients)" in printed and "test ensemble" in printed


def test_out_of_fold_table_holds_each_non_test_patient_once_with_its_fold(scheduled):
    folds, oof = scheduled["folds"], scheduled["results"]["out_of_fold"]
    fold_of = {p: k for k, fold in enumerate(folds["folds"]) for p in fold}
    assert {p: row["fold"] for p, row in oof["per_patient"].items()} == fold_of
    assert oof["summary"]["dice"]["n"] == 4
    assert [row["patients"] for row in oof["per_fold"]] == [2, 2]
    per_patient = [row["dice"] for row in oof["per_patient"].values()]
    assert oof["summary"]["dice"]["mean"] == pytest.approx(sum(per_patient) / 4)


def test_out_of_fold_scores_are_the_member_checkpoints_on_their_own_fold(scheduled):
    """Each row equals medseg evaluate's score of its fold's last.pt on that fold's val split."""
    cv, oof = scheduled["cv"], scheduled["results"]["out_of_fold"]["per_patient"]
    root = yaml.safe_load(cv.config_file.read_text())["data"]["root"]
    for k in range(FOLDS):
        with one_thread():
            scored = evaluate(cv.member_checkpoint(k), root, split="val", device="cpu")
        assert scored["checkpoint"].endswith("last.pt")
        assert {p: row["dice"] for p, row in scored["per_patient_measures"].items()} == pytest.approx(
            {p: row["dice"] for p, row in oof.items() if row["fold"] == k})


def test_test_patients_are_scored_by_the_ensemble_and_each_fold_with_and_without_tta(scheduled):
    results, cv = scheduled["results"], scheduled["cv"]
    models = results["test"]["models"]
    assert sorted(models) == sorted([ENSEMBLE, "fold_0", "fold_1"])
    for by_tta in models.values():
        assert sorted(by_tta) == ["flip", "none"]
        assert sorted(by_tta["none"]["per_patient"]) == scheduled["folds"]["test"]
    fold_dice = [models[f"fold_{k}"]["none"]["summary"]["dice"]["mean"] for k in range(FOLDS)]
    ensemble_dice = models[ENSEMBLE]["none"]["summary"]["dice"]["mean"]
    # one test patient: the gain is the ensemble's Dice minus the folds' mean Dice
    assert results["test"]["ensemble_gain"]["none"]["mean"] == pytest.approx(ensemble_dice - sum(fold_dice) / FOLDS)
    assert load_postprocessing(cv.postprocessing_file).to_dict() == results["postprocessing"]["chosen"]
    report = cv.report_file.read_text()
    assert "## Out-of-fold summary" in report and "## Test: the ensemble against each fold" in report
    assert "## Postprocessing" in report and "remove lesions under 10 voxels" in report


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_evaluate_of_the_cv_folder_gives_the_ensembles_test_scores(scheduled, tta):
    """medseg evaluate reads the CV folder as the same ensemble (every fold's last.pt, the
    chosen postprocessing): its test scores are the record's."""
    cv, test = scheduled["cv"], scheduled["results"]["test"]
    root = yaml.safe_load(cv.config_file.read_text())["data"]["root"]
    with one_thread():
        raw = evaluate([cv.path], root, split="test", device="cpu", tta=tta, postprocess=False)
    dice = {p: row["dice"] for p, row in raw["per_patient_measures"].items()}
    assert dice == pytest.approx({p: row["dice"] for p, row in test["models"][ENSEMBLE][tta]["per_patient"].items()})
    if tta == "none":
        with one_thread():
            cleaned = evaluate([cv.path], root, split="test", device="cpu")
        assert {p: row["dice"] for p, row in cleaned["per_patient_measures"].items()} == pytest.approx(
            {p: row["dice"] for p, row in test["postprocessed"]["per_patient"].items()})


def test_a_finished_fold_is_never_trained_again(scheduled, cv_config, monkeypatch):
    """Rerunning trains nothing and scores the same; only the member checkpoints (last.pt)
    are read: with every best.pt moved away the results are unchanged."""
    cv, steps = scheduled["cv"], scheduled["steps"]
    members = [cv.member_checkpoint(k) for k in range(FOLDS)]
    stamps = [path.stat().st_mtime_ns for path in members]
    monkeypatch.setattr(medseg.engine, "train", _must_not_train)
    code, _, err = _medseg(*steps["commands"][0][1:])
    assert code == 0 and "nothing to do" in err
    best = [cv.fold(k).best_checkpoint for k in range(FOLDS)]
    for path in best:
        path.rename(path.with_suffix(".moved"))
    try:
        code, _, err = _cv(cv_config, scheduled["out"])
    finally:
        for path in best:
            path.with_suffix(".moved").rename(path)
    assert code == 0 and "fold_0: finished earlier, skipped" in err
    assert [path.stat().st_mtime_ns for path in members] == stamps
    assert json.loads(cv.results_file.read_text())["out_of_fold"] == scheduled["results"]["out_of_fold"]


@pytest.mark.parametrize("change, difference", [
    (["--set", "train.epochs=2"], "train.epochs: 1 != 2"),
    (["--set", "seed=5"], "seed: 0 != 5"),
    (["--folds", "3"], "folds: 2 != 3"),
])
def test_a_rerun_with_another_setup_is_refused(scheduled, cv_config, change, difference):
    cv = scheduled["cv"]
    before = cv.folds_file.read_bytes(), cv.config_file.read_bytes()
    code, _, err = _cv(cv_config, scheduled["out"], "--plan", *change)  # a later --folds wins
    assert code == 2 and err.count("\n") == 1
    assert "holds a cross-validation of another setup" in err and difference in err
    assert (cv.folds_file.read_bytes(), cv.config_file.read_bytes()) == before


def test_pcam_is_refused_in_one_line(tiny_pcam, tmp_path):
    config = tmp_path / "pcam.yaml"
    config.write_text(yaml.safe_dump(pcam_settings(tiny_pcam, tmp_path / "run")))
    code, _, err = _medseg("cv", config, "--out", tmp_path / "cv", "--plan")
    assert code == 2 and err.count("\n") == 1 and "official train/val/test splits" in err
    assert not (tmp_path / "cv").exists()


def _must_not_train(*args, **kwargs):
    raise AssertionError("a finished fold was trained again")


def test_an_interrupted_fold_is_planned_again_and_named_by_collect(scheduled, cv_config):
    """A fold with last.pt but no metrics.json (killed after an epoch) is to resume: --plan
    prints its command alone, --collect names it."""
    cv = scheduled["cv"]
    metrics = cv.fold(1).metrics_file
    metrics.rename(metrics.with_suffix(".moved"))
    try:
        planned = _cv(cv_config, scheduled["out"], "--plan")
        collected = _cv(cv_config, scheduled["out"], "--collect")
    finally:
        metrics.with_suffix(".moved").rename(metrics)
    assert planned[0] == 0 and planned[1] == f"medseg compare-run {shlex.quote(str(cv.fold(1).path))}\n"
    assert "1 finished, 1 to run" in planned[2]
    assert collected[0] == 2 and "1 of 2 folds unfinished: fold_1 (interrupted)" in collected[2]


def test_a_diverged_fold_is_named_by_collect(scheduled, cv_config):
    """A fold the divergence guard stopped is finished for compare, but no ensemble member."""
    record = scheduled["cv"].fold(0).compare_record
    before = record.read_text()
    record.write_text(json.dumps({**json.loads(before), "diverged": "loss not finite at epoch 1"}))
    try:
        code, _, err = _cv(cv_config, scheduled["out"], "--collect")
    finally:
        record.write_text(before)
    assert code == 2 and "1 of 2 folds unfinished: fold_0 (diverged: remove its folder" in err


def test_a_fold_split_that_is_not_the_folds_is_refused(scheduled, cv_config):
    split_file = scheduled["cv"].fold(1).split_file
    before = split_file.read_text()
    split = json.loads(before)
    split["train"], split["val"] = split["val"], split["train"]
    split_file.write_text(json.dumps(split))
    try:
        planned = _cv(cv_config, scheduled["out"], "--plan")
        collected = _cv(cv_config, scheduled["out"], "--collect")
    finally:
        split_file.write_text(before)
    for code, _, err in (planned, collected):
        assert code == 2 and err == f"medseg: error: {split_file}: not fold 1's split in folds.json; " \
            "remove that fold folder to train it anew\n"
