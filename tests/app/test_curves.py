"""Training curves: one table per history.csv quantity, one column per run."""

from __future__ import annotations

import math

from medseg.app.curves import curve_label, history_frames
from medseg.app.run_cards import RunCard


def _card(name, history):
    return RunCard(name=name, path=None, checkpoints=(), config=None, test_metrics={},
                   validation_metrics={}, epochs_done=len(history), created=None,
                   history=tuple(history))


def test_frames_overlay_runs_per_quantity_in_reading_order():
    a = _card("a", [{"epoch": 1, "train_loss": 0.9, "val_dice": 0.5, "lr": 1e-3, "seconds": 3.0},
                    {"epoch": 2, "train_loss": 0.7, "val_dice": 0.6, "lr": 5e-4, "seconds": 3.0}])
    b = _card("b", [{"epoch": 1, "lr": 1e-3, "val_iou": 0.4, "val_dice": 0.55, "train_loss": 1.0}])
    frames = history_frames([a, b])
    # loss first, validation metrics in first-seen order, learning rate last; timings left out
    assert list(frames) == ["train_loss", "val_dice", "val_iou", "lr"]
    dice = frames["val_dice"]
    assert list(dice.columns) == ["a", "b"] and list(dice.index) == [1, 2]
    assert dice.loc[2, "a"] == 0.6 and dice.loc[1, "b"] == 0.55 and math.isnan(dice.loc[2, "b"])
    assert frames["val_iou"]["a"].isna().all()  # a run without that column: an empty line
    assert history_frames([]) == {}


def test_curve_labels_use_the_task_registry():
    assert curve_label("val_dice") == "validation Dice"
    assert curve_label("val_patient_dice") == "validation patient Dice"
    assert curve_label("train_loss") == "training loss" and curve_label("lr") == "learning rate"
