"""Backward gradient normalization: the node on hand-computed tensors, and its placement in
every registered architecture (state_dict keys unchanged, forward outputs unchanged)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from medseg.config import config_from_dict
from medseg.errors import ConfigError
from medseg.models import MODELS, BackwardGradNorm, add_backward_grad_norm, build_model, unit_rms
from medseg.tasks import get_task

SQRT2 = math.sqrt(2.0)


@pytest.fixture(autouse=True)
def one_thread():
    from tests.support import one_thread

    with one_thread():
        yield


def test_unit_rms_by_hand_across_per_sample_scales():
    grad = torch.tensor([[3.0, 4.0], [0.0, 0.0], [3e-30, 4e-30], [3e30, 4e30], [-6e-40, 8e-40]])
    # each sample: g * sqrt(2) / ||g||; (3, 4) has norm 5
    expected = torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.6, 0.8], [0.6, 0.8], [-0.6, 0.8]]) * SQRT2
    torch.testing.assert_close(unit_rms(grad), expected, rtol=1e-6, atol=0)


def test_unit_rms_takes_all_elements_of_a_sample():
    grad = torch.zeros(2, 2, 2, 2)
    grad[0, 0, 0, 0], grad[0, 1, 1, 1] = 2.0, -2.0  # norm 2 sqrt(2) over n = 8 elements
    grad[1] = 0.5  # constant sample: RMS 0.5
    out = unit_rms(grad)
    assert out[0, 0, 0, 0].item() == pytest.approx(2.0 * math.sqrt(8) / (2 * SQRT2))
    assert out[0, 1, 1, 1].item() == pytest.approx(-2.0)
    assert out[0].count_nonzero() == 2
    torch.testing.assert_close(out[1], torch.ones(2, 2, 2))


def test_unit_rms_keeps_non_finite_entries_non_finite():
    out = unit_rms(torch.tensor([[float("inf"), 1.0], [float("nan"), 1.0], [1.0, 1.0]]))
    assert out[0, 0].isnan() and out[1, 0].isnan()
    torch.testing.assert_close(out[2], torch.ones(2))


def test_unit_rms_refuses_a_scalar():
    with pytest.raises(ValueError, match="batch dimension"):
        unit_rms(torch.tensor(1.0))


def test_node_is_the_identity_forward_and_normalizes_per_sample_backward():
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = BackwardGradNorm()(x)
    assert torch.equal(y, x) and y.data_ptr() == x.data_ptr()  # a view, no copy
    upstream = torch.tensor([[30.0, 40.0], [0.0, 0.0], [-1e-3, 0.0]])
    (y * upstream).sum().backward()
    expected = torch.tensor([[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]]) * torch.tensor(
        [[SQRT2], [0.0], [SQRT2]])
    torch.testing.assert_close(x.grad, expected)
    assert list(BackwardGradNorm().parameters()) == [] and list(BackwardGradNorm().buffers()) == []


def test_node_under_bf16_autocast_takes_fp32_statistics():
    linear = nn.Linear(4, 300, bias=False)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    seen = {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = linear(x)
        hidden.register_hook(lambda grad: seen.setdefault("grad", grad))
        out = BackwardGradNorm()(hidden)
    assert out.dtype is torch.bfloat16
    # upstream gradient: 2 everywhere for sample 0 (a bf16 sum of 300 squares would lose it),
    # 1e-3 for sample 1
    upstream = torch.tensor([2.0, 1e-3]).repeat_interleave(300).view(2, 300)
    (out.float() * upstream).sum().backward()
    grad = seen["grad"]
    assert grad.dtype is torch.bfloat16
    assert torch.equal(grad, torch.ones(2, 300, dtype=torch.bfloat16))


def _config(arch: str, **changes: Any):
    task = get_task(MODELS[arch].task)
    tiny = {"unet": {"encoder": "resnet18"}, "resnet": {"encoder": "resnet18"},
            "deep_resnet": {"depth": 3, "width": 4}}[arch]
    return config_from_dict({"data": {"format": task.data_format},
                             "model": {"arch": arch, **tiny, **changes}})


EXPECTED_NODES = {
    "unet": [f"encoder.layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    + [f"decoder.blocks.{i}" for i in range(5)],
    "resnet": [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)],
    "deep_resnet": ["features.1", "features.3", "features.5"],
}
INPUTS = {"unet": (2, 3, 64, 64), "resnet": (2, 3, 64, 64), "deep_resnet": (2, 3, 32, 32)}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_bgn_follows_every_residual_block_and_decoder_stage(arch):
    cfg = _config(arch, bgn=True)
    model = build_model(cfg.model, cfg.task)
    nodes = [name.removesuffix(".bgn") for name, module in model.named_modules()
             if isinstance(module, BackwardGradNorm)]
    assert nodes == EXPECTED_NODES[arch]
    assert add_backward_grad_norm(model) == EXPECTED_NODES[arch]  # a second call adds nothing
    assert sum(isinstance(m, BackwardGradNorm) for m in model.modules()) == len(nodes)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_a_checkpoint_without_bgn_loads_and_gives_the_same_outputs(arch):
    plain_cfg, bgn_cfg = _config(arch), _config(arch, bgn=True)
    torch.manual_seed(0)
    plain = build_model(plain_cfg.model, plain_cfg.task)
    with_bgn = build_model(bgn_cfg.model, bgn_cfg.task)
    assert list(with_bgn.state_dict()) == list(plain.state_dict())
    with_bgn.load_state_dict(plain.state_dict())  # strict
    x = torch.randn(*INPUTS[arch], generator=torch.Generator().manual_seed(2))
    plain.train(), with_bgn.train()
    assert torch.equal(with_bgn(x), plain(x))

    # backward: the gradient reaching the first node's block output has unit RMS per sample
    seen = {}

    def capture(module, args, out):
        out.register_hook(lambda grad: seen.setdefault("g", grad))

    block = with_bgn.get_submodule(EXPECTED_NODES[arch][0])
    block.register_forward_hook(capture, prepend=True)  # the block's output, before its node
    with_bgn(x).square().mean().backward()
    rms = seen["g"].flatten(1).square().mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.ones(2))


def test_bgn_refuses_fp16_loss_scaling():
    with pytest.raises(ConfigError, match=r"model\.bgn does not work with train\.amp fp16"):
        config_from_dict({"model": {"bgn": True}, "train": {"amp": "fp16"}})
    assert config_from_dict({"model": {"bgn": True}, "train": {"amp": "bf16"}}).model.bgn
