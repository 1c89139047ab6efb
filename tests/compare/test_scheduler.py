"""The job-scheduler path: ``compare --plan`` prints one command per run and trains nothing,
``compare-run`` trains exactly one run, ``compare --collect`` reports only when all finished."""

from __future__ import annotations

import csv
import json
import shlex

import pytest

import medseg.engine
from medseg.cli.main import main

from .conftest import METHODS, SEEDS


def _compare(config, out, *extra):
    return main(["compare", str(config), "--methods", ",".join(METHODS), "--seeds",
                 str(len(SEEDS)), "--out", str(out), *extra])


def _commands(text):
    return [shlex.split(line) for line in text.splitlines()]


def test_plan_run_collect_gives_the_sequential_comparisons_results(
    comparison, tiny_config_file, tmp_path, capsys, monkeypatch
):
    # a folder name a shell would act on: the printed commands must quote it
    out = tmp_path / "grid $(touch pwned); x"
    assert _compare(tiny_config_file, out, "--plan") == 0
    planned = capsys.readouterr()
    commands = _commands(planned.out)
    run_dirs = [out / "runs" / method / f"seed{seed}" for seed in SEEDS for method in METHODS]
    assert commands == [["medseg", "compare-run", str(run_dir)] for run_dir in run_dirs]
    assert "4 runs planned" in planned.err
    for run_dir in run_dirs:  # recorded, not trained
        assert json.loads((run_dir / "compare_run.json").read_text())["seed"] in SEEDS
        assert not (run_dir / "last.pt").exists()
    assert not (tmp_path / "pwned").exists()

    assert _compare(tiny_config_file, out, "--collect") == 2
    refused = capsys.readouterr().err
    assert refused.count("\n") == 1 and "4 of 4 runs unfinished" in refused
    assert "adam seed 0 (not started)" in refused and "adam+znorm seed 1 (not started)" in refused
    assert not (out / "results.csv").exists()

    for command in reversed(commands):  # any order, as a job array would
        assert main(command[1:]) == 0
    # a run that finished is not trained again when its command runs twice
    monkeypatch.setattr(medseg.engine, "train", _must_not_train)
    assert main(commands[0][1:]) == 0
    assert "nothing to do" in capsys.readouterr().err

    assert _compare(tiny_config_file, out, "--collect") == 0
    assert "learned" in capsys.readouterr().out.splitlines()[0]  # the per-method summary
    with (out / "results.csv").open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["method"], float(line["test_auc"])) for line in lines] == [
        (row["method"], row["test_auc"]) for row in comparison["rows"]]
    assert "Each method against `adam`" in (out / "results.md").read_text()
    # once everything finished, planning prints no command
    assert _compare(tiny_config_file, out, "--plan") == 0
    assert capsys.readouterr().out == ""


def _must_not_train(*args, **kwargs):
    raise AssertionError("a finished run was trained again")


def test_collect_names_an_interrupted_run(tiny_config_file, tmp_path, capsys):
    out = tmp_path / "grid"
    assert _compare(tiny_config_file, out, "--plan") == 0
    commands = _commands(capsys.readouterr().out)
    for command in commands[1:]:
        assert main(command[1:]) == 0
    (out / "runs/adam/seed0/last.pt").write_bytes(b"")  # as a killed run leaves it
    assert _compare(tiny_config_file, out, "--collect") == 2
    err = capsys.readouterr().err
    assert "1 of 4 runs unfinished: adam seed 0 (interrupted)" in err


def test_compare_run_refuses_a_folder_that_was_not_planned(tmp_path, capsys):
    assert main(["compare-run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medseg: error: {tmp_path}: no compare_run.json; plan the comparison")


def test_standard_methods_are_the_nine_the_report_studies(tiny_config_file, tmp_path, capsys):
    code = main(["compare", str(tiny_config_file), "--methods", "standard", "--seeds", "1",
                 "--out", str(tmp_path), "--plan"])
    assert code == 0
    methods = [command[2].split("/runs/")[1].split("/")[0] for command in
               _commands(capsys.readouterr().out)]
    assert methods == ["adam", "adamw", "adam+gc", "adam+clip", "adam+znorm", "adam+bgn", "lamb",
                       "adam+agc", "adam+blocknorm"]


@pytest.mark.parametrize("flags", [["--plan", "--collect"]])
def test_plan_and_collect_exclude_each_other(tiny_config_file, tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _compare(tiny_config_file, tmp_path, *flags)
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
