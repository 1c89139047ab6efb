"""Where the app looks for runs and data: environment variables with repository defaults.

The folders are fixed when the server starts. A browser may change them (text fields in
the sidebar and the page) only when ``MEDSEG_APP_FOLDER_PICKER`` is on: anyone who reaches
the page could then read any folder the server can, and load any checkpoint in it.
``medseg app`` turns it on when it binds a loopback address (see :mod:`medseg.cli.app`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR_ENV = "MEDSEG_MODELS_DIR"
LGG_DIR_ENV = "MEDSEG_DATA_DIR"
PCAM_DIR_ENV = "MEDSEG_PCAM_DIR"
FOLDER_PICKER_ENV = "MEDSEG_APP_FOLDER_PICKER"
#: values of ``MEDSEG_APP_FOLDER_PICKER`` that turn the picker on (any other leaves it off)
ON_VALUES = ("1", "true", "yes", "on")

DEFAULT_MODELS_DIR = "models"
DEFAULT_LGG_DIR = "demo_data/lgg"
DEFAULT_PCAM_DIR = "demo_data/pcam"

#: Largest upload accepted, in megabytes (also passed to Streamlit as server.maxUploadSize).
MAX_UPLOAD_MB = 200


def models_dir() -> Path:
    """The folder of training runs, exports and CV folders: ``$MEDSEG_MODELS_DIR`` or ``models/``."""
    return Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR)


def lgg_dir() -> Path:
    """The LGG-format case folder: ``$MEDSEG_DATA_DIR`` or ``demo_data/lgg``."""
    return Path(os.environ.get(LGG_DIR_ENV) or DEFAULT_LGG_DIR)


def pcam_dir() -> Path:
    """The PCam-format folder: ``$MEDSEG_PCAM_DIR`` or ``demo_data/pcam``."""
    return Path(os.environ.get(PCAM_DIR_ENV) or DEFAULT_PCAM_DIR)


def is_on(value: str | None) -> bool:
    """Whether a setting's text turns it on: ``1``, ``true``, ``yes`` or ``on`` (any case)."""
    return (value or "").strip().lower() in ON_VALUES


def folder_picker() -> bool:
    """Whether the page lets a browser choose its folders: ``$MEDSEG_APP_FOLDER_PICKER`` is
    on (:func:`is_on`). Off when unset."""
    return is_on(os.environ.get(FOLDER_PICKER_ENV))


@dataclass(frozen=True)
class DataFolder:
    """A case or PCam folder the page reads, and where it came from (for the page to say)."""

    path: Path
    source: str

    def problem(self, label: str) -> str | None:
        """One line when the folder is missing (given or default alike), else None."""
        return None if self.path.is_dir() else f"{label} {self.path} ({self.source}) is not a folder"


def data_folder(variable: str, default: str, run_root: str | Path | None) -> DataFolder:
    """The folder ``$variable`` names (``medseg app --data``/``--pcam`` set it); else the run's
    own data folder (``run_root``: its config's ``data.root``) when it exists; else ``default``.

    Example:
        >>> data_folder(LGG_DIR_ENV, DEFAULT_LGG_DIR, None).source  # with $MEDSEG_DATA_DIR unset
        'the default'
    """
    given = os.environ.get(variable)
    if given:
        return DataFolder(Path(given), f"${variable}")
    if run_root is not None and Path(run_root).is_dir():
        return DataFolder(Path(run_root), "the run's data.root in config.yaml")
    missing = "" if run_root is None else f"; the run's data.root {run_root} is not a folder"
    return DataFolder(Path(default), f"the default{missing}")


def case_folder(run_root: str | Path | None) -> DataFolder:
    """The LGG case folder for a run whose config names ``run_root`` (:func:`data_folder`)."""
    return data_folder(LGG_DIR_ENV, DEFAULT_LGG_DIR, run_root)


def patch_folder(run_root: str | Path | None) -> DataFolder:
    """The PCam folder for a run whose config names ``run_root`` (:func:`data_folder`)."""
    return data_folder(PCAM_DIR_ENV, DEFAULT_PCAM_DIR, run_root)
