"""Hooks into :func:`medseg.engine.train`, e.g. for ``medseg compare`` to record gradients.

Example:
    >>> class GradNorms(TrainCallback):
    ...     def __init__(self):
    ...         self.rows = []
    ...     def on_step_end(self, info):
    ...         if info.grad_stats_after is not None:
    ...             self.rows.append((info.step, info.grad_stats_after))
    >>> train(cfg, callbacks=[GradNorms()])                    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:  # an annotation only: medseg.analysis imports torchvision (torch._dynamo)
    from medseg.analysis import OverlapRow

GradStats = dict[str, dict[str, float]]


@dataclass(frozen=True)
class StepInfo:
    """One optimizer step, as seen by callbacks.

    ``grad_stats_before`` / ``grad_stats_after`` are :func:`medseg.optim.gradient_stats` of
    the gradients before the optimizer step (unscaled) and after it (what the optimizer used,
    e.g. ZNorm-normalized). They are set at log steps (every ``train.log_every`` steps) when
    ``train.log_grad_stats`` is true, and None otherwise. ``overlap`` is, at the same steps,
    :meth:`medseg.analysis.OverlapProbe.rows` of the step's last micro-batch: per residual
    block, the skip-path and branch parts of the gradient at its input (unscaled).
    """

    epoch: int
    step: int  # optimizer steps so far (1-based, counted over the whole run)
    loss: float  # mean over the step's micro-batches and over ranks
    lr: float  # learning rate this step used
    rank: int
    grad_stats_before: GradStats | None
    grad_stats_after: GradStats | None
    overlap: list[OverlapRow] | None = None


@dataclass(frozen=True)
class EpochInfo:
    """The end of one epoch: its ``history.csv`` row, after the checkpoints were written."""

    epoch: int
    row: dict[str, Any]
    is_best: bool
    model: nn.Module  # the unwrapped network (no DDP/compile wrapper)
    rank: int


class TrainCallback:
    """Base class of training callbacks; override the hooks you need.

    Callbacks run on every rank (``info.rank`` tells which). An exception raised in a hook
    stops training; the checkpoints already written stay intact.
    """

    def on_step_end(self, info: StepInfo) -> None:
        """Called after every optimizer step."""

    def on_epoch_end(self, info: EpochInfo) -> None:
        """Called after every epoch's validation and checkpoints."""
