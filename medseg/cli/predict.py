"""``medseg predict``: tumour masks for slices, patient folders, NIfTI volumes and the three MR
sequences of a scan given separately (``--pre``, ``--flair``, ``--post``: NIfTI files or
DICOM series).

Writes ``<name>_pred.png`` and ``<name>_pred_overlay.png`` per slice (and
``<name>_pred.nii.gz`` and the lesion report ``<name>_pred.json`` per volume or sequence set,
named after the FLAIR input, plus the DICOM SEG ``<name>_pred_seg.dcm`` when that input is a
DICOM series), never over an existing file unless ``--overwrite`` and that file is an earlier
prediction (see :mod:`medseg.predict`), and never while another medseg process writes
``--out`` (its lock, :mod:`medseg.locks`); prints a line per input and, per volume, its
tumour volume (mL) and lesion count. With ``--reference MASK`` (one input only) the prediction
is scored against that mask: the report gains a ``reference`` section and a line gives Dice,
HD95 and the lesions found and missed. An input holding one MR sequence (a 3-D volume, a grey slice,
one of the sequence options) is refused unless ``--single-sequence``.

The model may be an ensemble: a cross-validation folder (its folds; its postprocessing applied
to every mask unless ``--postprocessing none``), or a checkpoint with ``--member`` checkpoints;
``--tta flip`` mirrors the inputs; ``--probabilities`` writes each probability map
(``<name>_prob.nii.gz``, ``<slice>_prob.png``) before the threshold and postprocessing.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the model code load in seconds: not for `medseg predict --help`
    from medseg.predict import Prediction

EXAMPLE = ("medseg predict models/demo_lgg/best.pt --pre t1.nii.gz --flair flair_dicom/ "
           "--post t1c.zip --out predictions")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a segmentation best.pt written by medseg train, a "
                                           "cross-validation folder (medseg cv: the ensemble of its "
                                           "folds), or an ONNX export (model.onnx or its folder, "
                                           "medseg export)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="slice (.tif/.png/.jpg, RGB), folder of slices (kaggle_3m patient "
                             "folder) or NIfTI volume (.nii/.nii.gz) holding the three sequences "
                             "as 3 channels last")
    scan = parser.add_argument_group(
        "MR sequences of one scan",
        "each a NIfTI file (.nii/.nii.gz), a DICOM series folder, a .zip of one, or a DICOM "
        "file; the three on one voxel grid; outputs are named after --flair")
    scan.add_argument("--pre", metavar="PRE", help="pre-contrast T1 (the model's channel 1)")
    scan.add_argument("--flair", metavar="FLAIR", help="FLAIR (channel 2)")
    scan.add_argument("--post", metavar="POST", help="post-contrast T1 (channel 3)")
    scan.add_argument("--single-sequence", action="store_true",
                      help="accept an input holding one MR sequence (a 3-D volume, a grey slice, "
                           "only one of --pre/--flair/--post) and repeat it into all three "
                           "channels; the masks are less reliable")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where the masks (*_pred.png, *_pred.nii.gz, DICOM SEG "
                             "*_pred_seg.dcm), overlays (*_pred_overlay.png) and lesion reports "
                             "(*_pred.json) go; existing files are never replaced unless "
                             "--overwrite; a folder another medseg command is writing is refused")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="probability at or above which a pixel is tumour (default 0.5)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--engine", default="auto", choices=("auto", "torch", "onnxruntime"),
                        help="auto (default): an ONNX export runs in ONNX Runtime on the CPU, a "
                             "checkpoint in torch")
    parser.add_argument("--reference", metavar="MASK",
                        help="score the prediction of the one input against this mask: a NIfTI "
                             "mask on the volume's (or sequences') voxel grid, or a PNG/TIFF mask "
                             "of the slice's size; the lesion report gains the measures (Dice, "
                             "HD95, volumes, lesions detected/missed/spurious: docs/metrics.md)")
    model = parser.add_argument_group(
        "ensembles, test-time mirroring, postprocessing and probabilities",
        "checkpoints only (an ONNX export predicts with the one model it holds; "
        "--probabilities works with both)")
    model.add_argument("--member", action="append", default=[], metavar="CKPT",
                       help="another checkpoint of the same task and input, averaged with the first "
                            "(repeat for more): the masks come from the mean of their probabilities")
    model.add_argument("--tta", default="none", metavar="none|flip",
                       help="flip: average the probabilities over the input as is and mirrored "
                            "left-right (flipped back); none (default)")
    model.add_argument("--postprocessing", default="record", choices=("record", "none"),
                       help="record (default): apply a cross-validation folder's postprocessing.json "
                            "to every mask, NIfTI, DICOM SEG and lesion report (the raw mask is not "
                            "written; the report records the step); none: write the raw masks")
    model.add_argument("--probabilities", action="store_true",
                       help="also write each probability map, before the threshold and any "
                            "postprocessing: <name>_prob.nii.gz (float32, on the volume's grid) per "
                            "volume or scan, <slice>_prob.png per slice (16-bit grey: round(p x 65535))")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files an earlier medseg predict wrote (never other files, "
                             "never inputs)")


def _volume_summary(record: Prediction) -> str:
    """Tumour volume, lesion count and the DICOM SEG (or why none) of a volume's record."""
    line = f"tumour volume {record.tumour_volume_ml:.2f} mL in {record.lesions} lesion(s)"
    if record.dicom_seg is not None:
        line += f"; DICOM SEG {record.dicom_seg.name}"
        if not record.lesions:
            line += " (empty: no tumour found)"
    elif record.dicom_seg_skipped is not None:
        line += f"; no DICOM SEG: {record.dicom_seg_skipped}"
    return line


def run(args: argparse.Namespace) -> int:
    from medseg.imaging.sequences import SEQUENCES
    from medseg.predict import predict_paths
    from medseg.predict.exported import resolve_engine

    sequences = {key: getattr(args, key) for key in SEQUENCES}
    if resolve_engine(args.checkpoint, args.engine) == "onnxruntime":
        print(f"{args.checkpoint}: an ONNX export: predicting with ONNX Runtime on the CPU")
    for record in predict_paths(args.checkpoint, args.inputs, args.out, sequences=sequences,
                                single_sequence=args.single_sequence, threshold=args.threshold,
                                device=args.device, overwrite=args.overwrite, engine=args.engine,
                                reference=args.reference, members=args.member, tta=args.tta,
                                postprocess=args.postprocessing == "record",
                                probabilities=args.probabilities):
        kind = record.kind
        if record.sequences:
            kind += " (" + ", ".join(f"{key.upper()} {path}" for key, path in record.sequences.items()) + ")"
        note = ("; the model saw one MR sequence repeated in all three channels (--single-sequence): "
                "masks are less reliable" if record.single_sequence else "")
        print(f"{record.input}: {kind}, {record.slices} slice(s), tumour on "
              f"{record.tumour_slices} ({record.tumour_pixels} px), {len(record.files)} files{note}")
        if record.tumour_volume_ml is not None:
            print(f"{record.input}: {_volume_summary(record)}")
        if record.nonfinite_voxels:
            print(f"{record.input}: note: {record.nonfinite_voxels} NaN or infinite voxels were "
                  "read as background")
        if record.reference is not None:
            print(f"{record.input}: {record.reference.summary()}")
        if record.postprocessing != "none":
            print(f"{record.input}: postprocessing: {record.postprocessing} (the masks written; "
                  "--postprocessing none writes the raw masks)")
    print(f"written to {args.out}")
    return 0
