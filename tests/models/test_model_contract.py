"""The contract every registered architecture keeps (in the spirit of smp's BaseModelTester).

For each entry of ``medseg.models.MODELS``, at tiny settings: logits of the documented shape
((B, 1, H, W) for segmentation, (B, 1) for classification), a gradient for every trainable
parameter, three input channels by default, and a checkpoint round trip through
``save_checkpoint`` / ``load_model`` that reproduces the outputs exactly.
A newly registered architecture is tested here without any change (at its default
settings, unless it gets tiny ones in ``TINY``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

import medseg
from medseg.config import Config, config_from_dict
from medseg.engine import load_model, save_checkpoint
from medseg.models import ENCODER_NAMES, MODELS, build_model
from medseg.tasks import get_task

#: tiny settings per architecture (anything not listed is built at its defaults)
TINY: dict[str, dict[str, Any]] = {
    "unet": {"encoder": "resnet18"},
    "resnet": {"encoder": "resnet18"},
    "deep_resnet": {"depth": 2, "width": 4},
}
ARCHS = sorted(MODELS)
BATCH = 2
#: input (H, W) per task: non-square for segmentation so that a transposition shows
INPUT_SIZE = {"segmentation": (64, 96), "classification": (96, 96)}


@pytest.fixture(autouse=True)
def one_thread():
    from tests.support import one_thread

    with one_thread():
        yield


def _config(arch: str, in_channels: int = 3, **changes: Any) -> Config:
    """A valid run config for ``arch``: the data format of the task the arch serves.
    ``in_channels`` is set on the model afterwards: the builders honour any count, run
    configs accept only 3 (the data are RGB)."""
    task = get_task(MODELS[arch].task)
    cfg = config_from_dict({"data": {"format": task.data_format},
                            "model": {"arch": arch, **TINY.get(arch, {}), **changes}})
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, in_channels=in_channels))


def _build(arch: str, seed: int = 0, **changes: Any) -> tuple[nn.Module, Config]:
    cfg = _config(arch, **changes)
    torch.manual_seed(seed)
    return build_model(cfg.model, cfg.task), cfg


def _inputs(arch: str, channels: int = 3, seed: int = 1) -> torch.Tensor:
    height, width = INPUT_SIZE[MODELS[arch].task]
    return torch.randn(BATCH, channels, height, width, generator=torch.Generator().manual_seed(seed))


def _expected_shape(arch: str) -> tuple[int, ...]:
    if MODELS[arch].task == "segmentation":
        return (BATCH, 1, *INPUT_SIZE["segmentation"])
    return (BATCH, 1)


def _labels(arch: str) -> torch.Tensor:
    shape = _expected_shape(arch)
    return (torch.rand(shape, generator=torch.Generator().manual_seed(2)) > 0.5).float()


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_gives_one_logit_per_image_or_pixel(arch: str) -> None:
    model, _ = _build(arch)
    model.eval()
    with torch.no_grad():
        logits = model(_inputs(arch))
    assert logits.shape == _expected_shape(arch)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # logits, not probabilities: the task's loss applies the sigmoid
    assert logits.min() < 0 or logits.max() > 1


@pytest.mark.parametrize("arch", ARCHS)
def test_backward_reaches_every_trainable_parameter(arch: str) -> None:
    model, cfg = _build(arch)
    model.train()
    loss = get_task(cfg.task).build_loss()(model(_inputs(arch)), _labels(arch))
    loss.backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [name for name, p in trainable if p.grad is None]
    assert not missing
    for name, p in trainable:
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch", ARCHS)
def test_takes_three_channel_images_by_default(arch: str) -> None:
    model, _ = _build(arch)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3
    model.eval()
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(_inputs(arch, channels=4))


@pytest.mark.parametrize("in_channels", [1, 4])
@pytest.mark.parametrize("arch", ARCHS)
def test_in_channels_setting_is_honoured(arch: str, in_channels: int) -> None:
    model, _ = _build(arch, in_channels=in_channels)
    model.eval()
    with torch.no_grad():
        assert model(_inputs(arch, channels=in_channels)).shape == _expected_shape(arch)
        with pytest.raises(RuntimeError):
            model(_inputs(arch, channels=3))


@pytest.mark.parametrize("in_channels", [3])  # a run config accepts only 3
@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_reproduces_the_outputs(arch: str, in_channels: int, tmp_path) -> None:
    """``load_model`` builds on the meta device and takes the stored tensors: every one of
    them arrives, none is left on the meta device, the outputs are the saved model's."""
    model, cfg = _build(arch, in_channels=in_channels)
    # one SGD step in train mode: weights (and BatchNorm statistics) leave their init
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    get_task(cfg.task).build_loss()(model(_inputs(arch, channels=in_channels)), _labels(arch)).backward()
    optimizer.step()
    model.eval()
    x = _inputs(arch, channels=in_channels, seed=3)
    with torch.no_grad():
        expected = model(x)
    fresh, _ = _build(arch, seed=1, in_channels=in_channels)
    fresh.eval()
    with torch.no_grad():
        assert not torch.equal(fresh(x), expected)  # the weights, not the init, decide

    path = save_checkpoint({
        "model": model.state_dict(), "config": cfg.to_dict(), "task": cfg.task, "epoch": 1,
        "metrics": {}, "medseg_version": medseg.__version__,
    }, tmp_path / "model.pt")
    loaded = load_model(path)
    assert loaded.task == MODELS[arch].task and loaded.config == cfg
    assert not loaded.model.training
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    assert len(tensors) == len([*model.parameters(), *model.buffers()])
    assert not any(t.is_meta for t in tensors)
    assert all(p.requires_grad for p in loaded.model.parameters())  # fine-tuning still works
    with torch.no_grad():
        assert torch.equal(loaded.model(x), expected)


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
@pytest.mark.parametrize("arch", sorted(a for a in MODELS if "encoder" in TINY.get(a, {})))
def test_every_supported_encoder_builds(arch: str, encoder: str) -> None:
    # on the meta device: shapes only, no memory or compute
    cfg = _config(arch, encoder=encoder)
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.task).eval()
        height, width = INPUT_SIZE[cfg.task]
        logits = model(torch.zeros(BATCH, 3, height, width))
    assert logits.shape == _expected_shape(arch)
