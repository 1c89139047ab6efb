"""Inference latency per 256x256 slice with ResNet-50-UNet, as ``medseg predict`` and the app
run it: :func:`medseg.data.preprocess_image` then :func:`medseg.engine.predict_probabilities`.

Reports the median latency of one slice at a time (an interactive click in the app) and the
per-slice time of a batch of 16 (a whole patient folder). Target on CPU: <= 0.25 s per slice.

Usage:
    python benchmarks/inference_latency.py --quick
    python benchmarks/inference_latency.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from medseg.config import ModelConfig
from medseg.data.preprocess import preprocess_image
from medseg.data.transforms import use_plain_tensors
from medseg.engine import predict_probabilities
from medseg.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_slice(model: torch.nn.Module, slices: np.ndarray, size: int, device: torch.device, reps: int) -> float:
    """Median wall time of preprocessing and predicting ``slices``, divided by their number."""
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        batch = torch.stack([preprocess_image(image, size) for image in slices])
        predict_probabilities(model, batch, batch_size=len(slices))
        _sync(device)
        times.append((time.perf_counter() - start) / len(slices))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few repetitions")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_model(ModelConfig(arch="unet", encoder=args.encoder), "segmentation").to(device).eval()
    rng = np.random.default_rng(0)
    slices = rng.integers(0, 255, size=(16, args.size, args.size, 3), dtype=np.uint8)
    reps = 2 if args.quick else 10
    seconds_per_slice(model, slices[:1], args.size, device, 1)  # warm-up
    single = seconds_per_slice(model, slices[:1], args.size, device, reps)
    batched = seconds_per_slice(model, slices, args.size, device, max(1, reps // 4))
    print(f"# inference latency: Unet-{args.encoder}, {args.size}x{args.size}, {device}, "
          f"{torch.get_num_threads()} CPU threads{' (quick)' if args.quick else ''}\n")
    print("| mode | s/slice | target |")
    print("|---|---|---|")
    print(f"| one slice at a time | {single:.3f} | <= 0.25 on CPU |")
    print(f"| batch of 16 | {batched:.3f} | |")


if __name__ == "__main__":
    use_plain_tensors()  # as the medseg command does
    main()
