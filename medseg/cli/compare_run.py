"""``medseg compare-run RUN_DIR``: train one run of a planned comparison (``medseg compare
... --plan`` prints one such command per run), on any machine that sees the folder."""

from __future__ import annotations

import argparse
import sys

EXAMPLE = "medseg compare-run runs/compare_lgg_demo/runs/adam+znorm/seed0"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run folder written by 'medseg compare ... --plan'; a finished run "
                        "is left alone, an interrupted one resumes")


def run(args: argparse.Namespace) -> int:
    # imported here: medseg.compare pulls in torch and MONAI (see medseg.cli.main)
    from medseg.compare import run_planned

    run_planned(args.run_dir,
                progress=lambda line: print(f"compare-run: {line}", file=sys.stderr, flush=True))
    return 0
