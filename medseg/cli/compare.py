"""``medseg compare``: train every optimizer x seed under identical settings and report."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.config import MAX_SEED, apply_overrides, command_section, load_config
from medseg.errors import ConfigError
from medseg.tasks import get_task

EXAMPLE = (
    "medseg compare configs/compare_lgg_demo.yaml --methods standard --seeds 5 "
    "--method-set adamw:optim.weight_decay=0.01 --out runs/compare_lgg_demo"
)
DEFAULT_METHODS = "adam,adamw,adam+gc,adam+clip,adam+znorm"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config shared by every run")
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS,
        help=f"comma-separated methods (default: {DEFAULT_METHODS}), or 'standard': the "
        "nine methods docs/compare.md studies; the report pairs each with 'adam' (or the "
        "first one listed)",
    )
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=3, metavar="N",
                       help="run seeds 0..N-1 (default: 3)")
    seeds.add_argument("--seed-list", metavar="S,S,...",
                       help=f"explicit seeds, e.g. 0,1,2 (each from 0 to {MAX_SEED})")
    parser.add_argument("--out", metavar="DIR",
                        help="comparison folder (default: runs/compare_<config name>); rerunning "
                        "with the same folder skips finished runs and resumes interrupted ones")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value for every run "
                        "(repeatable), e.g. --set train.epochs=5")
    parser.add_argument("--method-set", dest="method_overrides", action="append", default=[],
                        metavar="METHOD:KEY=VALUE",
                        help="an optim.* setting for one method only (repeatable), e.g. "
                        "--method-set adamw:optim.weight_decay=0.01 (AdamW without weight decay "
                        "is Adam)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true",
                      help="train nothing: write the split and run records, then print one "
                      "shell command per unfinished run ('medseg compare-run RUN_DIR'), for a "
                      "Slurm job array, GNU parallel or xargs -P on machines that see --out")
    mode.add_argument("--collect", action="store_true",
                      help="train nothing: write the tables and plots from the finished runs; "
                      "exit 2 listing the unfinished runs while any is missing")
    parser.add_argument("--measures", metavar="NAME,NAME,...",
                        help="segmentation: per-patient measures of the test split the report "
                        "also compares, e.g. dice,hd95_px,lesion_f1 (medseg evaluate's names; "
                        "each run's value is its mean over the test patients where defined). "
                        "Default: the headline metrics only (Dice first)")
    parser.add_argument("--tune", action="store_true",
                        help="tune every method first, at the same quasirandom trial points, on "
                        "tuning seeds, then compare each one's best settings over the seeds: "
                        "the config's tune: section (default: 8 trials of optim.lr log-uniform "
                        "in [1e-5, 1e-1] on seed 1000; --set tune.trials=4 changes it; "
                        "docs/compare.md). With --plan: the trial runs' commands first, then, "
                        "once they finished, the evaluation runs' (the same --plan again); "
                        "then --collect")
    parser.add_argument("--storage", metavar="URL",
                        help="with --tune: keep the tuning studies in this database (an Optuna "
                        "storage URL, e.g. postgresql://user@host/medseg or sqlite:///tuning.db) "
                        "instead of DIR/tuning/study.journal")
    parser.add_argument("--gpus", default="auto", metavar="auto|none|I,J",
                        help="CUDA devices to spread runs over, one run per device at a time, "
                        "tuning trials included (default auto: all visible when more than one; "
                        "none: one after another in this process)")


def parse_seeds(args: argparse.Namespace) -> Sequence[int]:
    """``--seed-list`` when given, else ``range(--seeds)`` (a range: nothing is allocated
    before :func:`medseg.compare.planning.check_seeds` bounds the count).

    Raises:
        ConfigError: on a non-integer seed or a count below 1.
    """
    if args.seed_list is not None:
        try:
            return [int(item) for item in args.seed_list.split(",") if item.strip()]
        except ValueError:
            raise ConfigError(
                f"--seed-list {args.seed_list[:80]!r}: expected comma-separated integers, e.g. 0,1,2"
            ) from None
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: expected a number of seeds >= 1")
    return range(args.seeds)


def parse_method_overrides(items: list[str]) -> dict[str, list[str]]:
    """``["adamw:optim.weight_decay=0.01"]`` -> ``{"adamw": ["optim.weight_decay=0.01"]}``.

    Raises:
        ConfigError: on an item without ``METHOD:KEY=VALUE`` form.
    """
    overrides: dict[str, list[str]] = {}
    for item in items:
        method, sep, setting = item.partition(":")
        if not sep or not method.strip() or "=" not in setting:
            raise ConfigError(
                f"--method-set {item!r}: expected METHOD:KEY=VALUE, e.g. adamw:optim.weight_decay=0.01"
            )
        overrides.setdefault(method.strip(), []).append(setting.strip())
    return overrides


def parse_gpus(text: str) -> list[int] | None:
    """``auto`` -> None (decide from the visible devices), ``none`` -> [], ``0,1`` -> [0, 1].

    Raises:
        ConfigError: on anything else.
    """
    text = text.strip().lower()
    if text == "auto":
        return None
    if text in ("none", ""):
        return []
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise ConfigError(f"--gpus {text!r}: expected auto, none or device indices like 0,1") from None


def _progress(line: str) -> None:
    print(f"compare: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: medseg.compare pulls in torch and MONAI, and every
    # `medseg ... --help` imports this module
    from medseg.compare import collect_comparison, plan_comparison, run_comparison

    tune_overrides = [item for item in args.overrides if item.startswith("tune.")]
    if tune_overrides and not args.tune:
        raise ConfigError(f"--set {tune_overrides[0]}: tune.* settings apply only with --tune")
    if args.storage and not args.tune:
        raise ConfigError("--storage: the tuning studies' database applies only with --tune")
    cfg = load_config(args.config, [item for item in args.overrides if item not in tune_overrides])
    out_dir = Path(args.out) if args.out else Path("runs") / f"compare_{Path(args.config).stem}"
    methods, seeds = args.methods.split(","), parse_seeds(args)
    overrides = parse_method_overrides(args.method_overrides)
    measures = [name.strip() for name in (args.measures or "").split(",") if name.strip()]
    if args.tune:
        return _run_tuned(args, cfg, out_dir, tune_overrides, methods, seeds, overrides, measures)
    if args.plan:
        planned = plan_comparison(cfg, methods, seeds, out_dir, method_overrides=overrides)
        pending = [spec for spec, state in planned if state != "done"]
        for spec in pending:
            print(f"medseg compare-run {shlex.quote(str(spec.run_dir))}")
        _progress(f"{len(planned)} runs planned in {out_dir}: {len(planned) - len(pending)} "
                  f"finished, {len(pending)} to run (one command each above); then collect "
                  "with the same arguments and --collect")
        return 0
    if args.collect:
        rows = collect_comparison(cfg, methods, seeds, out_dir, method_overrides=overrides,
                                  measures=measures)
    else:
        rows = run_comparison(cfg, methods, seeds, out_dir, method_overrides=overrides,
                              gpus=parse_gpus(args.gpus), progress=_progress, measures=measures)
    print_summary(cfg.task, rows)
    print(f"wrote {out_dir / 'results.csv'}, {out_dir / 'results.md'} and plots in {out_dir}")
    return 0


def _run_tuned(args: argparse.Namespace, cfg: Any, out_dir: Path, tune_overrides: list[str],
               methods: list[str], seeds: Sequence[int], overrides: dict[str, list[str]],
               measures: list[str]) -> int:
    """``--tune``: the config's ``tune:`` section with the ``--set tune.*`` overrides; in this
    process, or with ``--plan``/``--collect`` for a job scheduler."""
    from medseg.compare.tuning import TUNE_SECTION, tune_settings
    from medseg.compare.tuning_run import (
        TRIALS,
        collect_tuned_comparison,
        plan_tuned_comparison,
        run_tuned_comparison,
    )

    raw = command_section(args.config, TUNE_SECTION)
    raw = apply_overrides({TUNE_SECTION: raw if raw is not None else {}}, tune_overrides)
    settings = tune_settings(raw[TUNE_SECTION], f"{args.config}: {TUNE_SECTION}")
    common: dict[str, Any] = {"method_overrides": overrides, "storage_url": args.storage}
    if args.plan:
        phase, planned = plan_tuned_comparison(cfg, methods, seeds, out_dir, settings, **common)
        pending = [spec for spec, state in planned if state != "done"]
        for spec in pending:
            print(f"medseg compare-run {shlex.quote(str(spec.run_dir))}")
        if phase == TRIALS:
            _progress(f"tuning in {out_dir}: {len(pending)} trial runs to do (one command each "
                      "above); when they finished, run this --plan again: it records the "
                      "trials, chooses each method's settings and prints the evaluation runs")
        else:
            _progress(f"every trial recorded; {len(planned)} evaluation runs in {out_dir}: "
                      f"{len(planned) - len(pending)} finished, {len(pending)} to run (one "
                      "command each above); then collect with the same arguments and --collect")
        return 0
    if args.collect:
        rows = collect_tuned_comparison(cfg, methods, seeds, out_dir, settings, measures=measures,
                                        **common)
    else:
        rows = run_tuned_comparison(cfg, methods, seeds, out_dir, settings, progress=_progress,
                                    measures=measures, gpus=parse_gpus(args.gpus), **common)
    print_summary(cfg.task, rows)
    print(f"wrote {out_dir / 'results.csv'}, {out_dir / 'results.md'}, {out_dir / 'tuning.csv'} "
          f"and plots in {out_dir}")
    return 0


def print_summary(task: str, rows: list[dict[str, Any]]) -> None:
    """One line per method: how many runs learned and the headline test metrics' mean ± std
    over those runs."""
    from medseg.compare import summarize
    from medseg.compare.report import format_number, table_metrics

    metrics = table_metrics(task, rows)
    label = get_task(task).label
    print(f"{'method':<14} {'learned':>7}  " + "  ".join(f"{label(m):>20}" for m in metrics))
    for method in dict.fromkeys(row["method"] for row in rows):
        method_rows = [row for row in rows if row["method"] == method]
        learned = [row for row in method_rows if row["status"] == "ok"]
        cells = []
        for metric in metrics:
            summary = summarize([row.get(f"test_{metric}", float("nan")) for row in learned])
            spread = f" ± {summary.std:.4f}" if summary.n > 1 else ""
            cells.append(f"{format_number(summary.mean, 4)}{spread}".rjust(20))
        count = f"{len(learned)}/{len(method_rows)}"
        print(f"{method:<14} {count:>7}  " + "  ".join(cells))
