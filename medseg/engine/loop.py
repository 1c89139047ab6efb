"""One training epoch: micro-batches, gradient accumulation, optimizer and schedule steps,
watched by a :class:`DivergenceGuard`."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import get_total_norm
from torch.optim.lr_scheduler import LRScheduler

from medseg.config import TrainConfig
from medseg.engine.callbacks import GradStats, StepInfo
from medseg.engine.distributed import DistContext, mean_over_ranks
from medseg.engine.loaders import TrainLoader
from medseg.engine.progress import Progress
from medseg.engine.seeding import reseed_transforms
from medseg.engine.step import TrainStep
from medseg.errors import DivergenceError


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training measured."""

    loss: float  # mean step loss
    lr: float  # learning rate of the epoch's last step
    images_per_s: float  # over all ranks
    seconds: float
    global_step: int  # optimizer steps of the run so far


@dataclass
class DivergenceGuard:
    """Stops a run whose loss explodes or whose gradients stay non-finite.

    The reference is the lowest value so far of the smoothed step loss (an exponential
    moving average, weight :attr:`SMOOTHING` for the newest step): a single easy batch does
    not lower it, and a loss that climbs step after step still meets the level it had before.
    Its state goes into every checkpoint, so a resumed run stops where an uninterrupted
    one would.

    Args:
        factor: ``train.divergence_factor``; a step loss above ``factor`` x the reference
            stops the run (None: never).
        max_nonfinite: ``train.max_nonfinite_steps``; more consecutive optimizer steps with
            non-finite gradients (skipped, the weights unchanged) stop the run.
    """

    SMOOTHING = 0.1

    factor: float | None
    max_nonfinite: int
    smoothed: float | None = None  # moving average of the step losses
    floor: float | None = None  # the lowest ``smoothed`` so far
    nonfinite_streak: int = 0  # consecutive skipped steps

    def diverged(self, loss: float) -> str | None:
        """Why ``loss`` (a finite step loss) means divergence, or None; then record it."""
        problem = self.exceeds(loss)
        self.smoothed = loss if self.smoothed is None else (
            (1 - self.SMOOTHING) * self.smoothed + self.SMOOTHING * loss
        )
        self.floor = self.smoothed if self.floor is None else min(self.floor, self.smoothed)
        return problem

    def exceeds(self, loss: float) -> str | None:
        """Why ``loss`` means divergence (non-finite, or over the factor), or None; records
        nothing (for the check after an epoch's last update)."""
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        if self.factor is not None and self.floor is not None and loss > self.factor * self.floor:
            return (f"{loss:.3g} is over train.divergence_factor={self.factor:g} x the lowest "
                    f"smoothed loss so far ({self.floor:.3g})")
        return None

    def too_many_skipped(self, skipped: bool) -> bool:
        """Count a step whose gradients were (not) finite; True past the limit."""
        self.nonfinite_streak = self.nonfinite_streak + 1 if skipped else 0
        return self.nonfinite_streak > self.max_nonfinite

    def state_dict(self) -> dict[str, Any]:
        return {"smoothed": self.smoothed, "floor": self.floor, "nonfinite_streak": self.nonfinite_streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.smoothed, self.floor = state["smoothed"], state["floor"]
        self.nonfinite_streak = int(state["nonfinite_streak"])


def _gradients_finite(step: TrainStep) -> bool:
    """Whether every gradient of the step is finite (unscaled runs; GradScaler checks its own):
    their largest absolute value, NaN if any is NaN, in a few fused kernels."""
    grads = [param.grad for _, param in step.named_parameters if param.grad is not None]
    return not grads or bool(torch.isfinite(get_total_norm(grads, norm_type=math.inf)))


def _optimizer_step(
    step: TrainStep, with_stats: bool
) -> tuple[tuple[GradStats, GradStats] | None, bool]:
    """The optimizer step, skipped when the gradients are not finite: (grad stats, skipped).

    Under fp16 the GradScaler skips such steps itself and lowers its scale; without it the
    gradients are checked here and dropped.
    """
    if step.scaler.is_enabled():
        scale = step.scaler.get_scale()
        stats = step.optimizer_step(with_stats=with_stats)
        return stats, step.scaler.get_scale() < scale
    if not _gradients_finite(step):
        step.optimizer.zero_grad(set_to_none=True)
        return None, True
    return step.optimizer_step(with_stats=with_stats), False


def _last_good(checkpoint: Path) -> str:
    """The end of a stop message: the checkpoint a resume would continue from."""
    return f"last good checkpoint: {checkpoint if checkpoint.is_file() else 'none written yet'}"


def epoch_length(train_cfg: TrainConfig, batches_in_loader: int) -> tuple[int, int]:
    """(micro-batches, optimizer steps) of one epoch, honouring ``train.max_steps_per_epoch``.

    Every ``train.accumulate`` micro-batches make one optimizer step; a shorter last group
    at the end of the epoch makes one too.
    """
    batches = batches_in_loader
    if train_cfg.max_steps_per_epoch is not None:
        batches = min(batches, train_cfg.max_steps_per_epoch * train_cfg.accumulate)
    return batches, math.ceil(batches / train_cfg.accumulate)


def train_one_epoch(
    step: TrainStep,
    data: TrainLoader,
    scheduler: LRScheduler,
    *,
    epoch: int,
    train_cfg: TrainConfig,
    ctx: DistContext,
    global_step: int,
    progress: Progress,
    on_step: Callable[[StepInfo], None],
    last_good_checkpoint: Path,
    guard: DivergenceGuard,
) -> EpochStats:
    """Train for one epoch and return its statistics.

    Raises:
        DivergenceError: when the loss becomes NaN or infinite or diverges (see ``guard``), or
            the gradients stay non-finite too long; raised before the optimizer step, so the
            checkpoints on disk stay as they were and the epoch writes nothing.
    """
    step.model.train()
    if data.sampler is not None:
        data.sampler.set_epoch(epoch)
    if data.loader.num_workers == 0:
        reseed_transforms(data.loader.dataset, data.generator)
    batches, steps = epoch_length(train_cfg, len(data.loader))
    accumulate = train_cfg.accumulate
    progress.start_epoch(epoch, train_cfg.epochs, steps)

    start = time.perf_counter()
    first_step = global_step
    images_seen, loss_sum = 0, 0.0
    group_loss = torch.zeros((), device=ctx.device)
    lr = float(scheduler.get_last_lr()[0])
    for index, batch in enumerate(itertools.islice(data.loader, batches)):
        group_start = index - index % accumulate
        group_size = min(accumulate, batches - group_start)
        closes_group = index == group_start + group_size - 1

        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        probe = (closes_group and train_cfg.log_grad_stats
                 and (global_step + 1) % train_cfg.log_every == 0)
        loss = step.backward(images, labels, loss_weight=1.0 / group_size, sync=closes_group,
                             probe=probe)
        group_loss = group_loss + loss / group_size
        images_seen += len(images) * ctx.world_size
        if not closes_group:
            continue

        step_loss = mean_over_ranks(group_loss, ctx).item()
        group_loss = torch.zeros((), device=ctx.device)
        where = f"epoch {epoch} step {global_step + 1}"
        if not math.isfinite(step_loss):
            raise DivergenceError(
                f"loss became {step_loss} at {where}; {_last_good(last_good_checkpoint)}"
            )
        diverged = guard.diverged(step_loss)
        if diverged:
            raise DivergenceError(
                f"loss diverged at {where}: {diverged}; lower optim.lr or add "
                f"train.warmup_epochs; {_last_good(last_good_checkpoint)}"
            )
        global_step += 1
        step_in_epoch = index // accumulate + 1
        log_step = global_step % train_cfg.log_every == 0
        lr = float(scheduler.get_last_lr()[0])
        grad_stats, skipped = _optimizer_step(step, log_step and train_cfg.log_grad_stats)
        if guard.too_many_skipped(skipped):
            raise DivergenceError(
                f"gradients were not finite for {guard.nonfinite_streak} consecutive steps, up to "
                f"{where} (train.max_nonfinite_steps={guard.max_nonfinite}; the weights were not "
                f"updated by them); {_last_good(last_good_checkpoint)}"
            )
        scheduler.step()
        loss_sum += step_loss

        images_per_s = images_seen / max(time.perf_counter() - start, 1e-9)
        progress.step(step_in_epoch, steps, step_loss, lr, images_per_s)
        before, after = grad_stats if grad_stats is not None else (None, None)
        on_step(StepInfo(epoch=epoch, step=global_step, loss=step_loss, lr=lr, rank=ctx.rank,
                         grad_stats_before=before, grad_stats_after=after,
                         overlap=step.take_overlap()))

    if global_step > first_step:  # the epoch's last update, before its checkpoint is written
        final_loss = mean_over_ranks(step.loss_after_step(images, labels), ctx).item()
        diverged = guard.exceeds(final_loss)
        if diverged:
            raise DivergenceError(
                f"loss diverged after the last step of epoch {epoch} (step {global_step}): "
                f"{diverged}; lower optim.lr or add train.warmup_epochs; "
                f"{_last_good(last_good_checkpoint)}"
            )
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    return EpochStats(
        loss=loss_sum / max(steps, 1), lr=lr, images_per_s=images_seen / max(seconds, 1e-9),
        seconds=seconds, global_step=global_step,
    )
