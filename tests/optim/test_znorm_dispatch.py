"""The two implementations of znorm_/centralize_/blocknorm_: the multi-tensor one (used off
the CPU; forced here on CPU tensors) dispatches a number of ops that does not grow with the
number of tensors, except for the one signed sum per tensor that no multi-tensor op computes;
the per-tensor (cache-blocked) one used on the CPU gives the same values."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from medseg.optim import blocknorm_, centralize_, functional, znorm_

SHAPES = [(8, 3, 3, 3), (5, 7), (4, 2, 5), (16, 4, 1, 1), (3, 6), (2, 9, 2)]


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def multi_tensor(monkeypatch):
    """Use the multi-tensor implementation on the CPU too."""
    monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())


def tensors(n: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPES[i % len(SHAPES)], generator=gen) * (i + 1) for i in range(n)]


def ops_of(transform, n: int) -> Counter[str]:
    grads = tensors(n)
    with OpCounter() as counter:
        transform(grads)
    return counter.ops


@pytest.mark.usefixtures("multi_tensor")
@pytest.mark.parametrize(
    ("transform", "per_tensor_op"),
    [
        (lambda g: znorm_(g), "aten.sum.default"),
        (lambda g: centralize_(g), "aten.mean.dim"),
        (lambda g: blocknorm_(g), None),
    ],
    ids=["znorm_", "centralize_", "blocknorm_"],
)
def test_multi_tensor_op_count_does_not_grow_with_the_number_of_tensors(transform, per_tensor_op):
    few, many = ops_of(transform, 10), ops_of(transform, 100)
    if per_tensor_op is not None:  # the signed sums: one reduction per tensor, nothing else
        assert (few.pop(per_tensor_op), many.pop(per_tensor_op)) == (10, 100)
    assert few == many
    assert sum(many.values()) <= 40
    full_size = {op: count for op, count in many.items() if op.startswith("aten._foreach")}
    assert full_size and set(full_size.values()) == {1}  # each multi-tensor op runs once


MIXED = [
    (6, 4, 3, 3),
    (300, 300),  # > 65536 elements, rows of 300
    (2, 70000),  # rows longer than 65536: chunked norm
    (5, 7),
    (3, 1),
]


def mixed(dtype=torch.float32, scale=1.0, seed=1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    grads = [(torch.randn(s, generator=gen) * 2 + 0.5) * scale for s in MIXED]
    grads.append(torch.randn(64, 40, 5, 5, generator=gen).contiguous(
        memory_format=torch.channels_last))
    grads.append(torch.full((2, 3), 4.0))  # constant
    grads.append(torch.zeros(3, 3))
    return [g.to(dtype) for g in grads]


@pytest.mark.parametrize(
    "transform",
    [
        lambda g: znorm_(g),
        lambda g: znorm_(g, granularity="channel"),
        lambda g: znorm_(g, eps=1e-45),
        lambda g: znorm_(g, min_ndim=1),
        lambda g: centralize_(g),
        lambda g: blocknorm_(g),
    ],
    ids=["tensor", "channel", "subnormal-eps", "min_ndim-1", "gc", "blocknorm"],
)
@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(torch.float32, 1.0), (torch.float32, 1e30), (torch.float32, 1e-30), (torch.float64, 1.0),
     (torch.bfloat16, 1.0)],
    ids=["fp32", "fp32-1e30", "fp32-1e-30", "fp64", "bf16"],
)
def test_per_tensor_and_multi_tensor_implementations_agree(monkeypatch, transform, dtype, scale):
    blocked, multi = mixed(dtype, scale), mixed(dtype, scale)
    transform(blocked)
    monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())
    transform(multi)
    for a, b in zip(blocked, multi, strict=True):
        assert a.dtype == b.dtype and a.stride() == b.stride()
        assert torch.isfinite(a).all()
        if dtype is torch.bfloat16:  # rounded once to bf16: at most one bf16 step apart
            torch.testing.assert_close(a.float(), b.float(), rtol=8e-3, atol=1e-2)
        else:
            torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6 * b.abs().max().item())


@pytest.mark.usefixtures("multi_tensor")
def test_multi_tensor_hand_computed_values():
    g = torch.tensor([[0.0, 3.0, 6.0], [2.0, 2.0, 2.0]])
    constant = torch.full((3, 4), 7.5)
    znorm_([g, constant])
    expected = torch.tensor([[-1.3868, 0.2774, 1.9415], [-0.2774, -0.2774, -0.2774]])
    torch.testing.assert_close(g, expected, atol=1e-4, rtol=0)
    assert torch.equal(constant, torch.zeros(3, 4))
    gc = torch.tensor([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]])
    centralize_(gc)
    assert torch.equal(gc, torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]]))
    block = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    blocknorm_(block)
    assert torch.equal(block, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_the_cpu_implementation_matches_the_formula_on_a_large_tensor():
    # 2.4M elements in 512 rows: the norm of the rows' norms keeps the std accurate to 1e-6
    g = torch.randn(512, 512, 3, 3, generator=torch.Generator().manual_seed(8)) * 5 + 1
    znorm_(g)
    assert g.double().mean().abs().item() < 1e-6
    assert g.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
