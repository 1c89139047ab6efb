"""Session fixtures shared by every test directory: the tiny datasets in the real on-disk
formats and ONE trained tiny run per task (built with :mod:`tests.support`).

* ``tiny_lgg``: the top folder of a kaggle_3m download, 5 patients x 4
  slices of 64x64 (:data:`~tests.support.LGG_PATIENTS`); slices 2 and 3 hold a tumour.
* ``tiny_pcam``: the PCam folder, 16 / 8 / 12 patches
  (:data:`~tests.support.PCAM_SIZES`), label i % 2.
* ``trained_lgg`` (a :class:`medseg.engine.TrainResult`; ``segmentation_run`` is its run
  folder): :func:`~tests.support.lgg_settings`, a ResNet-18 UNet trained 2 epochs at
  ``data.image_size`` 32 on ``tiny_lgg``.
* ``trained_pcam`` (``classification_run`` is its run folder): :func:`~tests.support.pcam_settings`,
  a ResNet-18 classifier trained 1 epoch on ``tiny_pcam``.

Each run folder is alone in its parent folder (the app lists the runs of a folder). Treat
all of these as read-only: copy before changing anything.

``module_tmp`` is a test module's scratch folder for its module-scoped fixtures (CV folders,
shifted checkpoints, exports): a run folder is about 160 MB, so it is removed when the
module's tests end (kept if one of them failed), as ``tmp_path_retention_policy = "failed"``
removes a passing test's ``tmp_path``; a full run stays within a few GB of /tmp.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import lgg_settings, pcam_settings, train_tiny, write_lgg, write_pcam


@pytest.fixture(scope="session")
def tiny_lgg(tmp_path_factory) -> Path:
    return write_lgg(tmp_path_factory.mktemp("tiny_lgg") / "lgg-mri-segmentation").top


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory) -> Path:
    return write_pcam(tmp_path_factory.mktemp("tiny_pcam") / "pcam").root


@pytest.fixture(scope="session")
def trained_lgg(tiny_lgg, tmp_path_factory):
    """The finished 2-epoch segmentation run (``TrainResult``) shared by the read-only tests."""
    return train_tiny(lgg_settings(tiny_lgg, tmp_path_factory.mktemp("lgg_runs") / "tiny_lgg"))


@pytest.fixture(scope="session")
def segmentation_run(trained_lgg) -> Path:
    """The run folder of ``trained_lgg`` (best.pt, last.pt, config.yaml, metrics.json, ...)."""
    return trained_lgg.run_dir


@pytest.fixture(scope="session")
def trained_pcam(tiny_pcam, tmp_path_factory):
    """The finished 1-epoch classification run (``TrainResult``)."""
    return train_tiny(pcam_settings(tiny_pcam, tmp_path_factory.mktemp("pcam_runs") / "tiny_pcam"))


@pytest.fixture(scope="session")
def classification_run(trained_pcam) -> Path:
    """The run folder of ``trained_pcam``."""
    return trained_pcam.run_dir


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory) -> Iterator[Path]:
    """A scratch folder for one test module's fixtures, removed after its tests if all passed."""
    failed_before = request.session.testsfailed
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield folder
    if request.session.testsfailed == failed_before:
        shutil.rmtree(folder, ignore_errors=True)
