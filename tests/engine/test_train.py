"""End-to-end training on tiny data: run folder, history, checkpoints, metrics, hooks."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from medseg.config import config_from_dict, load_config
from medseg.engine import StepInfo, TrainCallback, load_checkpoint, train
from medseg.engine import trainer as trainer_module
from medseg.errors import CheckpointError, ConfigError, MedsegError
from medseg.metrics.measures import measure_names
from medseg.runs import RunFolder
from tests.support import LGG_SLICES as SLICES_PER_PATIENT
from tests.support import PCAM_SIZES


def test_run_folder_holds_every_output(trained_lgg):
    run_dir = trained_lgg.run_dir
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "split.json", "history.csv", "last.pt", "best.pt", "metrics.json"} <= names
    assert any(name.startswith("events.out.tfevents.") for name in names)
    assert not [name for name in names if name.endswith(".tmp")]
    saved = load_config(run_dir / "config.yaml")
    assert saved.to_dict() == load_checkpoint(run_dir / "last.pt")["config"]
    split = json.loads((run_dir / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [3, 1, 1]


def test_history_has_one_row_per_epoch(trained_lgg):
    with open(trained_lgg.run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0]) == ["epoch", "train_loss", "val_dice", "val_iou", "val_patient_dice",
                             "val_empty_fp_rate", "lr", "images_per_s", "seconds"]
    for row, result_row in zip(rows, trained_lgg.history, strict=True):
        assert float(row["val_dice"]) == pytest.approx(result_row["val_dice"])
        assert 0.0 <= float(row["val_dice"]) <= 1.0
        assert float(row["images_per_s"]) > 0 and math.isfinite(float(row["train_loss"]))
    # warmup over epoch 1 (3 steps: lr/3, 2lr/3, lr), then cosine: last step of epoch 2 at
    # 0.5 * (1 + cos(pi * 2/3)) * lr
    assert float(rows[0]["lr"]) == pytest.approx(1e-3)
    assert float(rows[1]["lr"]) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 3)))


def test_best_checkpoint_is_the_best_validation_epoch(trained_lgg):
    dices = [row["val_dice"] for row in trained_lgg.history]
    assert trained_lgg.best_epoch == dices.index(max(dices)) + 1
    assert trained_lgg.best_metric == max(dices)
    best = torch.load(trained_lgg.run_dir / "best.pt", weights_only=True)
    last = torch.load(trained_lgg.run_dir / "last.pt", weights_only=True)
    assert best["epoch"] == trained_lgg.best_epoch and last["epoch"] == 2
    assert best["task"] == "segmentation" and best["metrics"]["val_dice"] == max(dices)
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "config", "history",
                "medseg_version", "created", "global_step"):
        assert key in last
    assert last["global_step"] == 6 and len(last["history"]) == 2


def test_best_checkpoint_stays_on_an_earlier_better_epoch(tiny_lgg, tmp_path, monkeypatch, lgg_config):
    """Epoch 2 validates worse than epoch 1: best.pt, best_epoch and metrics.json must stay
    on epoch 1's weights while last.pt moves on to epoch 2."""
    real_score_loader = trainer_module.score_loader
    val_dice = iter([0.9, 0.1])  # epochs 1 and 2; the test split is then scored for real

    def score_loader(*args, **kwargs):
        metrics = real_score_loader(*args, **kwargs)
        return {**metrics, "dice": next(val_dice, metrics["dice"])}

    weights, is_best = {}, {}

    class Snapshot(TrainCallback):
        def on_epoch_end(self, info):
            weights[info.epoch] = {k: v.detach().clone() for k, v in info.model.state_dict().items()}
            is_best[info.epoch] = info.is_best

    monkeypatch.setattr(trainer_module, "score_loader", score_loader)
    run_dir = tmp_path / "run"
    result = train(lgg_config(tiny_lgg, run_dir, max_steps_per_epoch=1), callbacks=[Snapshot()])

    assert [row["val_dice"] for row in result.history] == [0.9, 0.1]
    assert is_best == {1: True, 2: False}
    assert (result.best_epoch, result.best_metric) == (1, 0.9)
    changed = [k for k in weights[1] if not torch.equal(weights[1][k], weights[2][k])]
    assert changed  # epoch 2 trained: its weights differ from epoch 1's
    best, last = load_checkpoint(run_dir / "best.pt"), load_checkpoint(run_dir / "last.pt")
    assert (best["epoch"], best["best_epoch"], best["metrics"]["val_dice"]) == (1, 1, 0.9)
    assert (last["epoch"], last["best_epoch"], last["metrics"]["val_dice"]) == (2, 1, 0.1)
    for name, tensor in weights[1].items():
        assert torch.equal(best["model"][name], tensor), name
    for name, tensor in weights[2].items():
        assert torch.equal(last["model"][name], tensor), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["checkpoint"] == "best.pt" and metrics["epoch"] == 1
    assert result.test_metrics["epoch"] == 1


@pytest.mark.parametrize(("val_dice", "best_epoch", "is_best"), [
    ((0.5, 0.5), 1, {1: True, 2: False}),  # a tie keeps the earlier epoch
    ((math.nan, 0.3), 2, {1: True, 2: True}),  # a NaN is best only until an epoch has a number
], ids=["tie", "nan_first"])
def test_best_checkpoint_follows_the_one_best_epoch_rule(tiny_lgg, tmp_path, monkeypatch, lgg_config,
                                                         val_dice, best_epoch, is_best):
    """best.pt, metrics.json and the comparison's reading of history.csv agree on the best
    epoch of medseg.runs.improves."""
    real_score_loader = trainer_module.score_loader
    scores = iter(val_dice)  # epochs 1 and 2; the test split is then scored for real

    def score_loader(*args, **kwargs):
        metrics = real_score_loader(*args, **kwargs)
        return {**metrics, "dice": next(scores, metrics["dice"])}

    seen = {}

    class IsBest(TrainCallback):
        def on_epoch_end(self, info):
            seen[info.epoch] = info.is_best

    monkeypatch.setattr(trainer_module, "score_loader", score_loader)
    run = RunFolder(tmp_path / "run")
    result = train(lgg_config(tiny_lgg, run.path, max_steps_per_epoch=1), callbacks=[IsBest()])

    assert seen == is_best
    assert (result.best_epoch, result.best_metric) == (best_epoch, val_dice[best_epoch - 1])
    assert load_checkpoint(run.best_checkpoint)["epoch"] == best_epoch
    assert load_checkpoint(run.last_checkpoint)["best_epoch"] == best_epoch
    assert json.loads(run.metrics_file.read_text())["epoch"] == best_epoch
    assert run.best_epoch("val_dice") == (best_epoch, val_dice[best_epoch - 1])


def test_metrics_json_scores_best_on_the_test_patients(trained_lgg):
    metrics = json.loads((trained_lgg.run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["checkpoint"] == "best.pt"
    assert metrics["n"] == SLICES_PER_PATIENT  # one test patient
    assert metrics["epoch"] == trained_lgg.best_epoch
    for key in ("dice", "iou", "patient_dice", "empty_fp_rate"):
        assert 0.0 <= metrics[key] <= 1.0
    split = json.loads((trained_lgg.run_dir / "split.json").read_text())
    assert list(metrics["per_patient"]) == split["test"]
    assert trained_lgg.test_metrics["dice"] == pytest.approx(metrics["dice"])


def test_metrics_json_holds_the_per_patient_measures(trained_lgg):
    """The test patients scored as medseg evaluate scores them: each patient's row and the
    summary of those rows (kaggle_3m: distances in px, volumes in voxels)."""
    metrics = json.loads((trained_lgg.run_dir / "metrics.json").read_text())
    rows = metrics["per_patient_measures"]
    assert list(rows) == list(metrics["per_patient"])
    summary = metrics["measure_summary"]
    assert set(measure_names()) >= set(summary) >= {"dice", "hd95_px", "lesion_f1"}
    for name, entry in summary.items():  # each the summary of the rows, NaN written as null
        defined = [row[name] for row in rows.values() if row[name] is not None]
        assert (entry["n"], entry["n_undefined"]) == (len(defined), len(rows) - len(defined))
        assert entry["mean"] == (pytest.approx(sum(defined) / len(defined)) if defined else None)
    assert all(row["ref_volume_voxels"] > 0 for row in rows.values())


def test_tensorboard_logs_grad_stats_and_callbacks_see_them(tiny_lgg, tmp_path, lgg_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Record(TrainCallback):
        def __init__(self):
            self.steps: list[StepInfo] = []

        def on_step_end(self, info):
            self.steps.append(info)

    record = Record()
    cfg = lgg_config(tiny_lgg, tmp_path / "run", epochs=1, log_grad_stats=True, log_every=2)
    train(cfg, callbacks=[record])
    assert [info.step for info in record.steps] == [1, 2, 3]
    logged = [info for info in record.steps if info.grad_stats_after is not None]
    assert [info.step for info in logged] == [2]
    before, after = logged[0].grad_stats_before, logged[0].grad_stats_after
    name = "encoder.conv1.weight"
    # ZNorm: the gradient Adam used is the z-score of the raw one
    assert after[name]["mean"] == pytest.approx(0.0, abs=1e-5)
    assert after[name]["std"] == pytest.approx(1.0, rel=1e-3)
    assert before[name]["std"] != pytest.approx(1.0, rel=1e-2)
    assert set(before) == set(after) == {n for n, p in build_named(cfg) if p.requires_grad}

    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0}).Reload()
    tags = events.Tags()["scalars"]
    assert f"grad_before/std/{name}" in tags and f"grad_after/std/{name}" in tags
    assert "train/loss" in tags and "val/dice" in tags
    assert [e.step for e in events.Scalars(f"grad_after/std/{name}")] == [2]
    # the residual blocks' gradient overlap, at the same steps, in the callback and TensorBoard
    assert [info.overlap is not None for info in record.steps] == [False, True, False]
    blocks = [row["block"] for row in logged[0].overlap]
    assert "encoder.layer1.0" in blocks
    first = logged[0].overlap[0]
    assert [e.value for e in events.Scalars(f"overlap/total_norm/{first['block']}")] == [
        pytest.approx(first["total_norm"])]


def build_named(cfg):
    from medseg.models import build_model

    return list(build_model(cfg.model, cfg.task).named_parameters())


def test_accumulation_bf16_channels_last_and_step_cap(tiny_lgg, tmp_path, lgg_config):
    steps = []

    class Count(TrainCallback):
        def on_step_end(self, info):
            steps.append((info.epoch, info.step))

    cfg = lgg_config(tiny_lgg, tmp_path / "run", epochs=2, accumulate=2, max_steps_per_epoch=1,
                     amp="bf16", channels_last="on", scheduler="step", lr_step_epochs=1, lr_gamma=0.5,
                     warmup_epochs=0)
    result = train(cfg, callbacks=[Count()])
    # 3 batches per epoch, capped at 1 optimizer step = 2 micro-batches
    assert steps == [(1, 1), (2, 2)]
    assert [row["lr"] for row in result.history] == pytest.approx([1e-3, 5e-4])
    assert all(math.isfinite(row["train_loss"]) for row in result.history)


def test_classification_run_on_pcam(trained_pcam):
    metrics = json.loads((trained_pcam.run_dir / "metrics.json").read_text())
    assert metrics["n"] == PCAM_SIZES["test"]
    for key in ("accuracy", "auc", "sensitivity", "specificity"):
        assert 0.0 <= metrics[key] <= 1.0
    assert trained_pcam.metric_name == "auc"
    assert "val_auc" in trained_pcam.history[0]
    assert not (trained_pcam.run_dir / "split.json").exists()
    assert load_checkpoint(trained_pcam.run_dir / "best.pt")["task"] == "classification"


def test_existing_run_is_not_overwritten(trained_lgg):
    last = trained_lgg.run_dir / "last.pt"
    before = last.read_bytes()
    cfg = load_config(trained_lgg.run_dir / "config.yaml")
    with pytest.raises(MedsegError, match="already holds a run"):
        train(cfg)
    assert last.read_bytes() == before


def test_resume_without_a_run_is_a_checkpoint_error(tiny_lgg, tmp_path, lgg_config):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(lgg_config(tiny_lgg, tmp_path / "empty"), resume=True)
    assert not (tmp_path / "empty").exists()


def test_unknown_optimizer_is_a_config_error(tiny_pcam, tmp_path, pcam_settings):
    settings = pcam_settings(tiny_pcam, tmp_path / "run")
    settings["optim"]["name"] = "adamax"
    with pytest.raises(ConfigError, match=r"optim\.name"):
        train(config_from_dict(settings))
