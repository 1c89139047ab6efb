"""The training step: precision settings, loss scaling seen by gradient transforms, accumulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.engine import step as step_module
from medseg.engine.step import TrainStep, resolve_precision


class RecordingSGD(torch.optim.SGD):
    """Records the gradients it steps on (what a gradient transform inside would see)."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.seen: list[torch.Tensor] = []

    def step(self, closure=None):
        self.seen = [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        return super().step(closure)


def test_precision_settings(monkeypatch):
    monkeypatch.setattr(step_module, "cpu_has_native_bf16", lambda: False)  # see test_precision.py
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    auto_cpu = resolve_precision("auto", cpu)
    assert auto_cpu.autocast_dtype is None and not auto_cpu.channels_last and not auto_cpu.scales_loss
    auto_gpu = resolve_precision("auto", gpu)
    assert auto_gpu.autocast_dtype is torch.bfloat16 and auto_gpu.channels_last and not auto_gpu.scales_loss
    fp16 = resolve_precision("fp16", gpu, "off")
    assert fp16.scales_loss and not fp16.channels_last
    assert resolve_precision("bf16", cpu, "on").channels_last
    assert resolve_precision("off", gpu).autocast_dtype is None


def test_fp16_loss_scaling_is_undone_before_the_optimizer_sees_gradients():
    model = nn.Linear(4, 1, bias=False)
    nn.init.ones_(model.weight)
    optimizer = RecordingSGD(model.parameters())
    step = TrainStep(model, lambda out, y: (out * y).sum(), optimizer, resolve_precision("fp16", torch.device("cpu")))
    assert step.scaler.is_enabled() and step.scaler.get_scale() > 1
    x = [0.0625, 0.125, 0.25, 0.5]
    step.backward(torch.tensor([x]), torch.full((1, 1), 0.5))  # 0.5 * 65536 fits in fp16
    assert step.model.weight.grad[0].tolist() == [0.5 * v * step.scaler.get_scale() for v in x]
    step.optimizer_step()
    assert optimizer.seen[0][0].tolist() == [0.5 * v for v in x]  # d(y w.x)/dw = y x, unscaled
    assert model.weight.grad is None


def test_stats_before_are_unscaled_and_after_are_what_the_optimizer_used():
    from medseg.optim import build_optimizer

    model = nn.Linear(4, 3, bias=False)
    optimizer = build_optimizer("sgd+znorm", model.parameters(), lr=0.0)
    step = TrainStep(model, lambda out, y: (out * y).sum(), optimizer,
                     resolve_precision("fp16", torch.device("cpu")))
    images, labels = torch.tensor([[0.0625, 0.125, 0.25, 0.5]]), torch.tensor([[0.5, 0.0, -0.5]])
    step.backward(images, labels)
    before, after = step.optimizer_step(with_stats=True)
    raw = labels.T @ images  # the true (unscaled) gradient
    assert before["weight"]["norm"] == pytest.approx(raw.norm().item())
    assert before["weight"]["mean"] == pytest.approx(0.0)
    assert after["weight"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert after["weight"]["std"] == pytest.approx(1.0, rel=1e-4)


def test_accumulated_micro_batches_give_the_full_batch_gradient():
    torch.manual_seed(0)
    images, labels = torch.randn(4, 5), torch.randn(4, 1)
    loss_fn = nn.MSELoss()

    def gradient(groups):
        model = nn.Linear(5, 1)
        nn.init.constant_(model.weight, 0.5)
        nn.init.zeros_(model.bias)
        optimizer = RecordingSGD(model.parameters())
        step = TrainStep(model, loss_fn, optimizer, resolve_precision("off", torch.device("cpu")))
        for chunk in groups:
            step.backward(images[chunk], labels[chunk], loss_weight=1 / len(groups))
        step.optimizer_step()
        return optimizer.seen

    full = gradient([slice(0, 4)])
    halves = gradient([slice(0, 2), slice(2, 4)])
    for a, b in zip(full, halves, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("with_stats", [False, True])  # True: unscale_ runs before step
@pytest.mark.parametrize("name", ["adam", "adam+znorm"])
def test_fp16_fused_adam_steps_as_foreach_adam(name, with_stats):
    """The factory's fused Adam on the CPU takes GradScaler's scale into its kernel (bare) or
    gets unscaled gradients (wrapped): either way its weights follow foreach Adam's."""
    from medseg.optim import build_optimizer

    torch.manual_seed(0)
    images, labels = torch.randn(8, 6), torch.randn(8, 3)
    weights = []
    for fused in (True, False):
        model = nn.Linear(6, 3)
        nn.init.constant_(model.weight, 0.25)
        nn.init.zeros_(model.bias)
        # weight decay makes Adam's step depend on the gradient's scale: a gradient left scaled
        # by the GradScaler would show
        optimizer = build_optimizer(name, model.parameters(), lr=0.01, weight_decay=0.5)
        if not fused:  # the same optimizer with torch's multi-tensor implementation
            inner = getattr(optimizer, "optimizer", optimizer)
            inner.defaults["fused"] = False
            inner.defaults["foreach"] = True
            for group in inner.param_groups:
                group["fused"], group["foreach"] = False, True
            inner.__dict__.pop("_step_supports_amp_scaling", None)
        assert getattr(optimizer, "optimizer", optimizer).defaults["fused"] is fused
        step = TrainStep(model, nn.MSELoss(), optimizer,
                         resolve_precision("fp16", torch.device("cpu")))
        for _ in range(3):
            step.backward(images, labels)
            step.optimizer_step(with_stats=with_stats)
        weights.append(model.weight.detach().clone())
    assert not torch.equal(weights[0], torch.full((3, 6), 0.25))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)
