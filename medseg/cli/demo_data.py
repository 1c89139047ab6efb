"""``medseg demo-data {lgg,pcam} OUT``: write the embedded demo datasets.

LGG: real MNI152 anatomy (from nilearn) with SYNTHETIC tumours, in the kaggle_3m layout.
PCam: real histology (from scikit-image) with SYNTHETIC labels, as PatchCamelyon HDF5 files.

Each demo folder gets the marker ``medseg_demo.json`` listing the files written; ``--force``
replaces only a folder holding that marker, and only those files. OUT is locked
(:func:`medseg.demo.marker.demo_lock`) while the command runs: a second demo-data into the
same folder is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg.errors import DataError

EXAMPLE = "medseg demo-data lgg demo_data/lgg --seed 0"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        choices=("lgg", "pcam"),
        help="lgg: MRI slices + masks (kaggle_3m layout); pcam: PatchCamelyon HDF5 files",
    )
    parser.add_argument("out", metavar="OUT", help="destination folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the demo an earlier demo-data wrote into OUT (only the files its "
        "medseg_demo.json lists; other files stay; a folder without that marker is refused)",
    )


def run(args: argparse.Namespace) -> int:
    from medseg.data.check import check_dataset
    from medseg.demo.lgg import write_demo_lgg
    from medseg.demo.marker import demo_lock, remove_demo
    from medseg.demo.pcam import write_demo_pcam
    from medseg.imaging.files import list_folder
    from medseg.locks import LOCK_NAME

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    with demo_lock(out):  # from the look at what OUT holds to the last file written
        if any(path.name != LOCK_NAME for path in list_folder(out)):
            if not args.force:
                raise DataError(f"{out}: folder is not empty; choose another OUT, or pass --force to "
                                "replace the demo data an earlier demo-data wrote there")
            remove_demo(out, args.kind)
        writer = write_demo_lgg if args.kind == "lgg" else write_demo_pcam
        writer(out, seed=args.seed)
    print(check_dataset(out).summary())
    print(f"Demo data written to {out} (see {out / 'README.md'}: the anatomy/histology is real, "
          "the tumours/labels are SYNTHETIC)")
    return 0
