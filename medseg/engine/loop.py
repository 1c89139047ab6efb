"""One training epoch: micro-batches, gradient accumulation, optimizer and schedule steps."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LRScheduler

from medseg.config import TrainConfig
from medseg.engine.callbacks import StepInfo
from medseg.engine.distributed import DistContext, mean_over_ranks
from medseg.engine.loaders import TrainLoader
from medseg.engine.progress import Progress
from medseg.engine.seeding import reseed_transforms
from medseg.engine.step import TrainStep
from medseg.errors import MedsegError


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training measured."""

    loss: float  # mean step loss
    lr: float  # learning rate of the epoch's last step
    images_per_s: float  # over all ranks
    seconds: float
    global_step: int  # optimizer steps of the run so far


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
) -> EpochStats:
    """Train for one epoch and return its statistics.

    Raises:
        MedsegError: when the loss becomes NaN or infinite (before the optimizer step, so the
            weights and the checkpoints on disk stay as they were).
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
    images_seen, loss_sum = 0, 0.0
    group_loss = torch.zeros((), device=ctx.device)
    lr = float(scheduler.get_last_lr()[0])
    for index, batch in enumerate(itertools.islice(data.loader, batches)):
        group_start = index - index % accumulate
        group_size = min(accumulate, batches - group_start)
        closes_group = index == group_start + group_size - 1

        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        loss = step.backward(images, labels, loss_weight=1.0 / group_size, sync=closes_group)
        group_loss = group_loss + loss / group_size
        images_seen += len(images) * ctx.world_size
        if not closes_group:
            continue

        step_loss = mean_over_ranks(group_loss, ctx).item()
        group_loss = torch.zeros((), device=ctx.device)
        if not math.isfinite(step_loss):
            saved = last_good_checkpoint if last_good_checkpoint.is_file() else "none written yet"
            raise MedsegError(
                f"loss became {step_loss} at epoch {epoch} step {global_step + 1}; "
                f"last good checkpoint: {saved}"
            )
        global_step += 1
        step_in_epoch = index // accumulate + 1
        log_step = global_step % train_cfg.log_every == 0
        lr = float(scheduler.get_last_lr()[0])
        grad_stats = step.optimizer_step(with_stats=log_step and train_cfg.log_grad_stats)
        scheduler.step()
        loss_sum += step_loss

        images_per_s = images_seen / max(time.perf_counter() - start, 1e-9)
        progress.step(step_in_epoch, steps, step_loss, lr, images_per_s)
        before, after = grad_stats if grad_stats is not None else (None, None)
        on_step(StepInfo(epoch=epoch, step=global_step, loss=step_loss, lr=lr, rank=ctx.rank,
                         grad_stats_before=before, grad_stats_after=after))

    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    return EpochStats(
        loss=loss_sum / max(steps, 1), lr=lr, images_per_s=images_seen / max(seconds, 1e-9),
        seconds=seconds, global_step=global_step,
    )
