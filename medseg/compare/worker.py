"""One comparison run in its own process: ``python -m medseg.compare.worker RUN_DIR [--resume]``.

The multi-GPU path of :func:`medseg.compare.run_comparison` starts one worker per device
(``CUDA_VISIBLE_DEVICES=<i>``). The worker reads the run's method, seed and config from
``RUN_DIR/compare_run.json`` and calls :func:`medseg.compare.execution.execute_run`, exactly
as the sequential path does in-process.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medseg.compare.execution import execute_run
from medseg.compare.spec import load_spec
from medseg.data.transforms import use_plain_tensors
from medseg.errors import report_user_error


def main(argv: Sequence[str] | None = None) -> int:
    """Train the run recorded in ``RUN_DIR``; returns the exit code (2 on a user error)."""
    parser = argparse.ArgumentParser(prog="python -m medseg.compare.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    use_plain_tensors()
    try:
        execute_run(load_spec(args.run_dir), args.resume)
    except Exception as err:
        if not report_user_error(err):
            raise
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
