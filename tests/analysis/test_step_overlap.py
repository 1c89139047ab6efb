"""The training step's overlap rows: probed on request, unscaled, taken once per step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from medseg.analysis import OverlapProbe
from medseg.engine.callbacks import StepInfo
from medseg.engine.step import TrainStep, resolve_precision
from medseg.models import DeepResNet


@pytest.fixture(autouse=True)
def one_thread():
    from tests.support import one_thread

    with one_thread():
        yield


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, labels)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=gen), (torch.rand(4, 1, generator=gen) > 0.5).float()


def _reference_rows(model: nn.Module, weight: float = 1.0) -> list[dict]:
    images, labels = _data()
    with OverlapProbe(model) as probe:
        (weight * _loss(model(images), labels)).backward()
    return probe.rows()


def _step(model: nn.Module, amp: str) -> TrainStep:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    return TrainStep(model, _loss, optimizer, resolve_precision(amp, torch.device("cpu")))


def test_the_probed_micro_batch_rows_are_taken_once():
    torch.manual_seed(0)
    model = DeepResNet(depth=3, width=4)
    expected = _reference_rows(copy.deepcopy(model), weight=0.5)
    step = _step(model, "off")
    images, labels = _data()
    step.backward(images, labels, loss_weight=0.5, sync=False)
    step.backward(images, labels, loss_weight=0.5, probe=True)
    step.optimizer_step()
    rows = step.take_overlap()
    assert rows == expected
    assert [row["block"] for row in rows] == ["features.1", "features.3", "features.5"]
    assert step.take_overlap() is None
    step.backward(images, labels)
    step.optimizer_step()
    assert step.take_overlap() is None


def test_rows_are_unscaled_under_fp16_loss_scaling():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *DeepResNet(depth=2, width=4).features[1:3],
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    expected = _reference_rows(copy.deepcopy(model))
    step = _step(model, "fp16")
    scale = step.scaler.get_scale()
    assert scale > 1
    images, labels = _data()
    step.backward(images, labels, probe=True)
    step.optimizer_step()
    (row,) = step.take_overlap()
    for key in ("skip_norm", "branch_norm", "total_norm"):
        assert row[key] == pytest.approx(expected[0][key], rel=2e-2), key
    assert row["cosine"] == pytest.approx(expected[0]["cosine"], abs=2e-2)


def test_step_info_overlap_defaults_to_none():
    info = StepInfo(epoch=1, step=1, loss=0.5, lr=1e-3, rank=0, grad_stats_before=None,
                    grad_stats_after=None)
    assert info.overlap is None
