"""One comparison run in its own process: ``python -m medseg.compare.worker RUN_DIR [--resume]``.

The multi-GPU path of :func:`medseg.compare.run_comparison` starts one worker per device
(``CUDA_VISIBLE_DEVICES=<i>``). The worker reads the run's method, seed and config from
``RUN_DIR/compare_run.json`` and calls :func:`medseg.compare.runner.execute_run`, exactly as
the sequential path does in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from medseg.compare.runner import RUN_RECORD, RunSpec, execute_run
from medseg.config import config_from_dict
from medseg.errors import MedsegError


def load_spec(run_dir: Path) -> RunSpec:
    """The :class:`RunSpec` recorded in ``run_dir/compare_run.json``.

    Raises:
        MedsegError: when the record is missing or unreadable.
    """
    path = run_dir / RUN_RECORD
    try:
        record = json.loads(path.read_text())
        return RunSpec(record["method"], int(record["seed"]), config_from_dict(record["config"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MedsegError(f"{path}: not a readable comparison run record ({err})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medseg.compare.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    try:
        execute_run(load_spec(args.run_dir), args.resume)
    except MedsegError as err:
        print(f"medseg: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
