"""DeepResNet: no normalization, depth = number of residual blocks, plain Kaiming init."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from medseg.config import ModelConfig
from medseg.errors import MedsegError
from medseg.models import DeepResNet, ResidualBlock, build_model

NORMALIZATION_LAYERS = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def test_has_no_normalization_layer() -> None:
    model = DeepResNet(depth=20, width=16)
    assert not [m for m in model.modules() if isinstance(m, NORMALIZATION_LAYERS)]
    assert all(conv.bias is not None for conv in model.modules() if isinstance(conv, nn.Conv2d))


@pytest.mark.parametrize(("depth", "per_stage"), [(1, [1, 0, 0]), (4, [2, 1, 1]), (9, [3, 3, 3])])
def test_depth_sets_the_number_of_residual_blocks(depth: int, per_stage: list[int]) -> None:
    model = DeepResNet(depth=depth, width=8)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == depth
    # three stride-2 convolutions split the blocks into stages
    stages, current = [], None
    for layer in model.features:
        if isinstance(layer, ResidualBlock):
            current.append(layer)
        else:
            current = []
            stages.append(current)
    assert [len(stage) for stage in stages] == per_stage


def test_features_are_downsampled_eight_times() -> None:
    # three stride-2 convolutions: 96 -> 48 -> 24 -> 12 (the (B, 1) logits: test_model_contract)
    model = DeepResNet(in_channels=3, depth=3, width=8)
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, 96, 96)).shape == (1, 8, 12, 12)


def test_residual_branches_keep_standard_kaiming_init() -> None:
    width = 32
    torch.manual_seed(0)
    model = DeepResNet(depth=6, width=width)
    expected_std = math.sqrt(2.0 / (width * 9))  # kaiming_normal_, fan_out, relu
    for block in (m for m in model.modules() if isinstance(m, ResidualBlock)):
        for conv in (block.conv1, block.conv2):  # no zero-init of the last conv (no Fixup)
            assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.1)
            assert torch.count_nonzero(conv.bias) == 0


def test_activations_grow_with_depth_without_normalization() -> None:
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    scales = {}
    for depth in (3, 24):
        torch.manual_seed(0)
        with torch.no_grad():
            scales[depth] = DeepResNet(depth=depth, width=16).features(x).std().item()
    assert scales[24] > 10 * scales[3]


def test_weights_file_round_trip(tmp_path) -> None:
    source = DeepResNet(depth=4, width=8)
    path = tmp_path / "deep.pt"
    torch.save(source.state_dict(), path)
    cfg = ModelConfig(arch="deep_resnet", depth=4, width=8, encoder_weights=str(path))
    loaded = build_model(cfg, "classification")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_weights_of_another_depth_are_refused(tmp_path) -> None:
    path = tmp_path / "deep.pt"
    torch.save(DeepResNet(depth=3, width=8).state_dict(), path)
    cfg = ModelConfig(arch="deep_resnet", depth=4, width=8, encoder_weights=str(path))
    # depth 3 has blocks at features.1, .3, .5; depth 4 at .1, .2, .4, .6
    expected = f"{path}: not deep_resnet weights: 16 keys missing, first 'features.2.conv1.weight'"
    with pytest.raises(MedsegError, match=re.escape(expected)):
        build_model(cfg, "classification")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depth": 0}, "model.depth and model.width must be >= 1"),
        ({"width": 0}, "model.depth and model.width must be >= 1"),
        ({"encoder_weights": "imagenet"}, "deep_resnet has no 'imagenet' weights"),
    ],
)
def test_bad_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(MedsegError, match=message):
        build_model(ModelConfig(arch="deep_resnet", **changes), "classification")
