"""``medseg compare --tune`` end to end on the tiny PCam config: 2 methods x 2 trials x 1
tuning seed, then 1 evaluation seed at each method's chosen settings (1 epoch, 2 steps)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

import medseg.compare.execution
import medseg.compare.tuning_run
import medseg.tasks
from medseg.cli.main import main
from medseg.compare.execution import execute_run
from medseg.compare.tuning import tune_settings
from medseg.compare.tuning_run import (
    FAILURE,
    RUN_DIRS,
    finished_trials,
    open_study,
    run_tuned_comparison,
    study_storage,
)
from medseg.config import load_config
from medseg.errors import MedsegError
from medseg.runs import RunFolder
from tests.compare.conftest import tiny_config

METHODS = ["adam", "adam+znorm"]
SETTINGS = {"trials": 2, "seeds": [1000]}


def studies(out):
    storage = study_storage(out)
    return {method: finished_trials(open_study(storage, method)) for method in METHODS}


def train_with(monkeypatch, execute_run) -> None:
    """Train every run of a tuned comparison in this process with ``execute_run``: the trials'
    (tuning_run) and the evaluation runs' (execution.run_pending)."""
    monkeypatch.setattr(medseg.compare.tuning_run, "execute_run", execute_run)
    monkeypatch.setattr(medseg.compare.execution, "execute_run", execute_run)


def recorded_lr(run_dir) -> float:
    return json.loads(RunFolder(run_dir).compare_record.read_text())["config"]["optim"]["lr"]


@pytest.fixture(scope="module")
def tuned(tiny_config_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
        rows = run_tuned_comparison(load_config(tiny_config_file), METHODS, [0], out,
                                    tune_settings(SETTINGS))
    return {"out": out, "rows": rows}


def test_every_method_trains_at_the_same_trial_points(tuned):
    found = studies(tuned["out"])
    assert sorted(found["adam"]) == sorted(found["adam+znorm"]) == [0, 1]
    for number in (0, 1):
        adam, znorm = found["adam"][number], found["adam+znorm"][number]
        assert adam.params == znorm.params
        # the runs trained at the point: the recorded configs hold its lr
        lrs = {recorded_lr(run_dir) for t in (adam, znorm) for run_dir in t.user_attrs[RUN_DIRS]}
        assert lrs == {adam.params["optim.lr"]}
    assert found["adam"][0].params != found["adam"][1].params


def test_the_chosen_settings_are_those_of_the_best_validation_trial(tuned):
    for method, trials in studies(tuned["out"]).items():
        best = max(trials.values(), key=lambda t: (t.value, -t.number))
        rerun = next(row for row in tuned["rows"] if row["method"] == method)
        assert recorded_lr(rerun["run_dir"]) == best.params["optim.lr"]
        assert rerun["seed"] == 0 and "tuning" not in rerun["run_dir"]


def test_the_report_names_the_tuning_and_writes_its_table_and_plots(tuned):
    out = tuned["out"]
    report = (out / "results.md").read_text()
    assert "## Tuning" in report and "`optim.lr` log-uniform [1e-05, 0.1]" in report
    assert "Tuning seeds: 1000" in report and "2 trials per method x 2 methods" in report
    assert "90% of the tuned reference `adam`'s best trial score" in report
    assert "nan" not in report.split("## Tuning")[1]
    with (out / "tuning.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["trial"]) for r in rows] == [
        ("adam", "1"), ("adam", "2"), ("adam+znorm", "1"), ("adam+znorm", "2")]
    assert sum(int(r["chosen"]) for r in rows) == 2
    for name in ("lr_sensitivity.png", "budget.png", "results.csv"):
        assert (out / name).read_bytes()[:4] in (b"\x89PNG", b"meth")


def test_a_rerun_retrains_nothing_and_counts_no_trial_twice(tuned, tiny_config_file, monkeypatch):
    def no_training(spec, resume):
        raise AssertionError(f"{spec.label} trained again")

    train_with(monkeypatch, no_training)
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
    before = studies(tuned["out"])
    run_tuned_comparison(load_config(tiny_config_file), METHODS, [0], tuned["out"],
                         tune_settings(SETTINGS))
    assert studies(tuned["out"]) == before
    assert all(len(open_study(study_storage(tuned["out"]), m).trials) == 2 for m in METHODS)


def test_a_killed_tuning_resumes_without_retraining_finished_trials(tiny_config_file, tmp_path, monkeypatch):
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
    execute_run = medseg.compare.tuning_run.execute_run
    trained = []

    def killed_at_the_third(spec, resume):
        if len(trained) == 2:
            raise RuntimeError("killed")
        trained.append(str(spec.run_dir))
        return execute_run(spec, resume)

    cfg = load_config(tiny_config_file)
    train_with(monkeypatch, killed_at_the_third)
    with pytest.raises(RuntimeError, match="killed"):
        run_tuned_comparison(cfg, METHODS, [0], tmp_path, tune_settings(SETTINGS))
    failed = open_study(study_storage(tmp_path), "adam+znorm").trials
    assert [t.user_attrs[FAILURE] for t in failed] == ["error: killed"]  # recorded as failed

    def counting(spec, resume):
        trained.append(str(spec.run_dir))
        return execute_run(spec, resume)

    train_with(monkeypatch, counting)
    run_tuned_comparison(cfg, METHODS, [0], tmp_path, tune_settings(SETTINGS))
    assert len(trained) == len(set(trained)) == 6  # 4 trial runs and 2 evaluation runs, once each
    assert sorted(studies(tmp_path)["adam+znorm"]) == [0, 1]


@pytest.mark.slow
def test_trials_spread_over_devices_record_what_sequential_trials_record(tuned, tiny_config_file, tmp_path,
                                                                         monkeypatch):
    # No GPU here: CUDA_VISIBLE_DEVICES is set per worker process and training falls back to
    # the CPU, which exercises the scheduling, the worker processes and the recording.
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
    rows = run_tuned_comparison(load_config(tiny_config_file), METHODS, [0], tmp_path,
                                tune_settings(SETTINGS), gpus=[0, 1])
    spread, sequential = studies(tmp_path), studies(tuned["out"])
    for method in METHODS:
        assert {n: (t.params, t.value) for n, t in spread[method].items()} == \
            {n: (t.params, t.value) for n, t in sequential[method].items()}
    assert [(row["method"], row["test_auc"]) for row in rows] == \
        [(row["method"], row["test_auc"]) for row in tuned["rows"]]
    assert all(RunFolder(row["run_dir"]).worker_log.exists() for row in rows)  # ran in workers


def test_a_run_failing_on_a_device_records_its_trial_as_failed_and_the_others_as_done(
        tiny_config_file, tmp_path, monkeypatch):
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
    order = []

    def one_fails(pending, devices, progress):  # as run_pending on devices: the rest still run
        order.extend(spec.method for spec, _ in pending)
        for spec, resume in pending[1:]:
            execute_run(spec, resume)
        raise MedsegError(f"1 run(s) failed: {pending[0][0].label}")

    monkeypatch.setattr(medseg.compare.tuning_run, "run_pending", one_fails)
    with pytest.raises(MedsegError, match="1 run"):
        run_tuned_comparison(load_config(tiny_config_file), METHODS, [0], tmp_path,
                             tune_settings(SETTINGS), gpus=[0, 1])
    assert order == ["adam", "adam", "adam+znorm", "adam+znorm"]  # every method's trials at once
    trials = {m: open_study(study_storage(tmp_path), m).trials for m in METHODS}
    failed = [t for t in trials["adam"] if t.user_attrs.get(FAILURE)]
    assert len(failed) == 1 and failed[0].user_attrs[FAILURE].startswith("error: 1 run(s) failed")
    assert sorted(studies(tmp_path)["adam"]) == [1] and sorted(studies(tmp_path)["adam+znorm"]) == [0, 1]


def test_cli_reads_the_tune_section_and_refuses_shared_seeds_in_one_line(tiny_pcam, tmp_path, capsys):
    config = tmp_path / "tuned.yaml"
    config.write_text(yaml.safe_dump({**tiny_config(tiny_pcam), "tune": {"trials": 3, "seeds": [0]}}))
    code = main(["compare", str(config), "--methods", "adam", "--seeds", "2", "--tune",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "tune.seeds: 0 also is an evaluation seed" in err
    assert not (tmp_path / "out").exists()
    code = main(["compare", str(config), "--methods", "adam", "--seeds", "2", "--tune",
                 "--set", "tune.trials=0", "--out", str(tmp_path / "out")])
    assert code == 2 and "tune.trials: 0 is not from 1" in capsys.readouterr().err
    assert load_config(config).optim.lr == 1e-3  # training configs leave the section out
