"""Learning-rate schedules: linear warmup, then cosine / step / constant, per optimizer step.

The schedule is a pure function of the optimizer step count, so a run resumed from a
checkpoint (which stores the scheduler's step count) continues on the same curve.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

from medseg.config import TrainConfig


def lr_factor(
    step: int,
    *,
    kind: str,
    total_steps: int,
    warmup_steps: int = 0,
    decay_every: int = 1,
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Args:
        step: optimizer steps taken so far.
        kind: "cosine" (to 0 at ``total_steps``), "step" (times ``gamma`` every
            ``decay_every`` steps) or "none" (constant).
        total_steps: optimizer steps of the whole run.
        warmup_steps: the first steps ramp linearly from ``1/warmup_steps`` to 1.
        decay_every: "step" only: steps between two decays.
        gamma: "step" only: the decay factor.

    Example:
        >>> lr_factor(5, kind="cosine", total_steps=10)
        0.5
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if kind == "step":
        return gamma ** (step // decay_every)
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, train_cfg: TrainConfig, steps_per_epoch: int
) -> LambdaLR:
    """The run's schedule as a :class:`LambdaLR`, to be stepped after every optimizer step.

    ``train.warmup_epochs`` and ``train.lr_step_epochs`` (default: a third of the epochs) are
    converted to optimizer steps with ``steps_per_epoch``.
    """
    step_epochs = train_cfg.lr_step_epochs or max(1, train_cfg.epochs // 3)
    factor = partial(
        lr_factor,
        kind=train_cfg.scheduler,
        total_steps=train_cfg.epochs * steps_per_epoch,
        warmup_steps=train_cfg.warmup_epochs * steps_per_epoch,
        decay_every=step_epochs * steps_per_epoch,
        gamma=train_cfg.lr_gamma,
    )
    return LambdaLR(optimizer, factor)
