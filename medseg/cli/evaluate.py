"""``medseg evaluate``: score a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import math
from typing import Any

from medseg.runs import SPLIT_NAME, CvFolder, RunFolder
from medseg.tasks import get_task

EXAMPLE = "medseg evaluate models/demo_lgg/best.pt --data demo_data/lgg --split test"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="+",
                        help=f"a {' / '.join(RunFolder.CHECKPOINT_NAMES)} written by medseg train; several "
                             "checkpoints of one task and input, or a cross-validation folder (medseg cv), "
                             "are scored as one ensemble (the mean of their probabilities)")
    parser.add_argument("--data", required=True, metavar="PATH", help="LGG or PCam data folder")
    parser.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                        help=f"which split to score (LGG: from {SPLIT_NAME} beside the checkpoint)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="probability at or above which a pixel/patch is tumour (default 0.5)")
    parser.add_argument("--max-samples", type=int, default=None, metavar="N",
                        help="score only the first N samples of the split")
    parser.add_argument("--tta", default="none", metavar="none|flip",
                        help="flip: average the probabilities over mirrored inputs (LGG left-right; "
                             "PCam every flip); none (default)")
    parser.add_argument("--postprocessing", default="record", choices=("record", "none"),
                        help=f"record (default): apply a cross-validation folder's {CvFolder.POSTPROCESSING_NAME} "
                             "to every patient's masks before scoring; none: score the raw masks")
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
    if len(result["members"]) > 1:
        lines.append(f"ensemble    mean of {len(result['members'])} members' probabilities: "
                     + ", ".join(result["members"]))
    lines.append(f"tta         {result['tta']}")
    if task.patient_split:
        from medseg.postprocessing import Postprocessing  # scipy: not at the CLI's start

        step = Postprocessing.from_dict(result["postprocessing"]).describe()
        source = f" ({result['postprocessing_file']})" if result["postprocessing_file"] else ""
        lines.append(f"postprocess {step}{source}")
    if result.get("note"):
        lines.append(f"note        {result['note']}")
    lines.append("")
    width = max(len(metric.description) for metric in task.metrics)
    for metric in task.metrics:
        if result.get(metric.key) is not None:
            lines.append(f"{metric.description:<{width}}  {result[metric.key]:.4f}")
    measures = result.get("per_patient_measures") or {}
    per_patient = result.get("per_patient") or {}
    if measures:
        lines += ["", *patient_table(measures, width), "", *summary_table(result["measure_summary"], width)]
    elif per_patient:
        lines += ["", f"{'patient':<{width}}  Dice (3-D)"]
        lines += [f"{name:<{width}}  {dice:.4f}" for name, dice in sorted(per_patient.items())]
    return "\n".join(lines)


def _cell(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals (one from 1000 on), or ``undefined`` for NaN."""
    if math.isnan(value):
        return "undefined"
    return f"{value:.{digits if abs(value) < 1000 else 1}f}"


def patient_table(measures: dict[str, dict[str, Any]], width: int) -> list[str]:
    """One line per patient: Dice, HD95, ASSD, NSD, the relative volume difference and the
    lesions (detected of reference, missed, spurious); undefined values say so."""
    from medseg.metrics.measures import measure_label  # torch and scipy: not at the CLI's start

    keys = list(next(iter(measures.values())))
    hd95, assd, nsd = keys[2:5]
    heads = ["Dice (3-D)", measure_label(hd95), measure_label(assd), measure_label(nsd),
             "Δ volume", "lesions found", "missed", "spurious"]
    lines = [f"{'patient':<{width}}  " + "  ".join(f"{head:>12}" for head in heads)]
    for name, row in sorted(measures.items()):
        cells = [_cell(row["dice"], 4), _cell(row[hd95]), _cell(row[assd]), _cell(row[nsd], 3),
                 "undefined" if math.isnan(row["rel_volume_diff"]) else f"{row['rel_volume_diff']:+.1%}",
                 f"{row['detected_lesions']} of {row['ref_lesions']}", str(row["missed_lesions"]),
                 str(row["spurious_lesions"])]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell:>12}" for cell in cells))
    return lines


def summary_table(summary: dict[str, dict[str, float]], width: int) -> list[str]:
    """Each measure's mean, median and quartiles over the patients where it is defined, and
    on how many patients it was computed (and how many left it undefined)."""
    from medseg.metrics.measures import measure_label

    heads = ["mean", "median", "25th pct", "75th pct", "patients", "undefined"]
    lines = [f"{'measure':<{width}}  " + "  ".join(f"{head:>9}" for head in heads)]
    for key, stats in summary.items():
        cells = [_cell(stats[s], 4) for s in ("mean", "median", "q25", "q75")]
        cells += [str(stats["n"]), str(stats["n_undefined"])]
        lines.append(f"{measure_label(key):<{width}}  " + "  ".join(f"{cell:>9}" for cell in cells))
    return lines


def run(args: argparse.Namespace) -> int:
    from medseg.engine import evaluate
    from medseg.engine.records import to_json
    from medseg.errors import MedsegError

    if args.max_samples is not None and args.max_samples < 1:
        raise MedsegError(f"--max-samples {args.max_samples}: expected a positive number")
    result = evaluate(args.checkpoint, args.data, args.split, threshold=args.threshold,
                      max_samples=args.max_samples, device=args.device, tta=args.tta,
                      postprocess=args.postprocessing == "record")
    print(to_json(json_result(result)) if args.json else table(result))
    return 0
