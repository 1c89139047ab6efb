"""``medseg cv``: patient-level K-fold cross-validation of one LGG config, with out-of-fold
results, the fold ensemble against each fold on test, and postprocessing chosen out of fold."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from medseg.config import load_config

EXAMPLE = "medseg cv configs/demo_lgg.yaml --folds 5 --out models/cv_demo_lgg"
DEFAULT_FOLDS = 5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config every fold trains with (LGG data)")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                        help=f"number of patient-disjoint folds (default: {DEFAULT_FOLDS})")
    parser.add_argument("--out", metavar="DIR",
                        help="the cross-validation folder (default: models/cv_<config name>); "
                        "rerunning skips finished folds and resumes interrupted ones; another "
                        "config, fold count or seed is refused")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value for every fold (repeatable), e.g. "
                        "--set train.epochs=5")
    parser.add_argument("--device", default="auto",
                        help="device that scores the folds: auto (default), cpu, cuda, cuda:1, ...")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true",
                      help="train nothing: write the folds and each fold's split and record, then "
                      "print one 'medseg compare-run FOLD_DIR' per unfinished fold, for a job "
                      "array or several machines that see --out")
    mode.add_argument("--collect", action="store_true",
                      help="train nothing: score the finished folds and write cv_results.json, "
                      "cv_results.md and postprocessing.json; exit 2 listing the unfinished folds")


def _progress(line: str) -> None:
    print(f"cv: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # imported here: medseg.cv pulls in torch and MONAI (see medseg.cli.main)
    from medseg.cv.execution import collect_cv, plan_cv, run_cv

    cfg = load_config(args.config, args.overrides)
    out_dir = Path(args.out) if args.out else Path("models") / f"cv_{Path(args.config).stem}"
    if args.plan:
        planned = plan_cv(cfg, args.folds, out_dir)
        pending = [spec for spec, state in planned if state != "done"]
        for spec in pending:
            print(f"medseg compare-run {shlex.quote(str(spec.run_dir))}")
        _progress(f"{len(planned)} folds planned in {out_dir}: {len(planned) - len(pending)} finished, "
                  f"{len(pending)} to run (one command each above); then collect with the same "
                  "arguments and --collect")
        return 0
    if args.collect:
        results = collect_cv(cfg, args.folds, out_dir, device=args.device, progress=_progress)
    else:
        results = run_cv(cfg, args.folds, out_dir, device=args.device, progress=_progress)
    print_summary(results)
    print(f"wrote {out_dir / 'cv_results.json'}, {out_dir / 'cv_results.md'} and "
          f"{out_dir / 'postprocessing.json'}")
    return 0


def print_summary(results: dict[str, Any]) -> None:
    """The out-of-fold Dice, the test Dice of the ensemble and the folds, and the step kept."""
    from medseg.cv.report import interval_text

    oof = results["out_of_fold"]["summary"]["dice"]
    print(f"out-of-fold patient Dice ({oof['n']} patients): {interval_text(oof)}")
    for name, by_tta in results["test"]["models"].items():
        cells = "  ".join(f"tta {tta}: {interval_text(scores['summary']['dice'])}" for tta, scores in by_tta.items())
        print(f"test {name:<9} {cells}")
    print(f"postprocessing: {results['postprocessing']['described']}")
