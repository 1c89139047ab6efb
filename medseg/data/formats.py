"""Which training dataset a folder holds, by its file names alone (nothing is decoded).

Example:
    >>> detect_format("downloads/lgg-mri-segmentation")
    'lgg'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from medseg.data.lgg import locate_lgg_root
from medseg.data.pcam import is_pcam_root

DataFormat = Literal["lgg", "pcam"]


def detect_format(path: str | Path) -> DataFormat | None:
    """The dataset format of the folder ``path``.

    The rule, in this order: ``"pcam"`` when the folder holds a PatchCamelyon file
    (``camelyonpatch_level_2_split_*.h5``, or its ``.h5.gz`` download), so a folder holding both
    datasets is PCam; ``"lgg"`` when the folder itself or its ``kaggle_3m`` subfolder holds a
    patient folder (``<patient>/<patient>_<k>.tif``); otherwise None: not a folder, empty, or
    anything else (a ``kaggle_3m`` folder without patient folders included).

    Raises:
        DataError: when the folder or its ``kaggle_3m`` subfolder cannot be listed.

    Example:
        >>> detect_format("lgg-mri-segmentation/kaggle_3m"), detect_format("empty/")
        ('lgg', None)
    """
    path = Path(path)
    if not path.is_dir():
        return None
    if is_pcam_root(path):
        return "pcam"
    return "lgg" if locate_lgg_root(path) is not None else None
