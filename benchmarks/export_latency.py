"""Slice and volume inference latency of an ONNX export in ONNX Runtime against PyTorch eager,
on this CPU, the way ``medseg predict`` runs each: :func:`medseg.engine.inference.slice_probabilities`
(PyTorch) and :class:`medseg.predict.exported.OnnxSegmenter` (ONNX Runtime; the input rule
inside the graph).

A ResNet-50 UNet (random weights, ``encoder_weights=None``: no download) at ``data.image_size``
256 is saved as a checkpoint and exported by ``medseg export --format onnx`` (so the parity check
runs too). Reported: the median wall time of one 256 x 256 slice and of a 32-slice volume of
256 x 256 slices, both engines on the same number of threads.

Usage:
    python benchmarks/export_latency.py --threads 2 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from medseg import __version__
from medseg.config import load_config
from medseg.engine.checkpoint import load_model, save_checkpoint
from medseg.engine.inference import slice_probabilities
from medseg.export.run import export_checkpoint
from medseg.models import build_model
from medseg.predict.exported import OnnxSegmenter

SIZE = 256
VOLUME_SLICES = 32


def median_seconds(run: Callable[[], object], reps: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, ["model.encoder=resnet50", f"data.image_size={SIZE}"])
        checkpoint = Path(tmp) / "best.pt"
        save_checkpoint({"model": build_model(cfg.model, cfg.task).state_dict(), "config": cfg.to_dict(),
                         "task": cfg.task, "epoch": 1, "metrics": {}, "medseg_version": __version__},
                        checkpoint)
        result = export_checkpoint(checkpoint, "onnx", Path(tmp) / "onnx")
        model = load_model(checkpoint).model
        engine = OnnxSegmenter.load(result.out, threads=args.threads)
        rng = np.random.default_rng(0)
        volume = rng.integers(0, 256, size=(VOLUME_SLICES, SIZE, SIZE, 3), dtype=np.uint8)
        one = volume[:1]
        rows = []
        for name, data in (("one 256x256 slice", one), (f"volume of {VOLUME_SLICES} slices", volume)):
            eager = median_seconds(lambda d=data: slice_probabilities(model, d, SIZE), args.reps)
            ort = median_seconds(lambda d=data: engine.probabilities(d), args.reps)
            rows.append(f"| {name} | {eager:.3f} | {ort:.3f} | {eager / ort:.2f}x |")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads, "
          f"median of {args.reps}")
    print(result.parity.line() if result.parity else "")
    print("| input | PyTorch eager s | ONNX Runtime s | ORT speed-up |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
