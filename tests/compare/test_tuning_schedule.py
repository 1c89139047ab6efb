"""``medseg compare --tune`` on a job scheduler: ``--plan`` prints the trial runs, then (the
same ``--plan`` again, once they finished) records the trials and prints the evaluation runs;
``compare-run`` trains one run; ``--collect`` writes the report when everything finished.
Tiny PCam config: 2 methods x 2 trials x 2 tuning seeds, then 1 evaluation seed."""

from __future__ import annotations

import json
import shlex

import optuna
import pytest
import yaml

import medseg.engine
import medseg.tasks
from medseg.cli.main import main
from medseg.compare.tuning import tune_settings
from medseg.compare.tuning_run import (
    STUDY_FILE,
    TUNING_DIR,
    finished_trials,
    open_study,
    run_tuned_comparison,
    study_name,
    study_storage,
)
from medseg.config import load_config
from medseg.runs import RunFolder
from tests.compare.conftest import tiny_config

METHODS = ["adam", "adam+znorm"]
SETTINGS = {"trials": 2, "seeds": [1000, 1001]}


@pytest.fixture(scope="module")
def tuned_config(tiny_pcam, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tuned.yaml"
    path.write_text(yaml.safe_dump({**tiny_config(tiny_pcam), "tune": SETTINGS}))
    return path


def _compare(config, out, *extra):
    return main(["compare", str(config), "--methods", ",".join(METHODS), "--seeds", "1",
                 "--tune", "--out", str(out), *extra])


def _commands(text):
    return [shlex.split(line) for line in text.splitlines()]


def _trials(storage, out, url=None):
    """method -> {point: (params, value)} of the finished trials."""
    return {method: {number: (trial.params, trial.value) for number, trial in
                     finished_trials(open_study(storage, study_name(method, out, url))).items()}
            for method in METHODS}


def _lr(run_dir) -> float:
    return json.loads(RunFolder(run_dir).compare_record.read_text())["config"]["optim"]["lr"]


def _must_not_train(*args, **kwargs):
    raise AssertionError("a finished run was trained again")


def test_plan_run_plan_run_collect_tunes_as_one_process_does(
        tuned_config, tmp_path, capsys, monkeypatch):
    out = tmp_path / "tuned"
    # phase 1: one command per trial run; nothing trains, nothing is recorded yet
    assert _compare(tuned_config, out, "--plan") == 0
    planned = capsys.readouterr()
    trial_runs = [out / TUNING_DIR / f"trial{number:03d}" / "runs" / method / f"seed{seed}"
                  for method in METHODS for number in (0, 1) for seed in (1000, 1001)]
    assert _commands(planned.out) == [["medseg", "compare-run", str(d)] for d in trial_runs]
    assert "8 trial runs to do" in planned.err and "run this --plan again" in planned.err
    assert not any((d / "last.pt").exists() for d in trial_runs)
    storage = study_storage(out)
    assert _trials(storage, out) == {method: {} for method in METHODS}
    lrs = {method: sorted({_lr(d) for d in trial_runs if f"/{method}/" in str(d)}) for method in METHODS}
    assert lrs["adam"] == lrs["adam+znorm"] and lrs["adam"][0] != lrs["adam"][1]  # shared points

    assert _compare(tuned_config, out, "--collect") == 2
    refused = capsys.readouterr().err
    assert refused.count("\n") == 1 and "8 tuning runs unfinished" in refused

    for command in reversed(_commands(planned.out)[1:]):  # any order, as a job array would
        assert main(command[1:]) == 0
    # one run of adam's first trial left: that trial stays open (its other run finished),
    # the others are recorded, no evaluation yet
    assert _compare(tuned_config, out, "--plan") == 0
    assert _commands(capsys.readouterr().out) == _commands(planned.out)[:1]
    recorded = _trials(study_storage(out), out)
    assert sorted(recorded["adam"]) == [1] and sorted(recorded["adam+znorm"]) == [0, 1]
    assert main(_commands(planned.out)[0][1:]) == 0

    # phase 2: the same --plan records the last trial and prints the evaluation runs
    assert _compare(tuned_config, out, "--plan") == 0
    planned = capsys.readouterr()
    evaluation_runs = [out / "runs" / method / "seed0" for method in METHODS]
    assert _commands(planned.out) == [["medseg", "compare-run", str(d)] for d in evaluation_runs]
    assert "every trial recorded; 2 evaluation runs" in planned.err
    recorded = _trials(study_storage(out), out)
    for method, run_dir in zip(METHODS, evaluation_runs, strict=True):
        best = max(recorded[method].values(), key=lambda trial: trial[1])
        assert _lr(run_dir) == best[0]["optim.lr"]  # the best validation trial's settings
    # planning again records no trial twice and plans the same runs
    assert _compare(tuned_config, out, "--plan") == 0
    assert _commands(capsys.readouterr().out) == _commands(planned.out)
    assert all(len(open_study(study_storage(out), m).trials) == 2 for m in METHODS)

    assert _compare(tuned_config, out, "--collect") == 2
    assert "2 evaluation runs unfinished: adam seed 0 (not started)" in capsys.readouterr().err
    for command in _commands(planned.out):
        assert main(command[1:]) == 0
    monkeypatch.setattr(medseg.engine, "train", _must_not_train)
    assert _compare(tuned_config, out, "--collect") == 0
    assert "tuning.csv" in capsys.readouterr().out
    report = (out / "results.md").read_text()
    assert "## Tuning" in report and "2 trials per method x 2 methods" in report
    assert (out / "lr_sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert _compare(tuned_config, out, "--plan") == 0  # all done: nothing left to print
    assert capsys.readouterr().out == ""
    monkeypatch.undo()

    # the same tuning in one process, its studies in a database: the same trials and choice
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
    in_process = tmp_path / "in_process"
    rows = run_tuned_comparison(load_config(tuned_config), METHODS, [0], in_process,
                                tune_settings(SETTINGS), storage_url=url)
    assert not (in_process / TUNING_DIR / STUDY_FILE).exists()
    assert optuna.study.get_all_study_names(url) == ["in_process/adam", "in_process/adam+znorm"]
    assert _trials(study_storage(in_process, url), in_process, url) == _trials(study_storage(out), out)
    assert [_lr(row["run_dir"]) for row in rows] == [_lr(d) for d in evaluation_runs]


def test_storage_is_refused_without_tune_and_a_bad_url_in_one_line(tuned_config, tmp_path, capsys):
    code = main(["compare", str(tuned_config), "--methods", "adam", "--seeds", "1",
                 "--storage", "sqlite:///x.db", "--out", str(tmp_path / "a"), "--plan"])
    assert code == 2 and "--storage: the tuning studies' database applies only with --tune" in \
        capsys.readouterr().err
    code = _compare(tuned_config, tmp_path / "b", "--storage", "nosuchdb://x", "--plan")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--storage nosuchdb://x: cannot open the database" in err
