"""The training step: forward and backward on a micro-batch, then the optimizer step.

Mixed precision: bf16 autocast needs no loss scaling; fp16 scales the loss with a
:class:`torch.amp.GradScaler`, whose ``step`` unscales the gradients before calling the
optimizer, so gradient transforms inside the optimizer (ZNorm) see true gradients. Autocast
leaves the parameters in fp32, so their gradients, and the statistics the transforms take of
them, are fp32 too. ``train.amp: auto`` is bf16 on CUDA and on CPUs with native bf16
(:func:`resolve_precision`).

At logging steps the trainer asks for gradient statistics (``optimizer_step(with_stats=True)``)
and for the gradient overlap of the residual blocks on the step's last micro-batch
(``backward(..., probe=True)``, then :meth:`TrainStep.take_overlap`).

Example:
    >>> step = TrainStep(model, loss_fn, optimizer, precision=resolve_precision("off", device))
    >>> loss = step.backward(images, labels, probe=True)
    >>> stats = step.optimizer_step(with_stats=True)
    >>> step.take_overlap()[0]["cosine"]
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medseg.analysis import OverlapProbe, OverlapRow
from medseg.engine.callbacks import GradStats
from medseg.optim import gradient_stats


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast dtype (None: fp32) and whether to scale the loss."""

    device_type: str
    autocast_dtype: torch.dtype | None
    channels_last: bool

    @property
    def scales_loss(self) -> bool:
        return self.autocast_dtype is torch.float16

    @property
    def label(self) -> str:
        """What a reader is told, e.g. "bf16 autocast, channels_last" or "fp32"."""
        names = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast, loss scaling"}
        parts = [names[self.autocast_dtype] if self.autocast_dtype is not None else "fp32"]
        return ", ".join(parts + ["channels_last"] * self.channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware, by torch's own capability queries.

    x86: AVX512_BF16 or AMX (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``: cpuinfo's flags). oneDNN's own
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is not used there: it also says yes for plain
    AVX512 (Skylake), where oneDNN emulates bf16 more slowly than fp32. Arm: that oneDNN query,
    which there is cpuinfo's BF16 extension. Either way oneDNN must be built in, since
    autocast's bf16 convolutions on the CPU run in it.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(amp: str, device: torch.device, channels_last: str = "auto") -> Precision:
    """``train.amp`` and ``train.channels_last`` for ``device``.

    "auto" means bf16 autocast and channels-last memory on CUDA and on a CPU with native bf16
    (:func:`cpu_has_native_bf16`), fp32 and the default layout on other CPUs. On the CPU
    ``channels_last: auto`` follows the bf16 choice: it is on exactly when the forward runs
    in bf16 on such a CPU.
    """
    on_gpu = device.type == "cuda"
    native_bf16 = on_gpu or (device.type == "cpu" and cpu_has_native_bf16())
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
    dtype = (torch.bfloat16 if native_bf16 else None) if amp == "auto" else dtypes[amp]
    if channels_last == "auto":
        layout = on_gpu or (native_bf16 and dtype is torch.bfloat16)
    else:
        layout = channels_last == "on"
    return Precision(device_type=device.type, autocast_dtype=dtype, channels_last=layout)


class TrainStep:
    """Forward/backward on micro-batches and the optimizer step that follows them.

    Args:
        model: the network (possibly wrapped in DDP or compiled), in train mode.
        loss_fn: ``loss_fn(logits, labels) -> scalar``.
        optimizer: from :func:`medseg.optim.build_optimizer`.
        precision: from :func:`resolve_precision`.
        named_parameters: what :func:`medseg.optim.gradient_stats` reports on; pass the
            unwrapped model's so the names carry no DDP/compile prefix (default: ``model``'s).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        named_parameters: Sequence[tuple[str, nn.Parameter]] | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.precision = precision
        self.scaler = torch.amp.GradScaler(precision.device_type, enabled=precision.scales_loss)
        self.named_parameters = list(named_parameters or model.named_parameters())
        self._probed: list[OverlapRow] | None = None

    def backward(
        self, images: torch.Tensor, labels: torch.Tensor, loss_weight: float = 1.0,
        sync: bool = True, probe: bool = False,
    ) -> torch.Tensor:
        """Forward and backward one micro-batch, adding ``loss_weight`` x its gradient to the
        accumulated gradients. Returns the (unweighted, detached) loss.

        ``sync=False`` skips DistributedDataParallel's gradient all-reduce (micro-batches
        before the last one of an accumulation group). ``probe=True`` records the gradient
        overlap of every residual block (:class:`~medseg.analysis.OverlapProbe`) on this
        micro-batch, for :meth:`take_overlap`: norms of the unscaled gradient of
        ``loss_weight`` x its loss. A probed forward runs the eager model (outside ``torch.compile``); the
        values it computes are the same.
        """
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        network = getattr(self.model, "_orig_mod", self.model) if probe else self.model
        overlap = OverlapProbe(_unwrap(self.model)) if probe else None
        no_sync = getattr(self.model, "no_sync", None)  # DDP's, also through torch.compile
        skip_sync = no_sync() if not sync and no_sync is not None else contextlib.nullcontext()
        with skip_sync, overlap or contextlib.nullcontext():
            with self.precision.autocast():
                logits = network(images)
            loss = self.loss_fn(logits.float(), labels)
            self.scaler.scale(loss * loss_weight).backward()
        if overlap is not None:
            self._probed = _unscaled(overlap.rows(), self.scaler.get_scale())
        return loss.detach()

    @torch.no_grad()
    def loss_after_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of a batch with the current weights, as the next step would see it (train
        mode), touching nothing: normalization statistics are restored, no gradient is kept.

        The divergence guard checks every step's loss before its update; this checks the
        last update of an epoch before the epoch's checkpoint is written.
        """
        model = _unwrap(self.model)
        buffers = [buffer.clone() for buffer in model.buffers()]
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            logits = model(images)
        loss = self.loss_fn(logits.float(), labels)
        for buffer, saved in zip(model.buffers(), buffers, strict=True):
            buffer.copy_(saved)
        return loss.detach()

    def optimizer_step(self, *, with_stats: bool = False) -> tuple[GradStats, GradStats] | None:
        """Step the optimizer on the accumulated gradients, then clear them.

        With ``with_stats``, returns per-parameter gradient statistics before the step
        (unscaled) and after it (the gradients the optimizer used, e.g. ZNorm's).
        """
        stats = None
        if with_stats:
            self.scaler.unscale_(self.optimizer)
            before = gradient_stats(self.named_parameters)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if with_stats:
            stats = (before, gradient_stats(self.named_parameters))
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    def take_overlap(self) -> list[OverlapRow] | None:
        """The overlap rows of the last micro-batch run with ``probe=True`` since the previous
        call (None if there was none); call it once per optimizer step."""
        rows, self._probed = self._probed, None
        return rows


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside ``torch.compile`` and DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DistributedDataParallel) else model


def _unscaled(rows: list[OverlapRow], scale: float) -> list[OverlapRow]:
    """``rows`` with the norms divided by the loss scale (cosines do not change)."""
    return [
        OverlapRow(block=row["block"], skip_norm=row["skip_norm"] / scale,
                   branch_norm=row["branch_norm"] / scale, total_norm=row["total_norm"] / scale,
                   cosine=row["cosine"])
        for row in rows
    ]
