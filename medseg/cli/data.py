"""``medseg data check PATH [--json]``: validate a dataset folder and count what it holds."""

from __future__ import annotations

import argparse
import json

EXAMPLE = "medseg data check demo_data/lgg --json"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", title="actions", required=True)
    check = actions.add_parser(
        "check",
        help="Detect the format (LGG kaggle_3m or PatchCamelyon HDF5) and validate every file.",
        description="Detect the format of PATH (LGG kaggle_3m folder or its parent, or a "
        "PatchCamelyon folder of HDF5 files), validate every file and print counts. Exit code "
        "2 and a one-line error naming the first bad file when the data is invalid.",
    )
    check.add_argument("path", metavar="PATH", help="dataset folder")
    check.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (format, counts) instead of the summary",
    )


def run(args: argparse.Namespace) -> int:
    from medseg.data.check import check_dataset

    report = check_dataset(args.path)
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 0
