"""Process-group setup for ``torchrun``: one process per device, rank 0 writes the outputs.

A plain ``medseg train`` is a world of one, in which every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from medseg.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and evaluates."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(setting: str, local_rank: int = 0, *, option: str = "train.device") -> torch.device:
    """A device setting as a :class:`torch.device`: "auto" is this rank's GPU when there is one.

    Args:
        setting: "auto", "cpu", "cuda", "cuda:1", ...
        local_rank: the GPU "auto" and "cuda" pick.
        option: the config key or command-line option the setting came from, for messages.

    Raises:
        ConfigError: for a malformed device or a CUDA device on a machine without one.
    """
    if setting == "auto":
        setting = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise ConfigError(f"{option}: {setting!r} is not a device (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}: {setting!r} asked for, but no CUDA GPU is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_setting: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (if any).

    NCCL on GPUs, gloo on CPUs. Without ``WORLD_SIZE`` > 1 this only resolves the device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_setting, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed(ctx: DistContext) -> None:
    """Leave the process group joined by :func:`init_distributed`."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a world of one)."""
    if ctx.is_distributed:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (the tensor itself in a world of one)."""
    if not ctx.is_distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def gather_to_all(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (``[obj]`` in a world of one)."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_from_main(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
