"""The two implementations of znorm_/centralize_: the packed one (used on CUDA; forced here on
CPU tensors) dispatches the same compute ops whatever the number of tensors; the per-tensor
(cache-blocked) one, the CPU default, gives the same values. blocknorm_ is multi-tensor on
every device and dispatches a constant number of ops too.

"Compute ops" are the aten ops that are not views (``OpOverload.is_view``). View ops
(``as_strided``, ``view``, ``unsqueeze``, ...) only make tensor metadata and launch no kernel;
the packed form makes one or two per tensor (its copies of the tensors inside the packed
matrix), so they are counted apart.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from medseg.optim import blocknorm_, centralize_, functional, znorm_

SHAPES = [(8, 3, 3, 3), (5, 7), (4, 2, 5), (16, 4, 1, 1), (3, 6), (2, 9, 2)]


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is active: compute ops and view ops apart."""

    def __init__(self) -> None:
        super().__init__()
        self.compute: Counter[str] = Counter()
        self.views: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.views if func.is_view else self.compute)[str(func)] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def multi_tensor(monkeypatch):
    """Use the packed (multi-tensor) implementation on the CPU too."""
    monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())


def tensors(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(SHAPES[i % len(SHAPES)], generator=gen) * (i + 1) for i in range(n)]
    return [g.to(dtype) for g in grads]


def count(transform, grads: list[torch.Tensor]) -> OpCounter:
    with OpCounter() as counter:
        transform(grads)
    return counter


TRANSFORMS = {
    "znorm_": lambda g: znorm_(g),
    "znorm_-channel": lambda g: znorm_(g, granularity="channel"),
    "znorm_-min_ndim-1": lambda g: znorm_(g, granularity="channel", min_ndim=1),
    "centralize_": lambda g: centralize_(g),
    "blocknorm_": lambda g: blocknorm_(g),
}


@pytest.mark.usefixtures("multi_tensor")
@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_multi_tensor_op_count_does_not_grow_with_the_number_of_tensors(transform, dtype):
    if transform is TRANSFORMS["blocknorm_"] and dtype is torch.bfloat16:
        pytest.skip("blocknorm_ takes one fp32 copy per fp16/bf16 tensor (not packed)")
    few, many = count(transform, tensors(3, dtype=dtype)), count(transform, tensors(60, dtype=dtype))
    assert few.compute == many.compute
    assert sum(many.compute.values()) <= 60
    # nothing runs once per tensor: the per-tensor reductions of the former multi-tensor form
    # (one torch.sum, torch.mean or vector_norm per tensor) and per-tensor fp32 copies are gone
    assert max(many.compute.values()) <= 6
    assert sum(many.views.values()) <= 3 * 60 + 10  # a tensor's copy and its padding: views


@pytest.mark.usefixtures("multi_tensor")
@pytest.mark.parametrize("transform", list(TRANSFORMS.values())[:4], ids=list(TRANSFORMS)[:4])
def test_the_packed_form_copies_each_group_in_and_out_once(transform):
    ops = count(transform, tensors(60)).compute
    assert ops["aten._foreach_copy_.default"] == 2  # in and out, all tensors at once
    assert ops["aten.sum.dim_IntList"] == 1  # the row sums of the whole packed matrix
    assert "aten.sum.default" not in ops and "aten.mean.dim" not in ops


def test_the_cpu_default_transforms_one_tensor_at_a_time():
    # the per-tensor form is the faster one on a CPU (docs/benchmarks.md): nothing is packed
    for transform in list(TRANSFORMS.values())[:4]:
        ops = count(transform, tensors(12)).compute
        assert "aten.segment_reduce.default" not in ops
        assert "aten._foreach_copy_.default" not in ops


def test_devices_without_the_packed_kernels_transform_one_tensor_at_a_time(monkeypatch):
    monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())
    monkeypatch.setattr(functional, "_PACKED_DEVICE_TYPES", ("cuda",))
    ops = count(TRANSFORMS["znorm_"], tensors(12)).compute
    assert "aten.segment_reduce.default" not in ops


def fast_path_eligible(lists: list[list[torch.Tensor]]) -> bool:
    """What CUDA's multi-tensor kernels need to run as one launch (ATen's ForeachUtils.h,
    check_fast_path_restrictions): dense tensors, and the i-th tensors of all lists of the same
    sizes and strides (a size-1 dim's stride does not count)."""

    def strides(t):
        return [s for s, n in zip(t.stride(), t.shape, strict=True) if n != 1]

    return all(
        functional.is_dense_layout(t.shape, t.stride())
        and t.shape == lists[0][i].shape
        and strides(t) == strides(lists[0][i])
        for tensor_list in lists
        for i, t in enumerate(tensor_list)
    )


@pytest.mark.usefixtures("multi_tensor")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_copies_of_dense_tensors_are_single_launch_multi_tensor_copies(dtype):
    """Per tensor, the copies keep the tensor's strides (channels_last, transposed): on CUDA
    each of the two copies is one multi-tensor launch, not one copy per tensor."""
    gen = torch.Generator().manual_seed(4)
    grads = [
        torch.randn(16, 8, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last),
        torch.randn(30, 20, generator=gen).t(),
        torch.randn(6, 5, 4, generator=gen).permute(2, 0, 1),
        torch.randn(64, 64, generator=gen),
    ]
    grads = [g.to(dtype) for g in grads]
    seen: list[list[list[torch.Tensor]]] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func).startswith("aten._foreach"):
                seen.append([list(a) for a in args if isinstance(a, (list, tuple))])
            return func(*args, **(kwargs or {}))

    with Recorder():
        znorm_(grads)
    assert len(seen) == 4  # two copies, two zeroings of the padding
    assert all(fast_path_eligible(lists) for lists in seen)


@pytest.mark.parametrize(
    ("segments", "lengths"),
    [((1,) * 6, (216, 35, 40, 64, 18, 36)), ((64, 128, 3), (576, 1152, 7)),
     ((1, 1), (2_359_296, 10)), ((512,), (1,)), ((1,), (4096,))],
)
def test_the_packed_matrix_pads_by_at_most_an_eighth(segments, lengths):
    row_length = functional._row_length(segments, lengths)
    total = sum(s * m for s, m in zip(segments, lengths, strict=True))
    padded = sum(s * -(-m // row_length) * row_length for s, m in zip(segments, lengths, strict=True))
    assert padded * 8 <= total * 9


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
