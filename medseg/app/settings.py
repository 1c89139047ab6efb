"""Where the app looks for runs and data: environment variables with repository defaults."""

from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR_ENV = "MEDSEG_MODELS_DIR"
LGG_DIR_ENV = "MEDSEG_DATA_DIR"
PCAM_DIR_ENV = "MEDSEG_PCAM_DIR"

DEFAULT_MODELS_DIR = "models"
DEFAULT_LGG_DIR = "demo_data/lgg"
DEFAULT_PCAM_DIR = "demo_data/pcam"

#: Largest upload accepted, in megabytes (also passed to Streamlit as server.maxUploadSize).
MAX_UPLOAD_MB = 200


def models_dir() -> Path:
    """The folder of training runs: ``$MEDSEG_MODELS_DIR`` or ``models/``."""
    return Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR)


def lgg_dir() -> Path:
    """The LGG-format case folder: ``$MEDSEG_DATA_DIR`` or ``demo_data/lgg``."""
    return Path(os.environ.get(LGG_DIR_ENV) or DEFAULT_LGG_DIR)


def pcam_dir() -> Path:
    """The PCam-format folder: ``$MEDSEG_PCAM_DIR`` or ``demo_data/pcam``."""
    return Path(os.environ.get(PCAM_DIR_ENV) or DEFAULT_PCAM_DIR)
