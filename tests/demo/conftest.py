"""Fixtures of the demo tests: the LGG and PCam demos, written once (seed 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.demo.lgg import write_demo_lgg
from medseg.demo.pcam import write_demo_pcam


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="session")
def demo_lgg(tmp_path_factory) -> Path:
    return write_demo_lgg(tmp_path_factory.mktemp("demo") / "lgg", seed=0)


@pytest.fixture(scope="session")
def demo_pcam(tmp_path_factory) -> Path:
    return write_demo_pcam(tmp_path_factory.mktemp("demo") / "pcam", seed=0)
