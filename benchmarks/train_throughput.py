"""Training throughput of medseg's training step against a bare PyTorch loop.

The medseg side runs the engine's own step (:class:`medseg.engine.step.TrainStep`: forward,
backward, optimizer step, as ``medseg train`` calls it, plus the schedule step and the loss
read-back the loop does every step). The bare side is a hand-written smp Unet + Adam loop on
the same network, loss, batch and image size. Variants are timed in interleaved rounds so
that machine noise hits them alike; the table reports the median step time.

On CUDA it also times bf16 autocast + channels-last and reports peak GPU memory at batch 16
and 32.

Usage:
    python benchmarks/train_throughput.py --quick                 # CPU, a smoke run
    python benchmarks/train_throughput.py                         # CPU: resnet50, batch 8, 128x128
    python benchmarks/train_throughput.py --device cuda --size 256 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import segmentation_models_pytorch as smp
import torch

from medseg.config import ModelConfig, TrainConfig
from medseg.engine.schedule import build_scheduler
from medseg.engine.step import TrainStep, resolve_precision
from medseg.models import build_model
from medseg.optim import build_optimizer
from medseg.tasks import SEGMENTATION

StepFn = Callable[[torch.Tensor, torch.Tensor], None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(encoder: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="unet", encoder=encoder), "segmentation").to(device).train()


def bare_step(encoder: str, device: torch.device) -> StepFn:
    """The baseline: smp Unet, fp32 forward/backward, Adam, zero_grad, loss read-back."""
    torch.manual_seed(0)
    model = smp.Unet(encoder_name=encoder, encoder_weights=None, classes=1).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = SEGMENTATION.build_loss()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    return step


def medseg_step(encoder: str, device: torch.device, optimizer_name: str, amp: str, channels_last: str) -> StepFn:
    """medseg's training step with the given optimizer and precision."""
    model = _model(encoder, device)
    precision = resolve_precision(amp, device, channels_last)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(optimizer_name, model.parameters(), lr=1e-3)
    scheduler = build_scheduler(optimizer, TrainConfig(epochs=1000), steps_per_epoch=1000)
    train_step = TrainStep(model, SEGMENTATION.build_loss(), optimizer, precision)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = train_step.backward(images, labels)
        train_step.optimizer_step()
        scheduler.step()
        loss.item()

    return step


def _batch(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float()
    return images.to(device), labels.to(device)


def time_variants(variants: dict[str, StepFn], batch: int, size: int, device: torch.device,
                  warmup: int, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each variant, over ``rounds`` interleaved rounds."""
    images, labels = _batch(batch, size, device)
    for step in variants.values():
        for _ in range(warmup):
            step(images, labels)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(images, labels)
            _sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_gib(step: StepFn, batch: int, size: int, device: torch.device) -> float:
    images, labels = _batch(batch, size, device)
    torch.cuda.reset_peak_memory_stats(device)
    step(images, labels)
    step(images, labels)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, numbers are rough")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup, rounds, steps = (1, 2, 1) if args.quick else (3, 5, 4)

    variants = {
        "bare smp Unet + Adam (fp32)": bare_step(args.encoder, device),
        "medseg step, adam (fp32)": medseg_step(args.encoder, device, "adam", "off", "off"),
        "medseg step, adam+znorm (fp32)": medseg_step(args.encoder, device, "adam+znorm", "off", "off"),
    }
    if device.type == "cuda":
        variants["medseg step, adam+znorm (bf16, channels-last)"] = medseg_step(
            args.encoder, device, "adam+znorm", "bf16", "on")
    seconds = time_variants(variants, args.batch, args.size, device, warmup, rounds, steps)

    baseline = seconds["bare smp Unet + Adam (fp32)"]
    print(f"# train throughput: Unet-{args.encoder}, batch {args.batch}, {args.size}x{args.size}, "
          f"{device}, {torch.get_num_threads()} CPU threads{' (quick)' if args.quick else ''}\n")
    print("| variant | s/step | images/s | vs bare |")
    print("|---|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.3f} | {args.batch / value:.1f} | {baseline / value:.2f}x |")
    if device.type == "cuda":
        print("\n| peak GPU memory, medseg bf16 + channels-last | GiB |\n|---|---|")
        for batch in (16, 32):
            step = medseg_step(args.encoder, device, "adam+znorm", "bf16", "on")
            print(f"| batch {batch}, {args.size}x{args.size} | {peak_memory_gib(step, batch, args.size, device):.2f} |")


if __name__ == "__main__":
    main()
