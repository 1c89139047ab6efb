"""Inference latency per 256x256 slice with ResNet-50-UNet, as ``medseg predict`` and the app
run it: :func:`medseg.data.preprocess_image` then :func:`medseg.engine.predict_probabilities`.

Reports the median latency of one slice at a time (an interactive click in the app) and the
per-slice time of a batch of 16 (a whole patient folder), for each precision: ``fp32``,
``bf16`` (autocast) and ``bf16-cl`` (autocast and channels-last memory), the last two through
:class:`medseg.engine.probability.Autocast`. The same run measures the fp32 and bf16 matmul
peaks (``peaks.py``) and counts the FLOPs of a slice's forward pass, so each batched figure is
also a fraction of the peak of its dtype. Target on CPU: <= 0.25 s per slice.

Usage:
    python benchmarks/inference_latency.py --quick
    python benchmarks/inference_latency.py --threads 2
    python benchmarks/inference_latency.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from peaks import count_flops, matmul_peaks, peak_line, sync

from medseg.config import ModelConfig
from medseg.data.preprocess import preprocess_image
from medseg.data.transforms import use_plain_tensors
from medseg.engine import predict_probabilities
from medseg.engine.probability import Autocast
from medseg.models import build_model

#: precision name -> (autocast dtype or None, channels_last)
PRECISIONS: dict[str, tuple[torch.dtype | None, bool]] = {
    "fp32": (None, False),
    "bf16": (torch.bfloat16, False),
    "bf16-cl": (torch.bfloat16, True),
}


def seconds_per_slice(model: torch.nn.Module, slices: np.ndarray, size: int, device: torch.device, reps: int) -> float:
    """Median wall time of preprocessing and predicting ``slices``, divided by their number."""
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        batch = torch.stack([preprocess_image(image, size) for image in slices])
        predict_probabilities(model, batch, batch_size=len(slices))
        sync(device)
        times.append((time.perf_counter() - start) / len(slices))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--precisions", default="fp32,bf16,bf16-cl",
                        help=f"comma-separated, of {', '.join(PRECISIONS)} (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few repetitions")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: unknown {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}")
    device = torch.device(args.device)
    network = build_model(ModelConfig(arch="unet", encoder=args.encoder), "segmentation").to(device).eval()
    peaks = matmul_peaks(device, args.quick)
    with torch.no_grad():
        flops = count_flops(lambda: network(torch.zeros(1, 3, args.size, args.size, device=device)))
    rng = np.random.default_rng(0)
    slices = rng.integers(0, 255, size=(16, args.size, args.size, 3), dtype=np.uint8)
    reps = 2 if args.quick else 10
    print(f"# inference latency: Unet-{args.encoder}, {args.size}x{args.size}, {device}, "
          f"{torch.get_num_threads()} CPU threads{' (quick)' if args.quick else ''}\n")
    print(f"{peak_line(peaks, device)}; a slice: {flops / 1e9:.1f} GFLOP (forward)\n")
    print("| precision | one slice at a time, s/slice | batch of 16, s/slice | batch GFLOP/s | "
          "of its dtype's matmul peak | target |")
    print("|---|---|---|---|---|---|")
    for precision in precisions:
        dtype, channels_last = PRECISIONS[precision]
        model = network if dtype is None else Autocast(copy.deepcopy(network), dtype, channels_last=channels_last)
        seconds_per_slice(model, slices[:1], args.size, device, 1)  # warm-up
        single = seconds_per_slice(model, slices[:1], args.size, device, reps)
        batched = seconds_per_slice(model, slices, args.size, device, max(1, reps // 4))
        peak = "fp32" if dtype is None else "bf16"
        rate = flops / batched / 1e9
        print(f"| {precision} | {single:.3f} | {batched:.3f} | {rate:.0f} | {rate / peaks[peak]:.0%} of {peak} | "
              "<= 0.25 on CPU |")


if __name__ == "__main__":
    use_plain_tensors()  # as the medseg command does
    main()
