"""End to end: real training runs of the comparison on a tiny PCam-format dataset."""

from __future__ import annotations

import csv
import json
import math
import socket

import numpy as np
import pytest
import torch

import medseg.engine.trainer
import medseg.models
from medseg.cli.main import main
from medseg.compare import run_comparison
from medseg.compare.report import csv_columns
from medseg.config import load_config
from medseg.engine import TrainCallback
from medseg.errors import MedsegError
from medseg.models.deep_resnet import DeepResNet

from .conftest import METHODS, SEEDS
from .test_plots import assert_png


def _read_csv(path):
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_comparison_writes_csv_markdown_and_plots(comparison):
    out, rows = comparison["out"], comparison["rows"]
    columns, lines = _read_csv(out / "results.csv")
    assert len(lines) == 4
    assert columns == csv_columns(rows)
    for column in ("method", "seed", "test_accuracy", "test_auc", "best_epoch",
                   "best_val_metric", "epochs_to_target", "wall_time_s"):
        assert column in columns
    assert [(line["method"], int(line["seed"])) for line in lines] == [
        ("adam", 0), ("adam+znorm", 0), ("adam", 1), ("adam+znorm", 1)]
    for line in lines:
        assert 0.0 <= float(line["test_accuracy"]) <= 1.0
        assert float(line["wall_time_s"]) > 0
        assert line["val_metric"] == "val_auc" and int(line["best_epoch"]) == 1
    # the default target is 90% of the best validation AUC over all runs
    best = max(float(line["best_val_metric"]) for line in lines)
    assert float(lines[0]["target_metric"]) == pytest.approx(0.9 * best)
    report = (out / "results.md").read_text()
    assert "Seeds: 2 (0, 1)" in report and "Each method against `adam`" in report
    assert "| `adam+znorm` | test AUC | 2 |" in report
    assert "| `adam+znorm` | epochs to target | 2 |" in report
    assert "Best checkpoint chosen on validation AUC" in report
    assert not list(out.glob(".tmp-*"))  # every file was written whole, then renamed
    for name in ("val_metric.png", "train_loss.png", "grad_flow.png", "time_to_target.png"):
        assert_png(out / name)
        assert f"({name})" in report


def test_same_seed_gives_the_same_initial_weights_across_methods(comparison):
    weights = comparison["initial_weights"]  # seed-major: (0 adam), (0 znorm), (1 adam), ...
    assert len(weights) == 4

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    assert same(weights[0], weights[1]) and same(weights[2], weights[3])
    assert not same(weights[0], weights[2])


def test_gradient_norms_are_recorded_before_and_after_the_transform(comparison):
    shapes = {name: p.shape for name, p in DeepResNet(3, depth=2, width=4).named_parameters()}
    for method in METHODS:
        path = comparison["out"] / "runs" / method / "seed0" / "grad_stats.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2]  # log_every 1, 2 steps
        for record in records:
            assert record["layers"] == list(shapes)
            for name, before, after in zip(record["layers"], record["before"], record["after"],
                                           strict=True):
                if method == "adam+znorm" and len(shapes[name]) >= 2:
                    # a z-scored tensor (mean 0, population std 1) has norm sqrt(numel)
                    assert after == pytest.approx(math.sqrt(shapes[name].numel()), rel=1e-3)
                else:  # Adam and ZNorm's untouched biases: the optimizer saw the raw gradient
                    assert after == pytest.approx(before, rel=1e-6)


def test_rerun_skips_finished_runs(comparison, tiny_config_file, monkeypatch, capsys):
    out = comparison["out"]
    metrics = sorted(out.glob("runs/*/seed*/metrics.json"))
    assert len(metrics) == 4
    mtimes = [path.stat().st_mtime_ns for path in metrics]

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(medseg.engine, "train", must_not_train)
    code = main(["compare", str(tiny_config_file), "--methods", ",".join(METHODS),
                 "--seeds", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.count("finished earlier, skipped") == 4
    assert "adam+znorm" in captured.out and "results.md" in captured.out
    assert captured.out.splitlines()[0].split()[-2:] == ["accuracy", "AUC"]
    assert [path.stat().st_mtime_ns for path in metrics] == mtimes
    _, lines = _read_csv(out / "results.csv")
    assert [float(line["test_auc"]) for line in lines] == [row["test_auc"] for row in comparison["rows"]]


def test_same_method_and_seed_reproduce_exactly(comparison, tiny_config_file, tmp_path):
    rows = run_comparison(load_config(tiny_config_file), ["adam+znorm"], [1], tmp_path)
    original = next(row for row in comparison["rows"]
                    if row["method"] == "adam+znorm" and row["seed"] == 1)
    tests = {k: v for k, v in rows[0].items() if k.startswith("test_") or k == "best_val_metric"}
    assert tests == {k: original[k] for k in tests}
    assert (tmp_path / "runs/adam+znorm/seed1/history.csv").read_text().split("\n")[1].split(",")[:3] \
        == (comparison["out"] / "runs/adam+znorm/seed1/history.csv").read_text().split("\n")[1].split(",")[:3]


def test_a_changed_config_is_refused_not_overwritten(comparison, tiny_config_file):
    metrics = comparison["out"] / "runs/adam/seed0/metrics.json"
    before = metrics.read_bytes()
    cfg = load_config(tiny_config_file, ["train.epochs=2"])
    with pytest.raises(MedsegError, match=r"seed0: holds a run with a different config \(train.epochs: 1 != 2\)"):
        run_comparison(cfg, METHODS, SEEDS, comparison["out"])
    assert metrics.read_bytes() == before


class _StopAfterFirstEpoch(TrainCallback):
    def on_epoch_end(self, info):
        raise KeyboardInterrupt


def test_an_interrupted_run_is_resumed(tiny_config_file, tmp_path, monkeypatch):
    cfg = load_config(tiny_config_file, ["train.epochs=2"])
    train = medseg.engine.train
    calls = []

    def interrupted_train(run_cfg, *, resume=False, callbacks=()):
        calls.append(resume)
        extra = [_StopAfterFirstEpoch()] if len(calls) == 1 else []
        return train(run_cfg, resume=resume, callbacks=[*callbacks, *extra])

    monkeypatch.setattr(medseg.engine, "train", interrupted_train)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(cfg, ["adam+znorm"], [0], tmp_path / "a")
    run_dir = tmp_path / "a/runs/adam+znorm/seed0"
    assert (run_dir / "last.pt").exists() and not (run_dir / "metrics.json").exists()
    resumed = run_comparison(cfg, ["adam+znorm"], [0], tmp_path / "a")
    assert calls == [False, True]
    straight = run_comparison(cfg, ["adam+znorm"], [0], tmp_path / "b")
    keys = [k for k in straight[0] if k.startswith("test_")]
    assert [resumed[0][k] for k in keys] == [straight[0][k] for k in keys]
    steps = [json.loads(line)["step"] for line in (run_dir / "grad_stats.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3, 4]


@pytest.mark.slow
def test_runs_spread_over_devices_match_sequential_runs(comparison, tiny_config_file, tmp_path):
    # No GPU here: CUDA_VISIBLE_DEVICES is set per worker process and training falls back to
    # the CPU, which exercises the scheduling and the worker processes.
    rows = run_comparison(load_config(tiny_config_file), ["adam"], SEEDS, tmp_path, gpus=[0, 1])
    original = [row for row in comparison["rows"] if row["method"] == "adam"]
    assert [row["test_auc"] for row in rows] == [row["test_auc"] for row in original]
    assert np.all(np.asarray([row["wall_time_s"] for row in rows]) > 0)
    assert (tmp_path / "runs/adam/seed1/grad_stats.jsonl").exists()


def test_adam_bgn_trains_adam_on_the_bgn_model_and_the_overlap_is_reported(tiny_config_file,
                                                                            tmp_path):
    # needs the engine loop to probe the last micro-batch of each logged step (StepInfo.overlap)
    run_comparison(load_config(tiny_config_file), ["adam", "adam+bgn"], [0], tmp_path)
    record = json.loads((tmp_path / "runs/adam+bgn/seed0/compare_run.json").read_text())
    assert record["config"]["model"]["bgn"] is True and record["config"]["optim"]["name"] == "adam"
    plain = json.loads((tmp_path / "runs/adam/seed0/compare_run.json").read_text())
    assert plain["config"]["model"]["bgn"] is False
    # same initial weights and batch: the nodes alone change the first step's gradients
    first = {method: json.loads((tmp_path / f"runs/{method}/seed0/grad_stats.jsonl")
                                .read_text().splitlines()[0]) for method in ("adam", "adam+bgn")}
    assert first["adam"]["layers"] == first["adam+bgn"]["layers"]
    assert first["adam"]["before"][-1] == pytest.approx(first["adam+bgn"]["before"][-1])  # head
    assert first["adam"]["before"][0] != pytest.approx(first["adam+bgn"]["before"][0])  # stem
    columns, lines = _read_csv(tmp_path / "overlap.csv")
    assert columns == ["method", "seed", "step", "block", "skip_norm", "branch_norm",
                       "total_norm", "cosine"]
    assert [(line["method"], line["step"], line["block"]) for line in lines] == [
        (method, step, block) for method in ("adam", "adam+bgn") for step in ("1", "2")
        for block in ("features.1", "features.3")]
    assert all(float(line["total_norm"]) > 0 for line in lines)
    report = (tmp_path / "results.md").read_text()
    assert "`adam+bgn`: `adam` on the model with `model.bgn=true`" in report
    assert "(overlap.png)" in report
    assert_png(tmp_path / "overlap.png")


def test_a_diverged_run_is_recorded_labelled_and_left_out(tiny_config_file, tmp_path):
    """adam at lr 1e6 trips the engine's divergence guard: the comparison goes on, the run is
    listed as diverged, and no statistic uses it; a rerun does not train it again."""
    out = tmp_path / "compare"
    overrides = {"adam": ["optim.lr=1e6"]}
    rows = run_comparison(load_config(tiny_config_file), METHODS, [0], out, method_overrides=overrides)
    by_method = {row["method"]: row for row in rows}
    assert by_method["adam"]["status"] == "diverged" and "diverged" in by_method["adam"]["note"]
    assert not any(key.startswith("test_") for key in by_method["adam"])
    assert by_method["adam+znorm"]["status"] == "ok" and "test_auc" in by_method["adam+znorm"]
    report = (out / "results.md").read_text()
    assert "## Runs left out" in report and "| `adam` | 0 | diverged |" in report
    assert "| `adam` | 0 / 1 |" in report
    assert "| `adam+znorm` | test AUC | 0 | n/a |" in report  # nothing paired with a diverged run
    _, lines = _read_csv(out / "results.csv")
    assert [line["status"] for line in lines] == ["diverged", "ok"]
    record = json.loads((out / "runs" / "adam" / "seed0" / "compare_run.json").read_text())
    again = run_comparison(load_config(tiny_config_file), METHODS, [0], out, method_overrides=overrides)
    assert json.loads((out / "runs" / "adam" / "seed0" / "compare_run.json").read_text()) == record
    assert [row["status"] for row in again] == ["diverged", "ok"]


def test_a_comparison_folder_in_use_is_refused_before_anything_is_written(tiny_config_file, tmp_path):
    out = tmp_path / "compare"
    out.mkdir()
    holder = {"pid": 1, "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"}
    (out / ".medseg.lock").write_text(json.dumps(holder))  # pid 1 always runs
    with pytest.raises(MedsegError, match=rf"{out}: in use by another medseg process \(pid 1 on "):
        run_comparison(load_config(tiny_config_file), METHODS, [0], out)
    assert sorted(path.name for path in out.iterdir()) == [".medseg.lock"]
