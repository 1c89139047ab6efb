"""Listing folders of clinical and dataset files: the entries medseg never reads as data.

Example:
    >>> [p.name for p in list_folder(Path("kaggle_3m")) if not SKIPPED_NAMES.fullmatch(p.name)]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medseg.errors import DataError

#: entries never read as data: hidden files and folders (``.*``: macOS ``._*`` AppleDouble
#: files, ``.DS_Store``) and the ``__MACOSX`` folder that macOS zip archives add
SKIPPED_NAMES = re.compile(r"\..*|__MACOSX")


def list_folder(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted by name.

    Raises:
        DataError: when the folder cannot be listed (permission denied, I/O error).
    """
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(entry.path) for entry in entries)
    except PermissionError:
        raise DataError(f"{folder}: cannot read folder (permission denied)") from None
    except OSError as err:
        raise DataError(f"{folder}: cannot read folder ({err.strerror or err})") from None
