"""build_model: refusals of unknown architectures, task mismatches and unsupported encoders.

What every registered architecture returns is the contract of ``test_model_contract.py``.
"""

from __future__ import annotations

import pytest

from medseg.config import ModelConfig
from medseg.errors import MedsegError
from medseg.models import MODELS, build_model


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


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_arch_is_refused_for_the_other_task(arch: str) -> None:
    other = "classification" if MODELS[arch].task == "segmentation" else "segmentation"
    with pytest.raises(MedsegError, match=f"model.arch: '{arch}' is a {MODELS[arch].task} model"):
        build_model(ModelConfig(arch=arch, encoder="resnet18", depth=1, width=1), other)  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["unet", "resnet"])
def test_unsupported_encoder_lists_the_supported_ones(arch: str) -> None:
    task = MODELS[arch].task
    with pytest.raises(MedsegError, match="'resnet101' is not supported; choose one of resnet18, resnet34, resnet50"):
        build_model(ModelConfig(arch=arch, encoder="resnet101"), task)  # type: ignore[arg-type]
