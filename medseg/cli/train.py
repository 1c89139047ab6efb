"""``medseg train``: train a segmenter or classifier from a YAML config."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from medseg.runs import RunFolder
from medseg.tasks import get_task

if TYPE_CHECKING:  # the engine imports MONAI (seconds): not for `medseg train --help`
    from medseg.engine import TrainResult

EXAMPLE = "medseg train configs/demo_lgg.yaml --set train.epochs=2 --set output.run_name=try1"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the run in the config's run folder from its {RunFolder.LAST_NAME}, "
                        "with the config stored there (only train.epochs, train.device, data.root and a few "
                        "more may change; see docs/training.md)")


def summary(result: TrainResult) -> str:
    """The lines printed when a run ends."""
    lines = [
        f"run: {result.run_dir}",
        f"best val {result.metric_name}: {result.best_metric:.4f} at epoch {result.best_epoch}",
    ]
    test = result.test_metrics
    keys = get_task(result.task).headline
    if test.get("n"):
        scores = "  ".join(f"{key} {test[key]:.4f}" for key in keys if test.get(key) is not None)
        lines.append(f"test ({RunFolder.BEST_NAME}, n={test['n']}): {scores}")
    else:
        lines.append("test: the test split is empty; no test metrics")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from medseg.config import load_config
    from medseg.engine import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print(summary(result))
    return 0
