"""Resuming reproduces an uninterrupted run bit for bit; a NaN loss stops cleanly."""

from __future__ import annotations

import hashlib
import random
import shutil

import numpy as np
import pytest
import torch

from medseg.engine import TrainCallback, load_checkpoint, train
from medseg.errors import MedsegError
from medseg.tasks import Task
from tests.support import lgg_settings, train_tiny


class Crash(Exception):
    """Stands in for a kill after an epoch's checkpoint was written."""


class CrashAfterEpoch(TrainCallback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, info):
        if info.epoch == self.epoch:
            raise Crash


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            _assert_same_state(a[key], b[key])
        else:
            assert a[key] == b[key], key


def test_resume_after_a_crash_matches_an_uninterrupted_run(trained_lgg, tiny_lgg, tmp_path, lgg_config):
    # trained_lgg ran the same config straight through. Augmentation is on, so the data
    # order and the random transforms must be restored too.
    straight = trained_lgg

    crashed = lgg_config(tiny_lgg, tmp_path / "crashed")
    with pytest.raises(Crash):
        train(crashed, callbacks=[CrashAfterEpoch(1)])
    assert load_checkpoint(tmp_path / "crashed" / "last.pt")["epoch"] == 1
    resumed = train(crashed, resume=True)

    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(tmp_path / "crashed" / "last.pt")
    _assert_same_state(a["model"], b["model"])
    _assert_same_state(a["optimizer"]["state"], b["optimizer"]["state"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    for row_a, row_b in zip(straight.history, resumed.history, strict=True):
        assert row_a["train_loss"] == row_b["train_loss"]
        assert row_a["val_dice"] == row_b["val_dice"]
    assert straight.test_metrics["dice"] == resumed.test_metrics["dice"]


def test_resume_can_extend_a_finished_run(tiny_lgg, tmp_path, lgg_config):
    steady = {"scheduler": "none", "warmup_epochs": 0, "max_steps_per_epoch": 1}
    straight = train(lgg_config(tiny_lgg, tmp_path / "straight", epochs=2, **steady))
    train(lgg_config(tiny_lgg, tmp_path / "short", epochs=1, **steady))
    extended = train(lgg_config(tiny_lgg, tmp_path / "short", epochs=2, **steady), resume=True)
    assert [row["epoch"] for row in extended.history] == [1, 2]
    _assert_same_state(load_checkpoint(tmp_path / "straight" / "last.pt")["model"],
                       load_checkpoint(tmp_path / "short" / "last.pt")["model"])
    assert straight.history[1]["train_loss"] == extended.history[1]["train_loss"]


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_lgg, tmp_path, monkeypatch, lgg_config):
    calls = {"n": 0}
    build_loss = Task.build_loss

    def loss_turning_nan(task):
        real = build_loss(task)

        def loss(logits, labels):
            calls["n"] += 1
            value = real(logits, labels)
            # calls 1-3: epoch 1's steps; 4: the check after its last update; 5, 6: steps 4, 5
            return value * float("nan") if calls["n"] == 6 else value

        return loss

    digests = {}

    class Digest(TrainCallback):
        def on_epoch_end(self, info):
            digests[info.epoch] = hashlib.sha256((tmp_path / "run" / "last.pt").read_bytes()).hexdigest()

    monkeypatch.setattr(Task, "build_loss", loss_turning_nan)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(MedsegError, match=r"loss became nan at epoch 2 step 5; last good checkpoint: .*last\.pt"):
        train(lgg_config(tiny_lgg, tmp_path / "run", epochs=3), callbacks=[Digest()])
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digests[1]
    assert load_checkpoint(last)["epoch"] == 1
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_nan_in_the_first_epoch_says_no_checkpoint_exists(tiny_lgg, tmp_path, monkeypatch, lgg_config):
    monkeypatch.setattr(Task, "build_loss",
                        lambda task: lambda logits, labels: (logits.abs().mean() + 1) * float("inf"))
    with pytest.raises(MedsegError, match="loss became inf at epoch 1 step 1; last good checkpoint: none"):
        train(lgg_config(tiny_lgg, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()


class DrawGlobalRandom(TrainCallback):
    """Draws from Python's, NumPy's and torch's global generators after every step (as a
    user's augmentation or dropout would), recording the draws by step."""

    def __init__(self):
        self.draws = {}

    def on_step_end(self, info):
        self.draws[info.step] = (random.random(), float(np.random.random()), float(torch.rand(1)))


@pytest.fixture(scope="module")
def fp16_runs(tiny_lgg, module_tmp):
    """One step per epoch with fp16 loss scaling (on the CPU): a straight 2-epoch run, and one
    stopped after epoch 1 then resumed; each with a :class:`DrawGlobalRandom`."""
    root = module_tmp / "fp16_resume"
    settings = lambda name: lgg_settings(tiny_lgg, root / name, amp="fp16", max_steps_per_epoch=1)  # noqa: E731
    straight, stopped, resumed = DrawGlobalRandom(), DrawGlobalRandom(), DrawGlobalRandom()
    train_tiny(settings("straight"), callbacks=[straight])
    with pytest.raises(Crash):
        train_tiny(settings("resumed"), callbacks=[stopped, CrashAfterEpoch(1)])
    train_tiny(settings("resumed"), resume=True, callbacks=[resumed])
    return {"straight": (root / "straight", straight.draws), "resumed": (root / "resumed", resumed.draws)}


def test_resume_restores_the_loss_scaler(fp16_runs):
    (straight, _), (resumed, _) = fp16_runs["straight"], fp16_runs["resumed"]
    scaler = load_checkpoint(straight / "last.pt")["scaler"]
    # two steps without overflow: the scaler counts them towards its next growth
    assert scaler["scale"] == 2.0**16 and scaler["_growth_tracker"] == 2
    assert load_checkpoint(resumed / "last.pt")["scaler"] == scaler


def test_resume_restores_the_global_random_generators(fp16_runs):
    (_, straight), (_, resumed) = fp16_runs["straight"], fp16_runs["resumed"]
    assert sorted(straight) == [1, 2] and sorted(resumed) == [2]
    assert resumed[2] == straight[2]  # python, numpy and torch draw what they would have


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("epoch", "x", "must be a whole number >= 1, got 'x'"),
    ("history", 5, "must be a list of epoch rows (mappings of names to numbers), got 5"),
    ("history", [{"epoch": "one"}], "must be a list of epoch rows (mappings of names to numbers), "
                                    "got [{'epoch': 'one'}]"),
    ("best_epoch", None, "must be a whole number from 1 to the checkpoint's epoch (1), got None"),
    ("best_epoch", 2, "must be a whole number from 1 to the checkpoint's epoch (1), got 2"),
    ("rng", [], "must be a non-empty list of random generator states (one per process), got []"),
    ("rng", [{"python": 5}], "holds an unusable random generator state (python), got "
                             "[{'python': 5}]"),
    ("global_step", -1, "must be a whole number >= 0, got -1"),
    ("best_metric", "x", "must be a number, got 'x'"),
    ("optimizer", 5, "must be an optimizer state (a mapping with state and param_groups), got 5"),
    ("scheduler", [], "must be a learning-rate schedule state (a mapping with last_epoch), got []"),
    ("scaler", 5, "must be a loss scaler state (a mapping, empty when scaling is off), got 5"),
    ("guard", 5, "must be a divergence guard state (smoothed, floor, nonfinite_streak), got 5"),
], ids=lambda value: repr(value)[:30])
def test_resume_refuses_a_field_of_the_wrong_type_by_name(trained_pcam, tiny_pcam, tmp_path, field,
                                                          value, problem, capsys):
    from medseg.cli.main import main
    from medseg.engine import save_checkpoint
    from tests.support import pcam_settings, write_config

    run_dir = tmp_path / "run"
    shutil.copytree(trained_pcam.run_dir, run_dir)
    last = run_dir / "last.pt"
    save_checkpoint({**load_checkpoint(last), field: value}, last)
    config = write_config(pcam_settings(tiny_pcam, run_dir, epochs=2), tmp_path / "run.yaml")
    assert main(["train", str(config), "--resume"]) == 2
    assert capsys.readouterr().err == f"medseg: error: {last}: checkpoint field '{field}' {problem}\n"
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1  # nothing was trained or rebuilt
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in trained_pcam.run_dir.iterdir())
