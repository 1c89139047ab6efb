"""Gradient overlap in residual blocks (Yun 2024b, arXiv:2410.21564).

A residual block computes ``y = merge(F(x) + s(x))`` with ``s`` the skip path (the identity or
a 1x1 downsampling convolution) and ``F`` the branch. The gradient that reaches ``x`` from the
block is the sum of a skip-path part ``J_s^T g`` and a branch part ``J_F^T g``, where ``g`` is
the gradient at the sum. :class:`OverlapProbe` records, for one backward pass, the norm of
each part, the norm of their sum and their cosine, block by block.

How it works: inside the context each residual block's ``forward`` is replaced (on the
instance, restored on exit) by one that feeds the branch and the skip path two separate
views of ``x`` and hooks their gradients. The views add nothing to the forward values, and
autograd sums the two parts into ``x``'s gradient exactly as it sums them for the original
block.

Example:
    >>> with OverlapProbe(model) as probe:
    ...     loss_fn(model(images), labels).backward()
    >>> probe.rows()[0]
    {'block': 'encoder.layer1.0', 'skip_norm': 0.31, 'branch_norm': 0.12, 'total_norm': 0.35,
     'cosine': 0.42}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypedDict

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from medseg.models.deep_resnet import ResidualBlock


class OverlapRow(TypedDict):
    """One residual block's gradient parts at its input, for one backward pass."""

    block: str  # the block's qualified name in model.named_modules()
    skip_norm: float  # ||J_s^T g||: the part that came through the skip path
    branch_norm: float  # ||J_F^T g||: the part that came through the residual branch
    total_norm: float  # ||J_s^T g + J_F^T g||: the block's whole gradient at its input
    cosine: float  # cosine between the two parts (NaN when one of them is zero)


#: the numbers of an overlap row, after its block name
OVERLAP_VALUES: tuple[str, ...] = tuple(key for key in OverlapRow.__annotations__ if key != "block")


@dataclass(frozen=True)
class ResidualSplit:
    """How a block type computes its output: ``merge(block, branch(block, x), skip(block, x))``."""

    branch: Callable[[Any, Tensor], Tensor]
    skip: Callable[[Any, Tensor], Tensor]
    merge: Callable[[Any, Tensor, Tensor], Tensor]


def _basic_branch(block: BasicBlock, x: Tensor) -> Tensor:
    return block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))


def _bottleneck_branch(block: Bottleneck, x: Tensor) -> Tensor:
    out = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))
    return block.bn3(block.conv3(out))


def _torchvision_skip(block: BasicBlock | Bottleneck, x: Tensor) -> Tensor:
    return x if block.downsample is None else block.downsample(x)


def _relu_of_sum(block: BasicBlock | Bottleneck | ResidualBlock, branch: Tensor, skip: Tensor) -> Tensor:
    return block.relu(branch + skip)


def _deep_resnet_branch(block: ResidualBlock, x: Tensor) -> Tensor:
    return block.conv2(block.relu(block.conv1(x)))


def _identity(block: nn.Module, x: Tensor) -> Tensor:
    return x


#: the residual block types the probe knows, with the computation of their forward
RESIDUAL_SPLITS: dict[type[nn.Module], ResidualSplit] = {
    BasicBlock: ResidualSplit(_basic_branch, _torchvision_skip, _relu_of_sum),
    Bottleneck: ResidualSplit(_bottleneck_branch, _torchvision_skip, _relu_of_sum),
    ResidualBlock: ResidualSplit(_deep_resnet_branch, _identity, _relu_of_sum),
}


class _BlockRecord:
    """The two gradient parts of one block call; reduced to four numbers once both arrived."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parts: dict[str, Tensor] = {}
        self.stats: Tensor | None = None  # skip norm, branch norm, total norm, dot product

    def hook(self, part: str) -> Callable[[Tensor], None]:
        def record(grad: Tensor) -> None:
            self.parts[part] = grad.detach()
            if len(self.parts) == 2:
                self._reduce()

        return record

    def _reduce(self) -> None:
        dtype = torch.promote_types(self.parts["skip"].dtype, torch.float32)
        skip, branch = (self.parts.pop(part).to(dtype).flatten() for part in ("skip", "branch"))
        norms = torch.linalg.vector_norm(torch.stack([skip, branch, skip + branch]), dim=1)
        self.stats = torch.cat([norms, torch.dot(skip, branch).reshape(1)])


class OverlapProbe:
    """Record the skip-path and branch parts of the gradient at every residual block's input.

    Use it around one forward and backward pass. Blocks are the modules of ``model`` whose
    type is in :data:`RESIDUAL_SPLITS` (torchvision ``BasicBlock`` / ``Bottleneck``, used by
    smp's ResNet encoders and torchvision's ResNet, and medseg's deep-ResNet
    :class:`~medseg.models.deep_resnet.ResidualBlock`). A block called with grad disabled, or
    on an input that does not require grad, runs unchanged and is not recorded.

    Args:
        model: the network (not a DDP or ``torch.compile`` wrapper: pass the module inside,
            and run the forward through the eager model, so the names carry no prefix and no
            compiled graph sees the probe).

    Example:
        >>> with OverlapProbe(model) as probe:
        ...     loss.backward()                  # forward and backward inside the context
        >>> [row["cosine"] for row in probe.rows()]
    """

    def __init__(self, model: nn.Module) -> None:
        self.blocks = [
            (name, module) for name, module in model.named_modules()
            if type(module) in RESIDUAL_SPLITS
        ]
        self._records: list[_BlockRecord] = []

    def __enter__(self) -> OverlapProbe:
        self._records = []
        for name, block in self.blocks:
            forward = functools.partial(self._forward, name, block, RESIDUAL_SPLITS[type(block)])
            block.forward = forward
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for _, block in self.blocks:
            del block.forward

    def _forward(self, name: str, block: nn.Module, split: ResidualSplit, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return type(block).forward(block, x)
        record = _BlockRecord(name)
        self._records.append(record)
        skip_input, branch_input = x.view_as(x), x.view_as(x)
        skip_input.register_hook(record.hook("skip"))
        branch_input.register_hook(record.hook("branch"))
        return split.merge(block, split.branch(block, branch_input), split.skip(block, skip_input))

    def rows(self) -> list[OverlapRow]:
        """One row per recorded block call whose backward has run, in forward order.

        The numbers reach the host in one transfer. ``cosine`` is NaN when a part is zero
        (clamped to [-1, 1] otherwise).
        """
        done = [record for record in self._records if record.stats is not None]
        if not done:
            return []
        values = torch.stack([record.stats for record in done if record.stats is not None])
        rows = []
        for record, (skip, branch, total, dot) in zip(done, values.tolist(), strict=True):
            cosine = max(-1.0, min(1.0, dot / (skip * branch))) if skip * branch > 0 else math.nan
            rows.append(OverlapRow(block=record.name, skip_norm=skip, branch_norm=branch,
                                   total_norm=total, cosine=cosine))
        return rows
