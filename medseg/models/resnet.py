"""ResNet classifier for PatchCamelyon patches: a torchvision ResNet-18/34/50 with a 1-logit head.

Example:
    >>> model = build_resnet(ModelConfig(arch="resnet", encoder="resnet18"))
    >>> model(torch.zeros(2, 3, 96, 96)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from medseg.models.encoders import check_encoder_name, load_encoder_weights

if TYPE_CHECKING:
    from medseg.config import ModelConfig


def build_resnet(model_cfg: ModelConfig) -> nn.Module:
    """torchvision ``resnet18/34/50(weights=None)`` with ``fc`` -> ``Linear(features, 1)``.

    Returns logits (B, 1). ``encoder_weights`` fills every layer but the new head; with
    ``in_channels != 3`` the first convolution is adapted as smp adapts its encoders.

    Raises:
        MedsegError: on an unsupported encoder or unusable ``encoder_weights``.
    """
    import torchvision
    from segmentation_models_pytorch.encoders._utils import patch_first_conv

    check_encoder_name(model_cfg.encoder)
    model = getattr(torchvision.models, model_cfg.encoder)(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 1)
    pretrained = load_encoder_weights(model, model_cfg.encoder, model_cfg.encoder_weights)
    if model_cfg.in_channels != 3:
        patch_first_conv(model, model_cfg.in_channels, pretrained=pretrained)
    return model
