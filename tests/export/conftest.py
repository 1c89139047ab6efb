"""Fixtures of the export tests: one intra-op thread, and one export per format of the
session-trained segmenter (``trained_lgg``, tests/conftest.py), shared read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.export.run import ExportResult, export_checkpoint
from tests.support import one_thread as _one_thread


@pytest.fixture(autouse=True)
def one_thread():
    with _one_thread():
        yield


@pytest.fixture(scope="session")
def best_checkpoint(trained_lgg) -> Path:
    return trained_lgg.run_dir / "best.pt"


def _export(checkpoint: Path, fmt: str, folder: Path) -> ExportResult:
    with _one_thread():
        return export_checkpoint(checkpoint, fmt, folder / fmt)


@pytest.fixture(scope="session")
def onnx_export(best_checkpoint, tmp_path_factory) -> ExportResult:
    return _export(best_checkpoint, "onnx", tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="session")
def torchscript_export(best_checkpoint, tmp_path_factory) -> ExportResult:
    return _export(best_checkpoint, "torchscript", tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="session")
def bundle_export(best_checkpoint, tmp_path_factory) -> ExportResult:
    return _export(best_checkpoint, "bundle", tmp_path_factory.mktemp("exports"))
