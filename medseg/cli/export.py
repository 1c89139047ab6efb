"""``medseg export``: a segmentation checkpoint as ONNX, TorchScript or a MONAI bundle, or a
cross-validation folder's fold ensemble as ONNX or TorchScript (:mod:`medseg.export`),
checked against PyTorch eager before it is kept; prints the files written and the parity
figures."""

from __future__ import annotations

import argparse

EXAMPLE = "medseg export models/demo_lgg/best.pt --format onnx --out exports/demo_lgg_onnx"
FORMAT_CHOICES = ("onnx", "torchscript", "bundle")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a segmentation best.pt written by medseg train, or a "
                                           "cross-validation folder (medseg cv): the mean of its "
                                           "folds' probabilities, as onnx or torchscript")
    parser.add_argument("--format", required=True, choices=FORMAT_CHOICES,
                        help="onnx: model.onnx for ONNX Runtime (input rule inside the graph); "
                             "torchscript: model.ts; bundle: a MONAI bundle (configs/, models/, docs/)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="a new or empty folder; one that already holds an export is refused")


def run(args: argparse.Namespace) -> int:
    from medseg.export.run import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.format, args.out)
    for path in result.files:
        print(f"wrote {path}")
    if result.parity is not None:
        print(result.parity.line())
    print(f"exported {args.checkpoint} as {args.format} to {args.out}")
    return 0
