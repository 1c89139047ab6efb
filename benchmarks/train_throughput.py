"""Training throughput of medseg's training step against a bare PyTorch loop.

The medseg side runs the engine's own step (:class:`medseg.engine.step.TrainStep`: forward,
backward, optimizer step, as ``medseg train`` calls it, plus the schedule step and the loss
read-back the loop does every step). The bare side is a hand-written smp Unet + Adam loop on
the same network, loss, batch and image size. Variants are timed in interleaved rounds so
that machine noise hits them alike; the table reports the median step time.

Precisions (``--precisions``, comma-separated; default fp32,bf16,bf16-cl): ``fp32``; ``bf16``:
bf16 autocast; ``bf16-cl``: bf16 autocast and channels-last memory (``train.amp: auto`` and
``train.channels_last: auto`` on a GPU or a CPU with native bf16); ``bf16-cl-compile``: the
same with ``torch.compile`` of the network (``train.compile: true``). Each runs with Adam and
with Adam + ZNorm. The same run measures the fp32 and bf16 matmul peaks (``peaks.py``) and
counts the FLOPs of a step (forward and backward), so each row also gives its GFLOP/s as a
fraction of the peak of the dtype its convolutions run in. On CUDA the script also prints peak GPU memory
(``torch.cuda.max_memory_allocated``: weights, optimizer state, activations) of a step of
Adam + ZNorm at each of ``--memory-batches``, and checks the issue #16 targets: bf16 +
channels-last at least 2x the images/s of fp32, and Adam + ZNorm at least 0.97x Adam's
images/s at each precision.

Usage:
    python benchmarks/train_throughput.py --quick                 # CPU, a smoke run
    python benchmarks/train_throughput.py --threads 2             # CPU: resnet50, batch 8, 128x128
    python benchmarks/train_throughput.py --device cuda --size 256 --batch 16 \
        --precisions fp32,bf16-cl,bf16-cl-compile --cudnn-benchmark
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import cast

import segmentation_models_pytorch as smp
import torch
from peaks import count_flops, matmul_peaks, peak_line, sync

from medseg.config import ModelConfig, TrainConfig
from medseg.engine.schedule import build_scheduler
from medseg.engine.step import TrainStep, resolve_precision
from medseg.models import build_model
from medseg.optim import build_optimizer
from medseg.tasks import SEGMENTATION

StepFn = Callable[[torch.Tensor, torch.Tensor], None]


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


#: precision name -> (train.amp, train.channels_last, train.compile)
PRECISIONS: dict[str, tuple[str, str, bool]] = {
    "fp32": ("off", "off", False),
    "bf16": ("bf16", "off", False),
    "bf16-cl": ("bf16", "on", False),
    "bf16-cl-compile": ("bf16", "on", True),
}


def medseg_step(encoder: str, device: torch.device, optimizer_name: str, amp: str, channels_last: str,
                compile_model: bool = False) -> StepFn:
    """medseg's training step with the given optimizer and precision (and ``torch.compile``
    of the network, as ``train.compile`` does)."""
    model = _model(encoder, device)
    precision = resolve_precision(amp, device, channels_last)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(optimizer_name, model.parameters(), lr=1e-3)
    scheduler = build_scheduler(optimizer, TrainConfig(epochs=1000), steps_per_epoch=1000)
    network = cast(torch.nn.Module, torch.compile(model)) if compile_model else model
    train_step = TrainStep(network, SEGMENTATION.build_loss(), optimizer, precision,
                           named_parameters=list(model.named_parameters()))

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = train_step.backward(images, labels)
        train_step.optimizer_step()
        scheduler.step()
        loss.item()

    return step


def variant_name(optimizer_name: str, precision: str) -> str:
    return f"medseg step, {optimizer_name} ({precision})"


def _batch(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float()
    return images.to(device), labels.to(device)


def time_variants(variants: dict[str, StepFn], batch: int, size: int, device: torch.device,
                  warmup: int, rounds: int, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per step of each variant over ``rounds`` interleaved rounds, and the
    seconds of each variant's first step (``torch.compile`` compiles there)."""
    images, labels = _batch(batch, size, device)
    first: dict[str, float] = {}
    for name, step in variants.items():
        for index in range(warmup):
            sync(device)
            start = time.perf_counter()
            step(images, labels)
            sync(device)
            if index == 0:
                first[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(images, labels)
            sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}, first


def peak_memory_gib(step: StepFn, batch: int, size: int, device: torch.device) -> float:
    """Peak GPU memory of two steps of ``step`` at ``batch`` (everything allocated: weights,
    optimizer state, activations)."""
    images, labels = _batch(batch, size, device)
    torch.cuda.reset_peak_memory_stats(device)
    step(images, labels)
    step(images, labels)
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _targets(seconds: dict[str, float], precisions: list[str]) -> list[str]:
    """The issue #16 targets that the measured variants can tell: lines "target: ... met"."""
    lines = []
    rate = {name: 1 / value for name, value in seconds.items()}
    fp32 = variant_name("adam+znorm", "fp32")
    for precision in precisions:
        if precision == "fp32" or fp32 not in rate:
            continue
        ratio = rate[variant_name("adam+znorm", precision)] / rate[fp32]
        lines.append(f"target: adam+znorm {precision} >= 2.00x fp32 images/s: {ratio:.2f}x "
                     f"{'met' if ratio >= 2.0 else 'NOT met'}")
    for precision in precisions:
        ratio = rate[variant_name("adam+znorm", precision)] / rate[variant_name("adam", precision)]
        lines.append(f"target: adam+znorm >= 0.97x adam images/s ({precision}): {ratio:.3f}x "
                     f"{'met' if ratio >= 0.97 else 'NOT met'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--precisions", default=None,
                        help=f"comma-separated, of {', '.join(PRECISIONS)} (default: fp32,bf16,bf16-cl)")
    parser.add_argument("--memory-batches", default="16,32",
                        help="CUDA: batch sizes whose peak memory is printed (default 16,32; '' for none)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN pick its fastest kernels (train.deterministic: false)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, numbers are rough")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precisions = [p for p in (args.precisions or "fp32,bf16,bf16-cl").split(",") if p]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: unknown {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}")
    memory_batches = [int(b) for b in args.memory_batches.split(",") if b.strip()]
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    warmup, rounds, steps = (1, 2, 1) if args.quick else (3, 5, 4)
    if any(PRECISIONS[p][2] for p in precisions):
        warmup = max(warmup, 2)  # the first compiled step compiles; the second may recompile

    peaks = matmul_peaks(device, args.quick)
    bare = bare_step(args.encoder, device)
    flops = count_flops(lambda: bare(*_batch(args.batch, args.size, device)))
    variants = {"bare smp Unet + Adam (fp32)": bare}
    dtypes = {"bare smp Unet + Adam (fp32)": "fp32"}  # the dtype of each variant's convolutions
    for precision in precisions:
        amp, channels_last, compile_model = PRECISIONS[precision]
        for optimizer_name in ("adam", "adam+znorm"):
            variants[variant_name(optimizer_name, precision)] = medseg_step(
                args.encoder, device, optimizer_name, amp, channels_last, compile_model)
            dtypes[variant_name(optimizer_name, precision)] = "fp32" if amp == "off" else amp
    seconds, first = time_variants(variants, args.batch, args.size, device, warmup, rounds, steps)

    baseline = seconds["bare smp Unet + Adam (fp32)"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"# train throughput: Unet-{args.encoder}, batch {args.batch}, {args.size}x{args.size}, "
          f"{device} ({name}), cudnn.benchmark={args.cudnn_benchmark}, torch {torch.__version__}"
          f"{' (quick)' if args.quick else ''}\n")
    print(f"{peak_line(peaks, device)}; a step: {flops / 1e9:.1f} GFLOP (forward + backward)\n")
    print("| variant | s/step | images/s | vs bare | GFLOP/s | of its dtype's matmul peak | first step s |")
    print("|---|---|---|---|---|---|---|")
    for variant, value in seconds.items():
        rate = flops / value / 1e9
        print(f"| {variant} | {value:.4f} | {args.batch / value:.1f} | {baseline / value:.2f}x | "
              f"{rate:.0f} | {rate / peaks[dtypes[variant]]:.0%} of {dtypes[variant]} | {first[variant]:.1f} |")
    print()
    for line in _targets(seconds, precisions):
        print(line)
    del variants
    _release(device)

    if device.type == "cuda" and memory_batches:
        print(f"\n| peak GPU memory, medseg step, adam+znorm, {args.size}x{args.size} | batch | GiB |")
        print("|---|---|---|")
        for precision in (p for p in precisions if not PRECISIONS[p][2]):
            amp, channels_last, _ = PRECISIONS[precision]
            for batch in memory_batches:
                step = medseg_step(args.encoder, device, "adam+znorm", amp, channels_last)
                print(f"| {precision} | {batch} | {peak_memory_gib(step, batch, args.size, device):.2f} |")
                del step
                _release(device)


if __name__ == "__main__":
    main()
