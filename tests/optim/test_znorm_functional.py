"""znorm_ and centralize_: hand-computed values, properties, dtypes and extreme magnitudes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medseg.optim import centralize_, functional, znorm_


def reference_znorm(g: torch.Tensor, eps: float = 1e-8, dims: tuple[int, ...] | None = None):
    """The formula in float64: (g - mean) / (population std + eps)."""
    g = g.double()
    mean = g.mean(dim=dims, keepdim=True)
    std = ((g - mean) ** 2).mean(dim=dims, keepdim=True).sqrt()
    return (g - mean) / (std + eps)


# --- hand-computed values --------------------------------------------------------------------


def test_tensor_granularity_hand_computed():
    # [1, 2, 3, 4]: mean 2.5, population std sqrt(1.25) = 1.1180
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    znorm_(g)
    expected = torch.tensor([[-1.3416, -0.4472], [0.4472, 1.3416]])
    torch.testing.assert_close(g, expected, atol=1e-4, rtol=0)


def test_tensor_granularity_hand_computed_with_constant_row():
    # [0, 3, 6, 2, 2, 2]: mean 2.5, deviations -2.5 .5 3.5 -.5 -.5 -.5, variance 19.5 / 6 = 3.25
    g = torch.tensor([[0.0, 3.0, 6.0], [2.0, 2.0, 2.0]])
    znorm_(g, granularity="tensor")
    expected = torch.tensor([[-1.3868, 0.2774, 1.9415], [-0.2774, -0.2774, -0.2774]])
    torch.testing.assert_close(g, expected, atol=1e-4, rtol=0)


def test_channel_granularity_hand_computed():
    # row 0: mean 3, std sqrt(6) = 2.4495 -> [-1.2247, 0, 1.2247]; row 1 is constant -> zeros
    g = torch.tensor([[0.0, 3.0, 6.0], [2.0, 2.0, 2.0]])
    znorm_(g, granularity="channel")
    expected = torch.tensor([[-1.2247, 0.0, 1.2247], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(g, expected, atol=1e-4, rtol=0)


def test_channel_granularity_on_a_conv_kernel_uses_dim_0():
    # out-channel 0 holds [1, 3] (mean 2, std 1), out-channel 1 holds [10, 30] (mean 20, std 10)
    g = torch.tensor([1.0, 3.0, 10.0, 30.0]).view(2, 1, 1, 2)
    znorm_(g, granularity="channel")
    torch.testing.assert_close(g.flatten(), torch.tensor([-1.0, 1.0, -1.0, 1.0]))


@pytest.mark.parametrize("form", ["per-tensor", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eps_is_added_to_the_std_not_to_the_variance(dtype, form, monkeypatch):
    if form == "packed":  # the CUDA form, run on the CPU
        monkeypatch.setattr(functional, "_BLOCKED_DEVICE_TYPES", ())
    # [1e-8, -1e-8]: mean 0, std 1e-8; std + eps = 2e-8 -> [0.5, -0.5]. With eps inside the
    # square root, sqrt(1e-16 + 1e-8) ~ 1e-4 would give ~ +-1e-4.
    g = torch.tensor([[1e-8, -1e-8]], dtype=dtype)
    znorm_(g)
    torch.testing.assert_close(g, torch.tensor([[0.5, -0.5]], dtype=dtype), atol=1e-6, rtol=0)
    # channel 0 as above; channel 1 [5e-8, -1e-8]: mean 2e-8, std 3e-8 -> +-3e-8 / 4e-8 = +-0.75
    g = torch.tensor([[1e-8, -1e-8], [5e-8, -1e-8]], dtype=dtype)
    znorm_(g, granularity="channel")
    expected = torch.tensor([[0.5, -0.5], [0.75, -0.75]], dtype=dtype)
    torch.testing.assert_close(g, expected, atol=1e-6, rtol=0)
    # a larger eps, from the settings: std 1e-8 + eps 3e-8 -> +-0.25
    g = torch.tensor([[1e-8, -1e-8]], dtype=dtype)
    znorm_(g, eps=3e-8)
    torch.testing.assert_close(g, torch.tensor([[0.25, -0.25]], dtype=dtype), atol=1e-6, rtol=0)


def test_channel_granularity_with_one_element_per_channel_gives_zeros():
    g = torch.tensor([[5.0], [-3.0], [8.0]])
    znorm_(g, granularity="channel")
    assert torch.equal(g, torch.zeros(3, 1))


# --- what is standardized and what is not ----------------------------------------------------


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_mean_zero_std_one_afterwards(granularity):
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 3, 3, 3), (5, 7), (4, 2, 5), (16, 4, 1, 1)]
    grads = [torch.randn(s, generator=gen) * 3 + 2 for s in shapes]
    znorm_(grads, granularity=granularity)
    for g in grads:
        dims = tuple(range(1, g.ndim)) if granularity == "channel" else None
        mean = g.double().mean(dim=dims)
        std = g.double().std(dim=dims, unbiased=False)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-6, rtol=0)
        torch.testing.assert_close(std, torch.ones_like(std), atol=1e-6, rtol=0)


def test_a_two_million_element_tensor_is_standardized_accurately():
    g = torch.randn(2048, 1024, generator=torch.Generator().manual_seed(7)) * 5 + 1
    znorm_(g)
    assert g.double().mean().abs().item() < 1e-6
    assert g.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)


def test_matches_the_formula_on_random_tensors():
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(s, generator=gen) for s in [(32, 16, 3, 3), (10, 300)]]
    expected_tensor = [reference_znorm(g) for g in grads]
    expected_channel = [reference_znorm(g, dims=tuple(range(1, g.ndim))) for g in grads]
    per_channel = [g.clone() for g in grads]
    znorm_(grads)
    znorm_(per_channel, granularity="channel")
    for got, want in zip(grads + per_channel, expected_tensor + expected_channel, strict=True):
        torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=0)


def test_one_dimensional_tensors_are_left_alone_by_default():
    bias = torch.tensor([1.0, 2.0, 4.0])
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    znorm_([bias, weight])
    assert torch.equal(bias, torch.tensor([1.0, 2.0, 4.0]))
    assert weight.mean().abs() < 1e-6


def test_min_ndim_selects_the_tensors():
    bias = torch.tensor([1.0, 3.0])
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    znorm_([bias, weight], min_ndim=3)
    assert torch.equal(weight, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    znorm_([bias], min_ndim=1, granularity="channel")  # 1-D: standardized as a whole
    torch.testing.assert_close(bias, torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("value", [0.0, 7.5, -1e30])
def test_constant_and_zero_tensors_become_zeros(granularity, value):
    g = torch.full((3, 4), value)
    znorm_(g, granularity=granularity)
    assert torch.equal(g, torch.zeros(3, 4))


def test_constant_tensor_stays_zero_with_a_subnormal_eps():
    g = torch.full((2, 5), 3.0)
    znorm_(g, eps=1e-45)
    assert torch.equal(g, torch.zeros(2, 5))


def test_accepts_a_single_tensor_and_a_generator():
    g = torch.tensor([[1.0, 3.0]])
    znorm_(g)
    torch.testing.assert_close(g, torch.tensor([[-1.0, 1.0]]))
    grads = [torch.tensor([[2.0, 6.0]])]
    znorm_(t for t in grads)
    torch.testing.assert_close(grads[0], torch.tensor([[-1.0, 1.0]]))


def test_empty_tensors_and_lists_are_fine():
    znorm_([])
    empty = torch.empty(0, 3)
    znorm_(empty)
    assert empty.shape == (0, 3)


def test_channels_last_gradients_match_contiguous_ones():
    g = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    channels_last = g.clone().contiguous(memory_format=torch.channels_last)
    expected = g.clone()
    znorm_(expected, granularity="channel")
    znorm_(channels_last, granularity="channel")
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(channels_last, expected)


# --- dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_low_precision_is_standardized_in_fp32_and_rounded_once(dtype, granularity):
    g = torch.randn(6, 10, generator=torch.Generator().manual_seed(3)).to(dtype)
    expected = g.float()
    znorm_(expected, granularity=granularity)
    znorm_(g, granularity=granularity)
    assert g.dtype == dtype
    assert torch.equal(g, expected.to(dtype))


def test_fp16_whose_sum_overflows_fp16_is_still_standardized():
    # 16 values near 30000: their sum (~5e5) is far beyond fp16's max of 65504
    g = (30000 + 1000 * torch.arange(16.0)).view(4, 4).half()
    znorm_(g)
    expected = reference_znorm(g.float())
    torch.testing.assert_close(g.double(), expected, atol=4e-3, rtol=0)


def test_mixed_dtypes_in_one_call():
    grads = [
        torch.tensor([[1.0, 3.0]]),
        torch.tensor([[1.0, 3.0]], dtype=torch.float64),
        torch.tensor([[1.0, 3.0]], dtype=torch.bfloat16),
    ]
    znorm_(grads)
    for g in grads:
        assert g.flatten().tolist() == pytest.approx([-1.0, 1.0], abs=1e-7)


# --- extreme magnitudes ----------------------------------------------------------------------


@pytest.mark.parametrize("max_abs", [1e30, 1e36, 3e38, 1e-30])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_extreme_magnitudes_follow_the_formula(max_abs, granularity):
    # 1e30: squares overflow fp32; 1e36: the sum overflows too; 3e38: close to fp32's max;
    # 1e-30: squares underflow
    base = torch.randn(50, 40, generator=torch.Generator().manual_seed(4))
    g = base / base.abs().max() * max_abs
    assert torch.isfinite(g).all()
    expected = reference_znorm(g, dims=(1,) if granularity == "channel" else None)
    znorm_(g, granularity=granularity)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g.double(), expected, rtol=1e-5, atol=1e-6 * expected.abs().max())


@pytest.mark.parametrize("scale", [1e-40, 1e-30, 1e30])
def test_gradients_are_standardized_when_eps_is_negligible(scale):
    g = torch.randn(20, 30, generator=torch.Generator().manual_seed(5)) * scale
    znorm_(g, eps=1e-45)
    assert g.double().mean().abs() < 1e-6
    # subnormal inputs (1e-40): fp32's eps of 1.4e-45 is 1e-5 of their std
    assert g.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_channels_of_very_different_magnitudes():
    base = torch.randn(3, 100, generator=torch.Generator().manual_seed(6))
    g = base * torch.tensor([[1e30], [1.0], [1e-30]])
    znorm_(g, granularity="channel", eps=1e-45)
    std = g.double().std(dim=1, unbiased=False)
    torch.testing.assert_close(std, torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)


# --- properties ------------------------------------------------------------------------------

matrices = st.integers(1, 6).flatmap(
    lambda rows: st.integers(2, 8).flatmap(
        lambda cols: st.lists(
            st.floats(-1e4, 1e4, allow_nan=False, width=64),
            min_size=rows * cols,
            max_size=rows * cols,
        ).map(lambda values: torch.tensor(values, dtype=torch.float64).view(rows, cols))
    )
)


@settings(max_examples=60, deadline=None)
@given(g=matrices, granularity=st.sampled_from(["tensor", "channel"]))
def test_descent_direction_is_preserved(g, granularity):
    """<g, Phi(g)> = d * sigma**2 / (sigma + eps) >= 0 (up to rounding)."""
    phi = g.clone()
    znorm_(phi, granularity=granularity)
    inner = torch.dot(g.flatten(), phi.flatten()).item()
    assert inner >= -1e-9 * g.norm().item() * phi.norm().item()


@settings(max_examples=60, deadline=None)
@given(
    g=matrices,
    c=st.floats(1e-3, 1e3),
    granularity=st.sampled_from(["tensor", "channel"]),
)
def test_scale_invariance(g, c, granularity):
    """Phi(c * g) = Phi(g) for c > 0 (eps is negligible next to the std here)."""
    dims = (1,) if granularity == "channel" else None
    spread = g.std(dim=dims, unbiased=False)
    assume(bool(((spread == 0) | (spread > 1e-3)).all()))
    phi, phi_scaled = g.clone(), c * g
    znorm_(phi, granularity=granularity, eps=1e-30)
    znorm_(phi_scaled, granularity=granularity, eps=1e-30)
    torch.testing.assert_close(phi_scaled, phi, atol=1e-8, rtol=1e-8)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "eps must be a positive finite number"),
        ({"eps": -1e-8}, "eps must be a positive finite number"),
        ({"eps": math.inf}, "eps must be a positive finite number"),
        ({"eps": math.nan}, "eps must be a positive finite number"),
        ({"granularity": "layer"}, "granularity must be one of tensor, channel"),
        ({"min_ndim": 0}, "min_ndim must be an integer >= 1"),
        ({"min_ndim": 1.5}, "min_ndim must be an integer >= 1"),
    ],
)
def test_invalid_settings_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        znorm_([torch.ones(2, 2)], **kwargs)


def test_sparse_and_integer_tensors_are_rejected():
    with pytest.raises(ValueError, match="sparse"):
        znorm_(torch.eye(3).to_sparse())
    with pytest.raises(TypeError, match="floating-point"):
        znorm_(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="expected tensors"):
        centralize_([[1.0, 2.0]])


# --- Gradient Centralization -----------------------------------------------------------------


def test_centralize_hand_computed():
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]])  # row means 2 and 6
    centralize_(g)
    assert torch.equal(g, torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]]))


def test_centralize_leaves_one_dimensional_tensors_alone():
    bias = torch.tensor([1.0, 2.0])
    centralize_([bias])
    assert torch.equal(bias, torch.tensor([1.0, 2.0]))


def test_centralize_conv_only():
    linear = torch.tensor([[1.0, 3.0]])
    conv = torch.tensor([1.0, 3.0, 5.0, 9.0]).view(2, 1, 1, 2)  # channel means 2 and 7
    centralize_([linear, conv], conv_only=True)
    assert torch.equal(linear, torch.tensor([[1.0, 3.0]]))
    assert torch.equal(conv.flatten(), torch.tensor([-1.0, 1.0, -2.0, 2.0]))


def test_centralize_bf16_keeps_its_dtype():
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]], dtype=torch.bfloat16)
    centralize_(g)
    assert g.dtype == torch.bfloat16
    assert g.float().tolist() == [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]]
