"""``medseg predict``: tumour masks for slices, patient folders and NIfTI volumes.

Writes ``<name>_pred.png`` and ``<name>_pred_overlay.png`` per slice (and
``<name>_pred.nii.gz`` per volume), never over an existing file unless ``--overwrite`` and
that file is an earlier prediction (see :mod:`medseg.engine.predict`).
"""

from __future__ import annotations

import argparse

EXAMPLE = "medseg predict models/demo_lgg/best.pt scan.nii.gz slice_12.tif --out predictions"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a segmentation best.pt written by medseg train")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="slice (.tif/.png/.jpg), folder of slices (kaggle_3m patient folder) "
                             "or NIfTI volume (.nii/.nii.gz)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where the masks (*_pred.png, *_pred.nii.gz) and overlays "
                             "(*_pred_overlay.png) go; existing files are never replaced unless "
                             "--overwrite")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="probability at or above which a pixel is tumour (default 0.5)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files an earlier medseg predict wrote (never other files, "
                             "never inputs)")


def run(args: argparse.Namespace) -> int:
    from medseg.engine import predict_paths

    for record in predict_paths(args.checkpoint, args.inputs, args.out,
                                threshold=args.threshold, device=args.device,
                                overwrite=args.overwrite):
        print(f"{record.input}: {record.kind}, {record.slices} slice(s), tumour on "
              f"{record.tumour_slices} ({record.tumour_pixels} px), {len(record.files)} files")
        if record.nonfinite_voxels:
            print(f"{record.input}: note: {record.nonfinite_voxels} NaN or infinite voxels were "
                  "read as background")
    print(f"written to {args.out}")
    return 0
