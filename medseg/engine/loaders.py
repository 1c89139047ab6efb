"""Data loaders of a run: a seeded shuffle, a :class:`DistributedSampler` under torchrun."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.data.utils import worker_init_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from medseg.config import Config
from medseg.engine.distributed import DistContext


@dataclass
class TrainLoader:
    """The training loader and what an epoch needs to reseed it."""

    loader: DataLoader
    sampler: DistributedSampler | None
    generator: torch.Generator


def build_train_loader(dataset: Dataset, cfg: Config, ctx: DistContext) -> TrainLoader:
    """Shuffled batches drawn from a generator seeded with ``seed + rank``.

    Under torchrun each rank reads its own shard (a :class:`DistributedSampler` seeded with
    ``cfg.seed``; call ``sampler.set_epoch`` every epoch). Workers seed their transforms with
    MONAI's ``worker_init_fn`` from seeds drawn from the generator.
    """
    generator = torch.Generator().manual_seed(cfg.seed + ctx.rank)
    sampler: DistributedSampler | None = None
    if ctx.is_distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed
        )
    loader = DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=cfg.data.num_workers,
        worker_init_fn=worker_init_fn,
        pin_memory=ctx.device.type == "cuda",
    )
    return TrainLoader(loader=loader, sampler=sampler, generator=generator)


def build_eval_loader(
    dataset: Dataset, batch_size: int, num_workers: int, device: torch.device
) -> DataLoader:
    """Batches in dataset order, for validation, testing and ``medseg evaluate``.

    Masks come at their native size (see :func:`native_collate`).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=native_collate,
        pin_memory=device.type == "cuda",
    )


def native_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """PyTorch's default collate, except that masks of different sizes stay a list.

    Evaluation masks keep the size of their slice, which a dataset may mix; images are all
    resized to the training size and always stack.
    """
    labels = [sample["label"] for sample in samples]
    if all(label.shape == labels[0].shape for label in labels):
        return default_collate(list(samples))
    batch = default_collate([{k: v for k, v in sample.items() if k != "label"} for sample in samples])
    batch["label"] = labels
    return batch
