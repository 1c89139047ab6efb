"""Networks: ResNet-UNet (segmentation), ResNet and a normalization-free deep ResNet (classification)."""

from __future__ import annotations

from medseg.models.bgn import BackwardGradNorm, add_backward_grad_norm, unit_rms
from medseg.models.deep_resnet import DeepResNet, ResidualBlock, build_deep_resnet
from medseg.models.encoders import ENCODER_NAMES, load_encoder_weights
from medseg.models.factory import MODELS, ModelEntry, build_model
from medseg.models.resnet import build_resnet
from medseg.models.unet import build_unet

__all__ = [
    "ENCODER_NAMES",
    "MODELS",
    "BackwardGradNorm",
    "DeepResNet",
    "ModelEntry",
    "ResidualBlock",
    "add_backward_grad_norm",
    "build_deep_resnet",
    "build_model",
    "build_resnet",
    "build_unet",
    "load_encoder_weights",
    "unit_rms",
]
