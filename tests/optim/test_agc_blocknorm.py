"""Adaptive gradient clipping and block-normalized gradients on hand-computed values, and the
relation of block normalization to ZNorm under Adam."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim import SGD, Adam

from medseg.optim import AdaptiveGradClip, BlockNorm, ZNorm, blocknorm_


def test_agc_clips_each_row_to_clip_factor_times_its_weight_norm():
    weight = nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.6, 0.8]]))
    bias = nn.Parameter(torch.tensor([2.0]))
    weight.grad = torch.tensor([[30.0, 40.0], [1.0, 1.0], [0.003, 0.004]])
    bias.grad = torch.tensor([0.01])
    before_w, before_b = weight.detach().clone(), bias.detach().clone()
    AdaptiveGradClip(SGD([weight, bias], lr=1.0), clip_factor=0.01, eps=1e-3).step()
    # row 0: ||w|| = 5 -> max 0.05; ||g|| = 50 -> g * 0.05 / 50
    # row 1: ||w|| = 0 -> eps 1e-3 -> max 1e-5; ||g|| = sqrt(2) -> g * 1e-5 / sqrt(2)
    # row 2: ||w|| = 1 -> max 0.01; ||g|| = 0.005 < max -> unchanged
    # bias (1-D, one unit): ||b|| = 2 -> max 0.02; ||g|| = 0.01 -> unchanged
    expected = torch.tensor([[0.03, 0.04], [1e-5 / math.sqrt(2)] * 2, [0.003, 0.004]])
    torch.testing.assert_close(before_w - weight.detach(), expected)
    torch.testing.assert_close(before_b - bias.detach(), torch.tensor([0.01]))


def test_blocknorm_divides_each_weight_gradient_by_its_norm():
    weight = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # ||g|| = 5
    zero = torch.zeros(2, 3)
    bias = torch.tensor([3.0, 4.0])
    blocknorm_([weight, zero, bias])
    assert torch.equal(weight, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))  # 5 + 1e-8 is 5 in fp32
    assert torch.equal(zero, torch.zeros(2, 3))  # 0 / (0 + eps)
    assert bias.tolist() == [3.0, 4.0]  # 1-D: left alone by default
    blocknorm_(bias, min_ndim=1, eps=1.0)
    torch.testing.assert_close(bias, torch.tensor([0.5, 2.0 / 3.0]))


@pytest.mark.parametrize("scale", [1e-20, 1e-3, 1e25, 1e37])
def test_blocknorm_gives_unit_norm_across_magnitudes(scale):
    g = torch.tensor([[3.0, 4.0], [-12.0, 0.0]]) * scale  # ||g|| = 13 scale
    blocknorm_(g)
    expected = torch.tensor([[3.0, 4.0], [-12.0, 0.0]]) / 13.0
    if scale < 1e-8:  # the norm is far below eps: g / eps
        expected = torch.tensor([[3.0, 4.0], [-12.0, 0.0]]) * scale / (13.0 * scale + 1e-8)
    torch.testing.assert_close(g, expected, rtol=1e-6, atol=0)


def test_blocknorm_of_half_precision_uses_fp32_statistics():
    g = torch.full((300, 300), 2.0, dtype=torch.bfloat16)  # fp32 norm 600; bf16 sums lose it
    blocknorm_(g)
    assert g.dtype is torch.bfloat16
    assert torch.equal(g, torch.full_like(g, 2.0 / 600.0))


def test_blocknorm_keeps_non_finite_gradients_non_finite():
    g = torch.tensor([[1.0, float("inf")]])
    blocknorm_(g)
    assert not torch.isfinite(g).all()


def test_blocknorm_wrapper_inner_optimizer_sees_unit_norm_gradients():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    opt = BlockNorm(SGD(model.parameters(), lr=0.0))
    model(torch.randn(4, 2, 4, 4)).square().sum().backward()
    bias_grad = model[0].bias.grad.clone()
    opt.step()
    for p in (model[0].weight, model[2].weight):
        assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(model[0].bias.grad, bias_grad)


def _train_with_adam(wrap, centre: bool) -> list[torch.Tensor]:
    """Five Adam steps (eps 0) on a tiny MLP through ``wrap``; ``centre`` subtracts each
    weight gradient's mean first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    opt = wrap(Adam(model.parameters(), lr=1e-2, eps=0.0))
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(8, 5, generator=gen)).square().mean().backward()
        for p in model.parameters():
            if centre and p.ndim >= 2:
                p.grad.sub_(p.grad.mean())
        opt.step()
    return [p.detach() for p in model.parameters()]


def test_under_adam_tensor_znorm_is_centring_plus_blocknorm():
    # Phi(g) = (g - mean) / std = sqrt(d) (g - mean) / ||g - mean||: a constant factor per
    # tensor, which Adam's m / sqrt(v) cancels (exactly with Adam's eps at 0)
    znorm = _train_with_adam(lambda opt: ZNorm(opt, eps=1e-30), centre=False)
    ablation = _train_with_adam(lambda opt: BlockNorm(opt, eps=1e-30), centre=True)
    uncentred = _train_with_adam(lambda opt: BlockNorm(opt, eps=1e-30), centre=False)
    for a, b in zip(znorm, ablation, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(znorm[0], uncentred[0], rtol=1e-3, atol=1e-4)
