"""ResNet-UNet for binary segmentation: smp's ``Unet`` with a ResNet-18/34/50 encoder.

Example:
    >>> model = build_unet(ModelConfig(arch="unet", encoder="resnet18"))
    >>> model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from medseg.models.encoders import check_encoder_name, load_encoder_weights

if TYPE_CHECKING:
    from medseg.config import ModelConfig


def build_unet(model_cfg: ModelConfig) -> nn.Module:
    """smp ``Unet(encoder, classes=1)`` returning logits (B, 1, H, W); H and W multiples of 32.

    The encoder is built with 3 input channels, given its weights (see
    :func:`~medseg.models.encoders.load_encoder_weights`), then adapted to
    ``model_cfg.in_channels`` the way smp adapts pretrained encoders.

    Raises:
        MedsegError: on an unsupported encoder or unusable ``encoder_weights``.
    """
    import segmentation_models_pytorch as smp

    check_encoder_name(model_cfg.encoder)
    model = smp.Unet(
        encoder_name=model_cfg.encoder, encoder_weights=None, in_channels=3, classes=1
    )
    pretrained = load_encoder_weights(model.encoder, model_cfg.encoder, model_cfg.encoder_weights)
    model.encoder.set_in_channels(model_cfg.in_channels, pretrained=pretrained)
    return model
