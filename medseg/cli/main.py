"""The ``medseg`` command: a dispatcher over one module per subcommand.

Each subcommand module defines ``EXAMPLE`` (shown in its help), ``configure(parser)`` and
``run(args) -> int``, and imports heavy libraries (torch, monai) inside ``run`` so that
``medseg --help`` stays fast.

Errors: a :class:`~medseg.errors.MedsegError`, also when MONAI wrapped it in a RuntimeError
(see :func:`~medseg.errors.find_medseg_error`), is printed as ``medseg: error: <message>``
on one line, exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from medseg import __version__
from medseg.errors import report_user_error

#: subcommand -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("medseg.cli.train", "Train a segmenter or classifier from a YAML config."),
    "evaluate": ("medseg.cli.evaluate", "Score a checkpoint on a dataset split (Dice/IoU or accuracy/AUC)."),
    "predict": ("medseg.cli.predict", "Predict masks for slices, patient folders, NIfTI volumes or a scan's three MR sequences (NIfTI or DICOM)."),
    "compare": ("medseg.cli.compare", "Reproduce the paper's optimizer comparison over seeds."),
    "compare-run": ("medseg.cli.compare_run", "Train one run of a comparison planned with 'compare --plan'."),
    "cv": ("medseg.cli.cv", "Cross-validate an LGG config over patient-disjoint folds: out-of-fold results, the fold ensemble on test, postprocessing chosen out of fold."),
    "data": ("medseg.cli.data", "Inspect and validate datasets (data check PATH)."),
    "demo-data": ("medseg.cli.demo_data", "Write the embedded demo datasets (LGG or PCam format)."),
    "app": ("medseg.cli.app", "Start the Streamlit app to inspect predictions."),
    "export": ("medseg.cli.export", "Export a segmentation checkpoint as ONNX, TorchScript or a MONAI bundle, checked against PyTorch."),
}

#: subcommands that run MONAI data pipelines in this process: MONAI's MetaTensor tracking is
#: switched off first (the others, predict among them, never import MONAI)
PIPELINE_COMMANDS = frozenset({"train", "evaluate", "compare", "compare-run", "cv"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Train and inspect medical-image models with ZNorm "
        "(Z-score gradient normalization, Yun 2024, arXiv 2408.01215).",
        epilog="Run 'medseg COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, description) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(
            name,
            help=description,
            description=description,
            epilog=f"example:\n  {module.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``medseg`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in PIPELINE_COMMANDS:
            from medseg.data.transforms import use_plain_tensors

            use_plain_tensors()
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("medseg: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not report_user_error(err):
            raise
        return 2


def console_main() -> NoReturn:
    """The ``medseg`` console script (and ``python -m medseg``): :func:`main`, then exit.

    Before exiting, every object is moved out of the garbage collector's reach
    (``gc.freeze``): the interpreter's final collection would otherwise walk all of torch,
    timm and torchvision once more, about 1 s of every command (a quarter of a one-slice
    ``medseg predict``; docs/benchmarks.md). Commands close their files themselves, and
    ``sys.exit`` still flushes the standard streams and runs ``atexit`` handlers.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
