"""The packed implementation of znorm_/centralize_ (used on CUDA, forced here on CPU tensors)
against the per-tensor one and the formula: many tensors in one call with zero, constant,
huge and tiny ones among them, non-dense layouts, and large tensors."""

from __future__ import annotations

import pytest
import torch

from medseg.optim import centralize_, functional, znorm_


@pytest.fixture
def packed(monkeypatch):
    """Use the packed implementation on the CPU too."""
    monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())


def reference_znorm(g: torch.Tensor, eps: float = 1e-8, dims: tuple[int, ...] | None = None):
    """The formula in float64: (g - mean) / (population std + eps)."""
    g = g.double()
    mean = g.mean(dim=dims, keepdim=True)
    std = ((g - mean) ** 2).mean(dim=dims, keepdim=True).sqrt()
    return (g - mean) / (std + eps)


SHAPES = [(8, 3, 3, 3), (5, 7), (4, 2, 5), (16, 4, 1, 1), (3, 6), (2, 9, 2), (12, 30)]


def many(dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """60 gradients; in the middle, a zero one, a constant one, one whose sum overflows fp32
    (1e36), one near fp32's max (3e38), one whose squares underflow (1e-30) and one whose
    channels differ by 60 orders of magnitude: those rescued must be the right ones."""
    gen = torch.Generator().manual_seed(seed)
    grads = [
        torch.randn(SHAPES[i % len(SHAPES)], generator=gen, dtype=torch.float64) * (i + 1) + i % 3
        for i in range(60)
    ]
    grads[20] = torch.zeros(4, 6, dtype=torch.float64)
    grads[25] = torch.full((3, 5), -2.5, dtype=torch.float64)
    grads[30] = grads[30].abs() * 1e36
    base = torch.randn(10, 20, generator=gen, dtype=torch.float64)
    grads[35] = base / base.abs().max() * 3e38
    grads[40] = grads[40] * 1e-30
    grads[45] = torch.randn(3, 50, generator=gen, dtype=torch.float64) * torch.tensor(
        [[1e30], [1.0], [1e-30]], dtype=torch.float64
    )
    return [g.to(dtype) for g in grads]


TRANSFORMS = {
    "tensor": lambda g: znorm_(g),
    "channel": lambda g: znorm_(g, granularity="channel"),
    "channel-tiny-eps": lambda g: znorm_(g, granularity="channel", eps=1e-45),
    "min_ndim-1": lambda g: znorm_(g, granularity="channel", min_ndim=1),
    "gc": lambda g: centralize_(g),
}


@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sixty_tensors_with_extreme_ones_agree_with_the_per_tensor_form(
    monkeypatch, transform, dtype
):
    expected, got = many(dtype), many(dtype)
    transform(expected)
    monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())
    transform(got)
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        if transform is TRANSFORMS["gc"] and dtype is torch.float32 and index in (30, 35):
            continue  # Gradient Centralization has no rescue: fp32 channel sums overflow
        assert torch.isfinite(have).all(), index
        scale = want.abs().max().item()
        torch.testing.assert_close(have, want, rtol=2e-6, atol=2e-6 * scale, msg=str(index))
    assert torch.equal(got[20], torch.zeros(4, 6, dtype=dtype))


@pytest.mark.usefixtures("packed")
@pytest.mark.parametrize("max_abs", [1e30, 1e36, 3e38, 1e-30])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_extreme_magnitudes_follow_the_formula(max_abs, granularity):
    base = torch.randn(50, 40, generator=torch.Generator().manual_seed(4))
    g = base / base.abs().max() * max_abs
    expected = reference_znorm(g, dims=(1,) if granularity == "channel" else None)
    others = [torch.randn(6, 7), torch.randn(3, 3, 3)]
    znorm_([others[0], g, others[1]], granularity=granularity)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g.double(), expected, rtol=1e-5, atol=1e-6 * expected.abs().max())


@pytest.mark.usefixtures("packed")
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("value", [0.0, 7.5, -1e30])
def test_constant_and_zero_tensors_become_zeros(granularity, value):
    g = torch.full((3, 4), value)
    neighbour = torch.randn(5, 5)
    znorm_([neighbour, g], granularity=granularity)
    assert torch.equal(g, torch.zeros(3, 4))


@pytest.mark.usefixtures("packed")
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_large_tensors_are_standardized_accurately(granularity):
    g = torch.randn(512, 512, 3, 3, generator=torch.Generator().manual_seed(8)) * 5 + 1
    small = torch.randn(7, 3)
    znorm_([small, g], granularity=granularity)
    dims = tuple(range(1, 4)) if granularity == "channel" else None
    mean = g.double().mean(dim=dims)
    std = g.double().std(dim=dims, unbiased=False)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-6, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-6, rtol=0)


@pytest.mark.usefixtures("packed")
def test_the_mean_of_4m_values_far_from_zero_is_exact_up_to_its_fp32_rounding():
    # mean 1000, std 1: the fp32 mean is off by up to half an ulp of 1000 (3.05e-5), which is
    # then the mean of the z-scores; per-tensor sums of 1024 row sums in fp32 would add 1e-4
    g = torch.randn(1024, 4096, generator=torch.Generator().manual_seed(12)) + 1000
    znorm_(g)
    assert abs(g.double().mean().item()) < 3.1e-5
    assert g.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.usefixtures("packed")
def test_non_dense_and_one_dimensional_tensors():
    gen = torch.Generator().manual_seed(9)
    parent = torch.randn(20, 30, 4, generator=gen)
    sliced = parent[:, ::3]  # gaps in memory: packed contiguously
    transposed = torch.randn(30, 12, generator=gen).t()  # dense, dim 0 not outermost
    vector = torch.randn(9, generator=gen)
    expected = [
        reference_znorm(sliced, dims=(1, 2)),
        reference_znorm(transposed, dims=(1,)),
        reference_znorm(vector),
    ]
    untouched = parent[:, 1::3].clone()
    znorm_([sliced, transposed, vector], granularity="channel", min_ndim=1)
    for got, want in zip([sliced, transposed, vector], expected, strict=True):
        torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=0)
    assert torch.equal(parent[:, 1::3], untouched)  # the slice's gaps are left alone


@pytest.mark.usefixtures("packed")
def test_tensors_that_need_no_padding():
    g = torch.randn(64, 64, generator=torch.Generator().manual_seed(10))  # 4096 elements
    expected = reference_znorm(g)
    znorm_(g)
    torch.testing.assert_close(g.double(), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("implementation", ["per-tensor", "packed"])
def test_centralize_float64_keeps_float64_precision(monkeypatch, implementation):
    if implementation == "packed":
        monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())
    # channel means near 1e8: in float32 they would be off by up to 4
    g = torch.randn(6, 50, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    g += 1e8 + torch.arange(6, dtype=torch.float64).unsqueeze(1)
    centralize_(g)
    assert g.mean(dim=1).abs().max().item() < 1e-7


@pytest.mark.usefixtures("packed")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_low_precision_is_standardized_in_fp32_and_rounded_once(dtype, granularity):
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(6, 10, generator=gen).to(dtype), torch.randn(4, 3, 3, generator=gen).to(dtype)]
    expected = [g.float() for g in grads]
    znorm_(expected, granularity=granularity)
    znorm_(grads, granularity=granularity)
    for g, want in zip(grads, expected, strict=True):
        assert g.dtype == dtype
        assert torch.equal(g, want.to(dtype))
