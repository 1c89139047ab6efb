"""Backward gradient normalization (BGN; Cabana & Lago-Fernández 2021, arXiv:2106.09475).

A BGN node is the identity in the forward pass; in the backward pass it rescales each
sample's incoming gradient to unit root-mean-square, keeping its direction. With
``model.bgn: true`` :func:`add_backward_grad_norm` puts one after every residual block
(torchvision ``BasicBlock`` / ``Bottleneck``, as in smp's ResNet encoders and torchvision's
ResNet, and medseg's :class:`~medseg.models.deep_resnet.ResidualBlock`) and after every smp
U-Net decoder stage. A node has no parameters or buffers and is applied by a forward hook, so
the ``state_dict`` keys are those of the model without nodes.

Example:
    >>> model = build_model(ModelConfig(arch="deep_resnet", depth=4, width=8), "classification")
    >>> add_backward_grad_norm(model)
    ['features.1', 'features.2', 'features.4', 'features.6']
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from medseg.models.deep_resnet import ResidualBlock

#: the child-module name under which a block holds its node
NODE_NAME = "bgn"


def unit_rms(grad: Tensor) -> Tensor:
    """Each sample of ``grad`` (each slice along dim 0) divided by its root-mean-square.

    ``g_b · sqrt(n_b) / ||g_b||`` with ``n_b`` the elements per sample. A zero sample stays
    zero; the non-finite entries of a sample holding inf or NaN come out as NaN (so a loss
    scaler still sees the overflow).
    Statistics are taken in fp32 (fp64 for fp64 input) after an exact power-of-two rescaling
    of each sample, so magnitudes from 1e-38 to 3e38 are normalized correctly; the result is
    rounded once to ``grad``'s dtype.

    Args:
        grad: a tensor with a batch dimension first.

    Raises:
        ValueError: ``grad`` has no dimensions.

    Example:
        >>> unit_rms(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.8485, 1.1314],
                [0.0000, 0.0000]])
    """
    if grad.ndim == 0:
        raise ValueError("backward gradient normalization needs a batch dimension, got a scalar")
    dtype = torch.promote_types(grad.dtype, torch.float32)
    with torch.autocast(grad.device.type, enabled=False):
        samples = grad.reshape(grad.shape[0], -1).to(dtype)
        max_abs = torch.linalg.vector_norm(samples, math.inf, dim=1, keepdim=True)
        _, exponent = torch.frexp(max_abs)
        max_exponent = math.floor(math.log2(torch.finfo(dtype).max))  # a finite scale for subnormals
        scale = torch.ldexp(torch.ones_like(max_abs), (-exponent).clamp_max(max_exponent))
        scaled = samples * scale
        norm = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
        factor = torch.where(norm > 0, math.sqrt(samples.shape[1]) / norm, 0.0)
        return (scaled * factor).reshape(grad.shape).to(grad.dtype)


class _UnitRmsGradient(torch.autograd.Function):
    """Identity forward (a view), :func:`unit_rms` of the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return unit_rms(grad)


class BackwardGradNorm(nn.Module):
    """A BGN node: returns its input unchanged (a view of it); its backward passes on each
    sample's gradient rescaled to unit root-mean-square (:func:`unit_rms`). It has no
    parameters or buffers.

    Example:
        >>> x = torch.tensor([[3.0, 4.0]], requires_grad=True)
        >>> (BackwardGradNorm()(x) * 10).sum().backward()
        >>> x.grad
        tensor([[1., 1.]])
    """

    def forward(self, x: Tensor) -> Tensor:
        return _UnitRmsGradient.apply(x)


def node_targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules a BGN node follows: residual blocks and U-Net decoder stages, by name."""
    # smp and torchvision load on first use, as in medseg.models.unet
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
    from torchvision.models.resnet import BasicBlock, Bottleneck

    kinds = (BasicBlock, Bottleneck, ResidualBlock, UnetDecoderBlock)
    return [(name, module) for name, module in model.named_modules() if isinstance(module, kinds)]


def add_backward_grad_norm(model: nn.Module) -> list[str]:
    """Put a :class:`BackwardGradNorm` after every module of :func:`node_targets`, in place.

    Each target gets the node as a child named ``bgn`` and a forward hook that returns
    ``bgn(output)``. Nodes have no state, so ``state_dict`` keys do not change: a checkpoint
    of the model without nodes loads into it and gives the same forward outputs. A target that
    already has a node is left as it is.

    Args:
        model: any network; only the target modules inside it are changed.

    Returns:
        The qualified names of the modules followed by a node, in ``named_modules`` order.

    Example:
        >>> add_backward_grad_norm(smp.Unet("resnet18", encoder_weights=None))[:2]
        ['encoder.layer1.0', 'encoder.layer1.1']
    """
    names = []
    for name, module in node_targets(model):
        if not isinstance(getattr(module, NODE_NAME, None), BackwardGradNorm):
            module.add_module(NODE_NAME, BackwardGradNorm())
            module.register_forward_hook(_apply_node)
        names.append(name)
    return names


def _apply_node(module: nn.Module, args: Any, output: Tensor) -> Tensor:
    """Forward hook: the module's output passed through its BGN node."""
    node = getattr(module, NODE_NAME)
    return node(output)
