"""Tiny datasets written in the real on-disk layouts (kaggle_3m TIFFs, PCam HDF5), per test.

Fixtures ``lgg`` and ``pcam``, written in tmp_path with :mod:`tests.support` (tests may damage
them). Slices are non-square (HEIGHT x WIDTH) so that a transposition cannot go unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import LggFixture, PcamFixture, write_lgg, write_pcam

HEIGHT, WIDTH = 40, 56
PATIENTS = {
    "TCGA_AA_0001_20000101": 11,  # k up to 11: "10" and "11" sort before "2" as text
    "TCGA_BB_0002_20010101": 3,
    "TCGA_CC_0003_20020202": 4,
    "TCGA_DD_0004_20030303": 5,
}
HEALTHY = "TCGA_BB_0002_20010101"


@pytest.fixture
def lgg(tmp_path: Path) -> LggFixture:
    return write_lgg(tmp_path / "lgg-mri-segmentation", PATIENTS, size=(HEIGHT, WIDTH),
                     healthy=HEALTHY)


@pytest.fixture
def pcam(tmp_path: Path) -> PcamFixture:
    return write_pcam(tmp_path / "pcam", {"train": 24, "val": 10, "test": 8})
