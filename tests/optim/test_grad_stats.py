"""gradient_stats: hand-computed norm/mean/std, skipping, order, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medseg.optim import gradient_stats, znorm_


def param(values, dtype=torch.float32, grad=True) -> nn.Parameter:
    p = nn.Parameter(torch.zeros(torch.tensor(values).shape, dtype=dtype))
    if grad:
        p.grad = torch.tensor(values, dtype=dtype)
    return p


def test_hand_computed_values():
    # [1, 2, 3, 4]: norm sqrt(30), mean 2.5, population std sqrt(1.25)
    stats = gradient_stats([("w", param([[1.0, 2.0], [3.0, 4.0]]))])
    assert stats["w"] == pytest.approx({"norm": math.sqrt(30), "mean": 2.5, "std": math.sqrt(1.25)})


def test_constant_gradient_has_zero_std():
    stats = gradient_stats([("b", param([3.0, 3.0, 3.0]))])
    assert stats["b"] == pytest.approx({"norm": math.sqrt(27), "mean": 3.0, "std": 0.0})


def test_parameters_without_gradient_are_skipped_and_order_is_kept():
    named = [
        ("c", param([1.0, -1.0])),
        ("frozen", param([5.0], grad=False)),
        ("a", param([[2.0]], dtype=torch.float64)),
        ("b", param([0.5, 1.5], dtype=torch.bfloat16)),
    ]
    stats = gradient_stats(named)
    assert list(stats) == ["c", "a", "b"]
    assert stats["c"] == pytest.approx({"norm": math.sqrt(2), "mean": 0.0, "std": 1.0})
    assert stats["a"] == pytest.approx({"norm": 2.0, "mean": 2.0, "std": 0.0})
    assert stats["b"] == pytest.approx({"norm": math.sqrt(2.5), "mean": 1.0, "std": 0.5})
    assert all(isinstance(v, float) for s in stats.values() for v in s.values())


def test_after_znorm_the_std_is_one_and_the_mean_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    model(torch.randn(4, 3, 6, 6)).square().mean().backward()
    znorm_([p.grad for p in model.parameters()])
    stats = gradient_stats(model.named_parameters())
    for name in ("0.weight", "2.weight"):
        assert stats[name]["mean"] == pytest.approx(0.0, abs=1e-6)
        assert stats[name]["std"] == pytest.approx(1.0, abs=1e-5)
    assert stats["0.bias"]["std"] != pytest.approx(1.0, abs=1e-3)  # 1-D: untouched


def test_no_gradients_give_an_empty_dict():
    assert gradient_stats(nn.Linear(2, 2).named_parameters()) == {}
