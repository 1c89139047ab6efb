"""Gradient transforms under bf16: statistics in fp32 whatever the gradient's dtype.

Under autocast the parameters stay fp32, so the transforms get fp32 gradients; a bf16 (or
fp16) gradient tensor, as a bf16 model would have, is transformed through fp32 and rounded
once to its dtype.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.engine.step import TrainStep, resolve_precision
from medseg.optim import build_optimizer
from medseg.optim.functional import blocknorm_, centralize_, znorm_
from medseg.optim.wrappers import GradientTransform

TRANSFORMS = {
    "znorm_": znorm_,
    "znorm_ channel": lambda grads: znorm_(grads, granularity="channel"),
    "centralize_": centralize_,
    "blocknorm_": blocknorm_,
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_low_precision_gradient_is_transformed_in_fp32_and_rounded_once(name, dtype):
    gen = torch.Generator().manual_seed(5)
    # a large common offset: its mean and norm taken in bf16 would be visibly off
    grads = [(torch.randn(4, 3, 3, 3, generator=gen) + 40).to(dtype),
             (torch.randn(8, 24, generator=gen) - 3).to(dtype)]
    expected = [g.float() for g in grads]
    TRANSFORMS[name](expected)
    TRANSFORMS[name](grads)
    for g, want in zip(grads, expected, strict=True):
        assert g.dtype == dtype
        assert torch.equal(g, want.to(dtype))


@pytest.mark.parametrize("method", ["adam+znorm", "adam+gc", "adam+clip", "adam+agc", "adam+blocknorm"])
def test_under_bf16_autocast_every_transform_gets_fp32_gradients(method):
    seen: list[torch.dtype] = []

    def spy(optimizer, args, kwargs):  # a step pre-hook: patching the class's step would leak
        seen.extend(p.grad.dtype for group in optimizer.param_groups for p in group["params"])

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    optimizer = build_optimizer(method, model.parameters(), lr=1e-3)
    assert isinstance(optimizer, GradientTransform)
    optimizer.register_step_pre_hook(spy)
    step = TrainStep(model, nn.BCEWithLogitsLoss(), optimizer,
                     resolve_precision("bf16", torch.device("cpu"), "on"))
    images, labels = torch.randn(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what the forward computes in
        assert model(images).dtype is torch.bfloat16
    step.backward(images, labels)
    step.optimizer_step()
    assert seen and set(seen) == {torch.float32}
