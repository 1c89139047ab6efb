"""Fixtures of the engine tests: the tiny run configs as factories, and one intra-op thread.

The datasets (``tiny_lgg``, ``tiny_pcam``) and the trained runs (``trained_lgg``,
``trained_pcam``) are the session fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medseg.config import Config, config_from_dict
from tests.support import lgg_settings as _lgg_settings
from tests.support import one_thread as _one_thread
from tests.support import pcam_settings as _pcam_settings
from tests.support import write_config as _write_config


def _lgg_config(root: Path, run_dir: Path, **train: Any) -> Config:
    return config_from_dict(_lgg_settings(root, run_dir, **train))


@pytest.fixture(autouse=True)
def one_thread():
    """Every training run of these tests on one thread (see :func:`tests.support.one_thread`)."""
    with _one_thread():
        yield


@pytest.fixture(scope="session")
def lgg_settings():
    """``lgg_settings(root, run_dir, **train) -> dict``: the tiny LGG config as a mapping
    (the config of ``trained_lgg``)."""
    return _lgg_settings


@pytest.fixture(scope="session")
def lgg_config():
    """``lgg_config(root, run_dir, **train) -> Config``: the tiny LGG config."""
    return _lgg_config


@pytest.fixture(scope="session")
def pcam_settings():
    """``pcam_settings(root, run_dir, **train) -> dict``: the tiny PCam config as a mapping."""
    return _pcam_settings


@pytest.fixture(scope="session")
def write_config():
    """``write_config(settings, path) -> path``: a config mapping saved as YAML."""
    return _write_config
