"""build_model: registry, output shapes, task checks."""

from __future__ import annotations

import pytest
import torch

from medseg.config import ModelConfig
from medseg.errors import MedsegError
from medseg.models import MODELS, build_model


def test_registry_lists_the_three_architectures() -> None:
    assert {name: entry.task for name, entry in MODELS.items()} == {
        "unet": "segmentation",
        "resnet": "classification",
        "deep_resnet": "classification",
    }


def test_unet_resnet18_returns_one_logit_map_per_image() -> None:
    model = build_model(ModelConfig(arch="unet", encoder="resnet18"), "segmentation")
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1, 64, 64)


def test_default_model_is_the_resnet50_unet() -> None:
    model = build_model(ModelConfig(), "segmentation")
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 32_521_105  # smp Unet(resnet50, classes=1): the 32.5M of NOTES.md
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_unet_accepts_other_input_channels() -> None:
    model = build_model(ModelConfig(arch="unet", encoder="resnet18", in_channels=1), "segmentation")
    assert model.encoder.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("in_channels", [3, 4])
def test_resnet_classifier_returns_one_logit(in_channels: int) -> None:
    cfg = ModelConfig(arch="resnet", encoder="resnet18", in_channels=in_channels)
    model = build_model(cfg, "classification")
    assert model.fc.out_features == 1
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, 96, 96)).shape == (2, 1)


def test_deep_resnet_returns_one_logit() -> None:
    model = build_model(ModelConfig(arch="deep_resnet", depth=4, width=8), "classification")
    with torch.no_grad():
        assert model(torch.randn(2, 3, 96, 96)).shape == (2, 1)


def test_unknown_arch_lists_the_valid_ones() -> None:
    with pytest.raises(MedsegError, match="'vit' is unknown; choose one of unet, resnet, deep_resnet"):
        build_model(ModelConfig(arch="vit"), "segmentation")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arch", "task", "valid"),
    [("unet", "classification", "resnet, deep_resnet"), ("resnet", "segmentation", "unet")],
)
def test_arch_task_mismatch_is_refused(arch: str, task: str, valid: str) -> None:
    with pytest.raises(MedsegError, match=f"not {task}; for {task} choose one of {valid}"):
        build_model(ModelConfig(arch=arch, encoder="resnet18"), task)  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["unet", "resnet"])
def test_unsupported_encoder_lists_the_supported_ones(arch: str) -> None:
    task = MODELS[arch].task
    with pytest.raises(MedsegError, match="'resnet101' is not supported; choose one of resnet18, resnet34, resnet50"):
        build_model(ModelConfig(arch=arch, encoder="resnet101"), task)  # type: ignore[arg-type]
