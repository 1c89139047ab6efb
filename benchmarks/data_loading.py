"""Benchmark: LGG slices per second through the full training pipeline.

Decode (Pillow) + resize + random flip/rotation/scaling + per-channel z-score + intensity
jitter, at 256x256 by default, on the demo data (written to a temporary folder unless
``--root`` is given): once in the main process with a per-step breakdown, then through a
``monai.data.DataLoader`` with ``--workers`` worker processes (batches of 8, collated).

Usage:
    .venv/bin/python benchmarks/data_loading.py --quick
    .venv/bin/python benchmarks/data_loading.py --root data/lgg-mri-segmentation --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from monai.data import DataLoader

from medseg.config import DataConfig
from medseg.data.datasets import build_datasets
from medseg.data.transforms import use_plain_tensors
from medseg.demo.lgg import write_demo_lgg


def _train_set(root: Path, image_size: int):
    cfg = DataConfig(root=str(root), image_size=image_size, val_fraction=0.0, test_fraction=0.0)
    return build_datasets(cfg, seed=0)["train"]


def _single_process(dataset, n: int) -> tuple[float, float, dict[str, float]]:
    """Slices/s in this process, CPU ms per slice, and the mean ms of each pipeline step."""
    pipeline = dataset.transform
    spent: dict[str, float] = defaultdict(float)
    cpu_start = time.process_time()
    start = time.perf_counter()
    for i in range(n):
        sample = dataset.data[i % len(dataset)]
        for index, step in enumerate(pipeline.transforms):
            tick = time.perf_counter()
            sample = pipeline(sample, start=index, end=index + 1)
            spent[type(step).__name__] += time.perf_counter() - tick
    elapsed = time.perf_counter() - start
    cpu_ms = 1000 * (time.process_time() - cpu_start) / n
    return n / elapsed, cpu_ms, {name: 1000 * total / n for name, total in spent.items()}


def _data_loader(dataset, n: int, workers: int, batch_size: int) -> tuple[float, float]:
    """(slices/s after the first batch, seconds until the first batch) with ``workers``."""
    indices = [i % len(dataset) for i in range(n + batch_size)]
    subset = torch.utils.data.Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter()
    seen = sum(len(batch["slice"]) for batch in iterator)
    return seen / (time.perf_counter() - first), first - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="LGG folder (default: demo data in a temp folder)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="few slices: a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    n = 48 if args.quick else 600

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else write_demo_lgg(Path(tmp) / "lgg", seed=0)
        dataset = _train_set(root, args.image_size)
        _single_process(dataset, 8)  # warm-up (imports, caches)
        rate, cpu_ms, breakdown = _single_process(dataset, n)
        print(f"LGG train pipeline at {args.image_size}x{args.image_size}, {len(dataset)} slices "
              f"in {root}")
        print(f"  1 process:            {rate:7.1f} slices/s ({cpu_ms:.2f} ms CPU per slice: "
              f"{1000 / cpu_ms:.0f} slices/s per idle core)")
        for name, ms in breakdown.items():
            print(f"    {name:<22} {ms:6.2f} ms/slice")
        rate, startup = _data_loader(dataset, n, args.workers, batch_size=8)
        print(f"  DataLoader, {args.workers} workers: {rate:7.1f} slices/s "
              f"(first batch after {startup:.1f} s)")


if __name__ == "__main__":
    use_plain_tensors()  # as the medseg command does
    main()
