"""Run discovery and run cards, from run folders written in tmp_path."""

from __future__ import annotations

import json
import os

import pytest

from medseg.app.run_cards import find_runs, read_run
from medseg.config import config_from_dict, save_config
from medseg.errors import MedsegError


def write_run(folder, *, checkpoints=("best.pt", "last.pt"), mtime=None, epochs=3):
    folder.mkdir(parents=True)
    cfg = config_from_dict({"data": {"root": "demo_data/lgg", "image_size": 128},
                            "model": {"encoder": "resnet18"}, "train": {"epochs": epochs}})
    save_config(cfg, folder / "config.yaml")
    (folder / "history.csv").write_text(
        "epoch,train_loss,val_dice,val_iou,val_n_slices,lr\n"
        "1,0.9,0.50,0.40,30,0.001\n"
        "2,0.7,0.625,0.5,30,0.0005\n"
    )
    (folder / "metrics.json").write_text(json.dumps(
        {"split": "test", "epoch": 2, "n": 30, "dice": 0.75, "patient_dice": 0.8,
         "per_patient": {"A": 0.8}}))
    for name in checkpoints:
        (folder / name).write_bytes(b"weights")
        if mtime is not None:
            os.utime(folder / name, (mtime, mtime))
    return folder


def test_card_reads_config_history_and_metrics(tmp_path):
    card = read_run(write_run(tmp_path / "lgg_run"))
    assert card.task == "segmentation"
    assert card.checkpoint.name == "best.pt"
    assert card.epochs_done == 2
    assert card.validation_metrics == {"dice": 0.625, "iou": 0.5}  # last epoch, no counts
    assert card.test_metrics == {"dice": 0.75, "patient_dice": 0.8}
    rows = dict(card.summary_rows())
    assert rows["Model"] == "unet / resnet18"
    assert rows["Optimizer"] == "adam+znorm, lr 0.001"
    assert rows["Data"] == "demo_data/lgg (lgg, 128 px)"
    assert rows["Epochs"] == "2 of 3"
    assert rows["Validation"] == "Dice 0.625, IoU 0.500"
    assert rows["Test"] == "Dice 0.750, patient Dice 0.800"
    assert not card.problems


def test_last_checkpoint_alone_and_broken_side_files(tmp_path):
    folder = write_run(tmp_path / "run", checkpoints=("last.pt",))
    (folder / "metrics.json").write_text("{not json")
    (folder / "config.yaml").write_text("model: {arch: 7}\n")
    card = read_run(folder)
    assert card.checkpoint.name == "last.pt"
    assert card.config is None and card.test_metrics == {}
    assert any("metrics.json is not valid JSON" in p for p in card.problems)
    assert any("model.arch" in p for p in card.problems)
    assert dict(card.summary_rows())["Epochs"] == "2"


def test_folder_without_checkpoint_is_not_a_run(tmp_path):
    write_run(tmp_path / "models" / "empty", checkpoints=())
    with pytest.raises(MedsegError, match=r"no best\.pt or last\.pt"):
        read_run(tmp_path / "models" / "empty")
    assert find_runs(tmp_path / "models") == []
    assert find_runs(tmp_path / "missing") == []


def test_find_runs_nested_and_newest_first(tmp_path):
    models = tmp_path / "models"
    write_run(models / "old", mtime=1_000_000)
    write_run(models / "compare" / "adam_seed0", mtime=3_000_000)
    write_run(models / "new", mtime=2_000_000)
    write_run(models / "a" / "b" / "c" / "too_deep", mtime=4_000_000)
    assert [run.name for run in find_runs(models)] == ["compare/adam_seed0", "new", "old"]
    assert [run.name for run in find_runs(models / "new")] == ["new"]  # a run folder itself
