"""The GPU paths of training (issue #16, item 3): run with ``pytest -m cuda`` on a CUDA
machine (``benchmarks/gpu_check.sh`` does); skipped elsewhere.

* one step of :class:`~medseg.engine.step.TrainStep` under bf16 autocast and channels-last
  memory with Adam + ZNorm, as ``medseg train`` runs it on a GPU (``amp: auto``);
* ZNorm over fused Adam (what :func:`~medseg.optim.build_optimizer` picks on CUDA) takes the
  steps ZNorm over the multi-tensor (``foreach``) Adam takes;
* :func:`~medseg.optim.znorm_` on CUDA (the multi-tensor implementation) gives the values of
  the per-tensor implementation used on the CPU, for fp32/bf16, per tensor and per channel,
  contiguous and channels-last gradients.

The test bodies take the device as an argument, so they can be tried on the CPU by calling
them directly (``test_x(torch.device("cpu"))``); the fixture gives them CUDA only.
"""

from __future__ import annotations

import pytest
import torch

from medseg.config import ModelConfig
from medseg.engine.step import TrainStep, resolve_precision
from medseg.models import build_model
from medseg.optim import ZNorm, build_optimizer, znorm_
from medseg.tasks import SEGMENTATION

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SHAPES = [(64, 32, 3, 3), (32, 64, 1, 1), (10, 300), (7, 5, 4, 2), (16,), (3, 2)]


@pytest.fixture
def device() -> torch.device:
    return torch.device("cuda")


def _batch(device: torch.device, batch: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen)
    labels = (torch.rand(batch, 1, size, size, generator=gen) > 0.8).float()
    return images.to(device), labels.to(device)


def _unet(device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="unet", encoder="resnet18"), "segmentation").to(device).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def test_bf16_channels_last_step_with_adam_znorm(device):
    model = _unet(device, channels_last=True)
    precision = resolve_precision("auto", device)
    if device.type == "cuda":  # what amp: auto and channels_last: auto mean on a GPU
        assert precision.autocast_dtype is torch.bfloat16 and precision.channels_last
    optimizer = build_optimizer("adam+znorm", model.parameters(), lr=1e-3)
    assert isinstance(optimizer, ZNorm)
    if device.type == "cuda":
        assert optimizer.optimizer.defaults.get("fused") is True
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    step = TrainStep(model, SEGMENTATION.build_loss(), optimizer, precision)
    images, labels = _batch(device)

    losses = []
    for _ in range(2):
        losses.append(step.backward(images, labels))
        stats = step.optimizer_step(with_stats=True)
    assert all(torch.isfinite(loss).item() for loss in losses)
    assert stats is not None
    after_znorm = stats[1]["encoder.conv1.weight"]
    assert abs(after_znorm["mean"]) < 1e-3 and abs(after_znorm["std"] - 1) < 1e-3, after_znorm
    changed = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert len(changed) == len(before)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    conv1 = dict(model.named_parameters())["encoder.conv1.weight"]
    assert conv1.is_contiguous(memory_format=torch.channels_last)


def _params(device: torch.device, seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen).to(device)) for shape in SHAPES]


def test_znorm_over_fused_adam_steps_as_over_foreach_adam(device):
    fused_params, foreach_params = _params(device, 0), _params(device, 0)
    fused = ZNorm(torch.optim.Adam(fused_params, lr=1e-2, fused=True))
    foreach = ZNorm(torch.optim.Adam(foreach_params, lr=1e-2, foreach=True))
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        for a, b in zip(fused_params, foreach_params, strict=True):
            grad = (torch.randn(a.shape, generator=gen) * 3 + 0.5).to(device)
            a.grad, b.grad = grad.clone(), grad.clone()
        fused.step()
        foreach.step()
    for a, b in zip(fused_params, foreach_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the steps moved the weights, by about lr per step (Adam of unit-std gradients)
    start = _params(device, 0)
    moved = max((a - s).abs().max().item() for a, s in zip(fused_params, start, strict=True))
    assert 1e-2 < moved < 6e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_znorm_on_cuda_matches_the_cpu_implementation(device, dtype, granularity, channels_last):
    gen = torch.Generator().manual_seed(2)
    cpu = [(torch.randn(shape, generator=gen) * (i + 1) + i).to(dtype) for i, shape in enumerate(SHAPES)]
    if channels_last:
        cpu = [t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t for t in cpu]
    gpu = [t.to(device) for t in cpu]
    assert [t.stride() for t in gpu] == [t.stride() for t in cpu]
    znorm_(cpu, granularity=granularity)
    znorm_(gpu, granularity=granularity)
    tolerance = 1e-5 if dtype is torch.float32 else 1e-2  # bf16: about one unit in the last place
    for a, b in zip(gpu, cpu, strict=True):
        assert a.dtype is dtype and a.stride() == b.stride()
        torch.testing.assert_close(a.cpu(), b, rtol=tolerance, atol=tolerance)
    assert abs(gpu[0].float().mean().item()) < 1e-2  # standardized, not left alone
    assert torch.equal(gpu[4].cpu(), cpu[4])  # 1-D: untouched by both
