"""Agreement of fp32 and bf16 masks: would bf16 inference change what medseg predicts?

For each LGG patient of a split, the slices are predicted twice, as ``medseg predict`` does
(:func:`medseg.engine.inference.slice_probabilities`): in fp32, and under bf16 autocast with
channels-last memory (:class:`medseg.engine.probability.Autocast`). Per patient it reports
the Dice between the two 3-D masks (at :data:`~medseg.metrics.threshold.DEFAULT_THRESHOLD`),
the share of pixels whose label differs, the largest probability difference, and the slices
that are empty in one mask and not in the other. ``--random-weights`` keeps the checkpoint's
architecture but draws fresh weights (seed 0): probabilities near 0.5 everywhere, the worst
case for a threshold.

Usage:
    python benchmarks/bf16_masks.py models/demo_lgg/best.pt demo_data/lgg --split test
    python benchmarks/bf16_masks.py models/demo_lgg/best.pt demo_data/lgg --random-weights --max-slices 4
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch

from medseg.data.lgg import list_patients
from medseg.data.splits import read_split_file
from medseg.engine.checkpoint import load_model
from medseg.engine.inference import slice_probabilities
from medseg.engine.probability import Autocast
from medseg.imaging.images import read_slice_image
from medseg.metrics.segmentation import dice_from_counts
from medseg.metrics.threshold import DEFAULT_THRESHOLD, binarize
from medseg.models import build_model
from medseg.runs import RunFolder


def agreement(fp32: np.ndarray, bf16: np.ndarray, threshold: float) -> dict[str, float | int]:
    """How the masks of two probability stacks (N, H, W) of one patient compare.

    Returns:
        ``dice`` between the masks (1.0 when both are empty), ``pixels_differ`` (the share
        of pixels labelled differently), ``max_abs_dp`` (the largest |p_fp32 - p_bf16|) and
        ``slices_flipped`` (slices empty in one mask and not in the other).
    """
    a, b = binarize(fp32, threshold).astype(bool), binarize(bf16, threshold).astype(bool)
    tp, fp, fn = int((a & b).sum()), int((~a & b).sum()), int((a & ~b).sum())
    return {
        "dice": dice_from_counts(tp, fp, fn),
        "pixels_differ": (fp + fn) / a.size,
        "max_abs_dp": float(np.abs(fp32 - bf16).max()),
        "slices_flipped": int((a.any(axis=(1, 2)) != b.any(axis=(1, 2))).sum()),
    }


def split_patients(checkpoint: Path, split: str) -> list[str] | None:
    """The patients of ``split`` in ``split.json`` beside the checkpoint (None: every patient)."""
    split_file = RunFolder.of_checkpoint(checkpoint).split_file
    if split == "all" or not split_file.is_file():
        return None
    return read_split_file(split_file)[0][split]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a segmentation checkpoint (best.pt)")
    parser.add_argument("data", type=Path, help="an LGG data folder")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="the patients of split.json beside the checkpoint (default: test)")
    parser.add_argument("--random-weights", action="store_true", help="fresh weights (seed 0), same network")
    parser.add_argument("--max-slices", type=int, default=None, help="the first N slices of each patient")
    parser.add_argument("--max-patients", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint)
    model = loaded.model
    if args.random_weights:
        torch.manual_seed(0)
        model_cfg = dataclasses.replace(loaded.config.model, encoder_weights=None)
        model = build_model(model_cfg, loaded.task).eval()
    bf16 = Autocast(copy.deepcopy(model), torch.bfloat16, channels_last=True)
    image_size = loaded.config.data.image_size
    wanted = split_patients(args.checkpoint, args.split)
    patients = [p for p in list_patients(args.data) if wanted is None or p.name in wanted]
    patients = patients[: args.max_patients]
    weights = "random weights (seed 0)" if args.random_weights else "trained weights"
    print(f"# fp32 vs bf16 + channels_last masks: {args.checkpoint} ({weights}), {args.data} "
          f"{args.split if wanted is not None else 'all'} split, threshold {DEFAULT_THRESHOLD}, "
          f"{torch.get_num_threads()} CPU threads\n")
    print("| patient | slices | Dice(fp32, bf16) | pixels differing | max abs dp | slices flipped empty/non-empty |")
    print("|---|---|---|---|---|---|")
    rows = []
    for patient in patients:
        slices = np.stack([read_slice_image(s.image_path) for s in patient.slices[: args.max_slices]])
        row = agreement(slice_probabilities(model, slices, image_size),
                        slice_probabilities(bf16, slices, image_size), DEFAULT_THRESHOLD)
        rows.append(row)
        print(f"| {patient.name} | {len(slices)} | {row['dice']:.4f} | {row['pixels_differ']:.2e} | "
              f"{row['max_abs_dp']:.4f} | {row['slices_flipped']} |")
    if rows:
        print(f"\nworst: Dice {min(r['dice'] for r in rows):.4f}, pixels differing "
              f"{max(r['pixels_differ'] for r in rows):.2e}, max abs dp {max(r['max_abs_dp'] for r in rows):.4f}, "
              f"slices flipped {sum(int(r['slices_flipped']) for r in rows)} in {len(rows)} patients")


if __name__ == "__main__":
    main()
