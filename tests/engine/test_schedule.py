"""Learning-rate schedules: hand-computed factors and a resumable scheduler."""

from __future__ import annotations

import math

import pytest
import torch

from medseg.config import TrainConfig
from medseg.engine.loop import epoch_length
from medseg.engine.schedule import build_scheduler, lr_factor


def test_cosine_with_warmup():
    factors = [lr_factor(s, kind="cosine", total_steps=6, warmup_steps=2) for s in range(6)]
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert factors == pytest.approx(expected)
    assert lr_factor(6, kind="cosine", total_steps=6) == pytest.approx(0.0)
    assert lr_factor(99, kind="cosine", total_steps=6) == pytest.approx(0.0)


def test_step_and_constant():
    assert [lr_factor(s, kind="step", total_steps=9, decay_every=3, gamma=0.1) for s in (0, 2, 3, 8)] \
        == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert lr_factor(5, kind="none", total_steps=9, warmup_steps=10) == pytest.approx(0.6)
    assert lr_factor(50, kind="none", total_steps=9) == 1.0


def test_warmup_as_long_as_the_run_does_not_divide_by_zero():
    assert lr_factor(4, kind="cosine", total_steps=4, warmup_steps=4) == pytest.approx(1.0)


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_scheduler_resumes_on_the_same_curve():
    cfg = TrainConfig(epochs=3, scheduler="step", lr_step_epochs=1, lr_gamma=0.5)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=2)
    straight = _lrs(scheduler, optimizer, 6)
    assert straight == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])

    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=2)
    first = _lrs(scheduler, optimizer, 3)
    saved_opt, saved_sched = optimizer.state_dict(), scheduler.state_dict()
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=2)
    optimizer.load_state_dict(saved_opt)
    scheduler.load_state_dict(saved_sched)
    assert first + _lrs(scheduler, optimizer, 3) == pytest.approx(straight)


def test_step_default_decays_every_third_of_the_run():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, TrainConfig(epochs=6, scheduler="step"), steps_per_epoch=1)
    assert _lrs(scheduler, optimizer, 6) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize(("batches", "accumulate", "cap", "expected"), [
    (10, 1, None, (10, 10)),
    (10, 3, None, (10, 4)),  # the last group has one micro-batch
    (10, 3, 2, (6, 2)),
    (3, 1, 5, (3, 3)),
])
def test_epoch_length(batches, accumulate, cap, expected):
    cfg = TrainConfig(accumulate=accumulate, max_steps_per_epoch=cap)
    assert epoch_length(cfg, batches) == expected
