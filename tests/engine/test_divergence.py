"""The divergence guard: an exploding loss or gradients that stay non-finite stop the run, and
the epoch in which it happens writes nothing."""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from medseg.config import config_from_dict
from medseg.engine import load_checkpoint, train
from medseg.engine.loop import DivergenceGuard
from medseg.errors import ConfigError, MedsegError
from medseg.tasks import Task

RESULTS = ("last.pt", "best.pt", "history.csv", "metrics.json")


class NanGradient(torch.autograd.Function):
    """The identity forward (a finite loss); a NaN gradient backward."""

    @staticmethod
    def forward(ctx, logits):
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def test_an_exploding_loss_stops_the_run_and_writes_nothing(tiny_lgg, tmp_path, lgg_settings):
    # lr 1e6: the loss jumps from ~1.8 to ~1e11 without ever becoming NaN; unguarded, the run
    # ends "successfully" with a collapsed model as best.pt
    settings = lgg_settings(tiny_lgg, tmp_path / "run")
    settings["optim"]["lr"] = 1e6
    with pytest.raises(MedsegError, match=r"loss diverged at epoch 1 step 2: \S+e\+\d+ is over "
                                          r"train\.divergence_factor=1000 x the lowest smoothed loss so far "
                                          r"\(1\.\d+\); .*last good checkpoint: none written yet"):
        train(config_from_dict(settings))
    assert not [name for name in RESULTS if (tmp_path / "run" / name).exists()]


def test_divergence_in_a_later_epoch_keeps_the_last_good_checkpoint(trained_lgg, tiny_lgg, tmp_path,
                                                                   lgg_settings, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_lgg.run_dir, run_dir)
    before = {name: (run_dir / name).read_bytes() for name in ("last.pt", "best.pt", "history.csv")}
    build_loss = Task.build_loss
    monkeypatch.setattr(Task, "build_loss", lambda task: lambda logits, labels: build_loss(task)(logits, labels) * 1e4)
    last_good = re.escape(f"last good checkpoint: {run_dir / 'last.pt'}")
    with pytest.raises(MedsegError, match=rf"loss diverged at epoch 3 step 7: .* {last_good}$"):
        train(config_from_dict(lgg_settings(tiny_lgg, run_dir, epochs=3)), resume=True)
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert load_checkpoint(run_dir / "last.pt")["guard"]["floor"] > 0


@pytest.mark.parametrize("amp", ["off", "fp16"])  # fp16: the GradScaler skips the steps
def test_non_finite_gradients_stop_the_run_after_the_allowed_streak(tiny_lgg, tmp_path, lgg_settings,
                                                                   monkeypatch, amp):
    build_loss = Task.build_loss
    monkeypatch.setattr(Task, "build_loss",
                        lambda task: lambda logits, labels: build_loss(task)(NanGradient.apply(logits), labels))
    settings = lgg_settings(tiny_lgg, tmp_path / "run", max_nonfinite_steps=1, amp=amp)
    with pytest.raises(MedsegError, match=r"gradients were not finite for 2 consecutive steps, up to epoch 1 "
                                          r"step 2 \(train\.max_nonfinite_steps=1; .*none written yet"):
        train(config_from_dict(settings))
    assert not [name for name in RESULTS if (tmp_path / "run" / name).exists()]


def test_the_guard_ignores_one_easy_batch_but_not_a_climb():
    guard = DivergenceGuard(factor=1000.0, max_nonfinite=0)
    for loss in [1.0, 0.9, 1e-6, 0.8, 0.9]:  # an all-background batch scores ~0
        assert guard.diverged(loss) is None
    restored = DivergenceGuard(factor=1000.0, max_nonfinite=0)
    restored.load_state_dict(guard.state_dict())
    for loss in [10.0, 100.0]:
        assert restored.diverged(loss) is None
    assert "is over train.divergence_factor=1000 x the lowest smoothed loss so far" in restored.diverged(1e4)
    assert DivergenceGuard(factor=None, max_nonfinite=0).diverged(1e30) is None
    assert not restored.too_many_skipped(False) and restored.too_many_skipped(True)


@pytest.mark.parametrize(("key", "value"), [("divergence_factor", 1.0), ("max_nonfinite_steps", -1)])
def test_guard_settings_are_validated(tiny_lgg, tmp_path, lgg_settings, key, value):
    with pytest.raises(ConfigError, match=rf"train\.{key} must be"):
        config_from_dict(lgg_settings(tiny_lgg, tmp_path, **{key: value}))


def test_a_collapse_on_an_epoch_s_last_step_is_never_written(tiny_lgg, tmp_path, lgg_settings):
    """One step per epoch: the step's own loss is still sane, its update is not; the check
    after the epoch's last update stops the run before last.pt or best.pt is written."""
    settings = lgg_settings(tiny_lgg, tmp_path / "run", max_steps_per_epoch=1)
    settings["optim"]["lr"] = 1e6
    with pytest.raises(MedsegError, match=r"loss diverged after the last step of epoch 1 \(step 1\): "
                                          r".*last good checkpoint: none written yet"):
        train(config_from_dict(settings))
    assert not [name for name in RESULTS if (tmp_path / "run" / name).exists()]


def test_the_check_after_the_last_step_touches_nothing():
    """The extra forward keeps the normalization statistics and leaves no gradient."""
    from torch import nn

    from medseg.engine.step import TrainStep, resolve_precision

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    step = TrainStep(model, nn.BCEWithLogitsLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                     resolve_precision("off", torch.device("cpu")))
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    images, labels = torch.randn(2, 3, 8, 8) * 5 + 3, torch.ones(2, 1, 8, 8)
    loss = step.loss_after_step(images, labels)
    expected = nn.functional.binary_cross_entropy_with_logits(model(images), labels)  # moves BN
    assert loss.item() == pytest.approx(expected.item())
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])  # a plain forward would
    model.load_state_dict({**model.state_dict(), **before})
    step.loss_after_step(images, labels)
    assert all(torch.equal(buffer, before[name]) for name, buffer in model.named_buffers())
    assert all(param.grad is None for param in model.parameters())
