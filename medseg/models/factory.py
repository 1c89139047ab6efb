"""Build a network from a :class:`~medseg.config.ModelConfig`: a plain-dict registry.

Example:
    >>> cfg = load_config("configs/demo_lgg.yaml")
    >>> model = build_model(cfg.model, cfg.task)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from medseg.errors import MedsegError
from medseg.models.bgn import add_backward_grad_norm
from medseg.models.deep_resnet import build_deep_resnet
from medseg.models.resnet import build_resnet
from medseg.models.unet import build_unet
from medseg.tasks import task_for_arch

if TYPE_CHECKING:
    from medseg.config import ModelConfig


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: the task it serves and its builder."""

    task: str
    build: Callable[[ModelConfig], nn.Module]
    description: str


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(task_for_arch("unet").name, build_unet, "smp ResNet-UNet, logits (B, 1, H, W)"),
    "resnet": ModelEntry(task_for_arch("resnet").name, build_resnet, "torchvision ResNet, logits (B, 1)"),
    "deep_resnet": ModelEntry(
        task_for_arch("deep_resnet").name, build_deep_resnet, "normalization-free deep ResNet, logits (B, 1)"
    ),
}


def build_model(model_cfg: ModelConfig, task: str) -> nn.Module:
    """Build ``model_cfg.arch`` for ``task`` (a name in :data:`medseg.tasks.TASKS`).

    With ``model_cfg.bgn`` a backward-gradient-normalization node follows every residual
    block and decoder stage (:func:`~medseg.models.bgn.add_backward_grad_norm`); the
    ``state_dict`` keys are the same either way.

    Raises:
        MedsegError: on an unknown architecture (listing the valid ones), an architecture
            that does not serve ``task``, or a bad encoder / weights setting.
    """
    entry = MODELS.get(model_cfg.arch)
    if entry is None:
        raise MedsegError(
            f"model.arch: {model_cfg.arch!r} is unknown; choose one of {', '.join(MODELS)}"
        )
    if entry.task != task:
        valid = [name for name, other in MODELS.items() if other.task == task]
        raise MedsegError(
            f"model.arch: {model_cfg.arch!r} is a {entry.task} model, not {task}; "
            f"for {task} choose one of {', '.join(valid) or 'none'}"
        )
    model = entry.build(model_cfg)
    if model_cfg.bgn:
        add_backward_grad_norm(model)
    return model
