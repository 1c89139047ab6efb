"""A deep residual CNN with no normalization layers: the optimizer stress case.

Without BatchNorm nothing rescales the signal between blocks: each identity skip adds the
block's output to its input, so with standard Kaiming init activations and gradients grow
with depth. This model exists to show what gradient normalization (ZNorm) does there, so it
deliberately has no Fixup, no zero-initialized residual branch and no other rescaling.

Layout for a 96x96 input (``depth`` blocks spread over three stages of ``width`` channels):
stem conv 3x3 stride 2 (48x48) -> stage 1 -> conv 3x3 stride 2 (24x24) -> stage 2 ->
conv 3x3 stride 2 (12x12) -> stage 3 -> global average pool -> Linear(width, 1).

Example:
    >>> model = DeepResNet(in_channels=3, depth=20, width=32)
    >>> model(torch.zeros(2, 3, 96, 96)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.models.encoders import load_encoder_weights

if TYPE_CHECKING:
    from medseg.config import ModelConfig

STAGES = 3


class ResidualBlock(nn.Module):
    """``relu(x + conv(relu(conv(x))))`` at constant width and resolution, no normalization."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


def _downsample(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)
    )


class DeepResNet(nn.Module):
    """``depth`` normalization-free residual blocks at ``width`` channels -> 1 logit.

    Args:
        in_channels: input image channels.
        depth: number of :class:`ResidualBlock` (at least 1), split over three stages as
            evenly as possible, earlier stages taking the remainder.
        width: channels of every convolution.
    """

    def __init__(self, in_channels: int = 3, depth: int = 20, width: int = 32) -> None:
        super().__init__()
        blocks_per_stage = [depth // STAGES + (stage < depth % STAGES) for stage in range(STAGES)]
        layers: list[nn.Module] = []
        for stage, n_blocks in enumerate(blocks_per_stage):
            layers.append(_downsample(in_channels if stage == 0 else width, width))
            layers.extend(ResidualBlock(width) for _ in range(n_blocks))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def build_deep_resnet(model_cfg: ModelConfig) -> nn.Module:
    """:class:`DeepResNet` from ``model_cfg.depth``, ``width`` and ``in_channels``.

    ``model_cfg.encoder`` does not apply. ``encoder_weights`` may be a local file holding a
    whole :class:`DeepResNet` state_dict of the same depth and width; there are no ImageNet
    weights.

    Raises:
        MedsegError: on ``depth`` or ``width`` below 1, ``"imagenet"`` weights, or a weights
            file that does not match.
    """
    if model_cfg.depth < 1 or model_cfg.width < 1:
        raise MedsegError(
            f"model.depth and model.width must be >= 1 for deep_resnet, got depth "
            f"{model_cfg.depth} and width {model_cfg.width}"
        )
    if model_cfg.encoder_weights == "imagenet":
        raise MedsegError(
            "model.encoder_weights: deep_resnet has no 'imagenet' weights; use null or a local file"
        )
    model = DeepResNet(model_cfg.in_channels, model_cfg.depth, model_cfg.width)
    load_encoder_weights(model, "deep_resnet", model_cfg.encoder_weights, skip_prefixes=())
    return model
