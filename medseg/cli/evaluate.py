"""``medseg evaluate``: score a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
from typing import Any

from medseg.runs import SPLIT_NAME, RunFolder
from medseg.tasks import get_task

EXAMPLE = "medseg evaluate models/demo_lgg/best.pt --data demo_data/lgg --split test"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help=f"a {' / '.join(RunFolder.CHECKPOINT_NAMES)} written by medseg train")
    parser.add_argument("--data", required=True, metavar="PATH", help="LGG or PCam data folder")
    parser.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                        help=f"which split to score (LGG: from {SPLIT_NAME} beside the checkpoint)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="probability at or above which a pixel/patch is tumour (default 0.5)")
    parser.add_argument("--max-samples", type=int, default=None, metavar="N",
                        help="score only the first N samples of the split")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def json_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its per-slice rows (one line per slice would bury the summary)."""
    return {key: value for key, value in result.items() if key != "per_slice"}


def table(result: dict[str, Any]) -> str:
    """A small human-readable table of the result."""
    task = get_task(result["task"])
    lines = [
        f"checkpoint  {result['checkpoint']} ({result['task']})",
        f"data        {result['data']}, split {result['split']}, {result['n']} {task.unit}, "
        f"threshold {result['threshold']}",
    ]
    if result.get("note"):
        lines.append(f"note        {result['note']}")
    lines.append("")
    width = max(len(metric.description) for metric in task.metrics)
    for metric in task.metrics:
        if result.get(metric.key) is not None:
            lines.append(f"{metric.description:<{width}}  {result[metric.key]:.4f}")
    per_patient = result.get("per_patient") or {}
    if per_patient:
        lines += ["", f"{'patient':<{width}}  Dice (3-D)"]
        lines += [f"{name:<{width}}  {dice:.4f}" for name, dice in sorted(per_patient.items())]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from medseg.engine import evaluate
    from medseg.engine.records import to_json
    from medseg.errors import MedsegError

    if args.max_samples is not None and args.max_samples < 1:
        raise MedsegError(f"--max-samples {args.max_samples}: expected a positive number")
    result = evaluate(args.checkpoint, args.data, args.split, threshold=args.threshold,
                      max_samples=args.max_samples, device=args.device)
    print(to_json(json_result(result)) if args.json else table(result))
    return 0
