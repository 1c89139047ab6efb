"""Driving the page with ``streamlit.testing.v1.AppTest``, and test files shared by the app's
test modules."""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import torch
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from tests.support import write_dicom_series

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
TIMEOUT = 180  # the first run loads torch and the model


def start(monkeypatch, models: Path, lgg: Path | None = None, pcam: Path | None = None,
          *, picker: bool = False, view: str | None = None) -> AppTest:
    """The page run once over ``models`` (and the case folders), the folder picker off
    unless ``picker``, on the tab ``view`` (an LGG view; default: the first, "Case")."""
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(models))
    if lgg is not None:
        monkeypatch.setenv("MEDSEG_DATA_DIR", str(lgg))
    if pcam is not None:
        monkeypatch.setenv("MEDSEG_PCAM_DIR", str(pcam))
    monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", "1" if picker else "0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if view is not None:
        at.session_state["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_view(at: AppTest, view: str) -> AppTest:
    """Switch the page to the tab ``view`` (as a click on it would) and run it."""
    at.session_state["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def record_pictures(monkeypatch) -> list[tuple[str, bytes]]:
    """(MIME type, bytes) of every picture the page sends from now on, in order."""
    sent: list[tuple[str, bytes]] = []
    add = MediaFileManager.add

    def recording_add(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if mimetype.startswith("image/"):
            sent.append((mimetype, data))
        return add(self, data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", recording_add)
    return sent


def perturbed_copy(run: Path, target: Path, scale: float) -> Path:
    """A copy of ``run`` whose decoder weights are scaled: another model, the same split."""
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("app_cache"))
    payload = torch.load(target / "best.pt", weights_only=True)
    for name, tensor in payload["model"].items():
        if name.startswith("decoder") and tensor.is_floating_point():
            tensor.mul_(scale)
    torch.save(payload, target / "best.pt")
    return target


def chart_specs(at: AppTest) -> list[dict]:
    """The Vega-Lite specs of the page's charts (their data travels apart, as Arrow)."""
    return [json.loads(node.proto.spec) for node in at.get("vega_lite_chart")]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def plain(markdown: str) -> str:
    """The text Markdown shows for ``markdown`` written with backslash escapes."""
    return re.sub(r"\\(.)", r"\1", markdown)


BOMB_SIDE = 12_000


def bomb_png() -> bytes:
    """A ~100-byte PNG whose header declares 12000 x 12000 RGB pixels (432 MB decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9)) + chunk(b"IEND", b""))


# --- sequences ------------------------------------------------------------------------------

#: the grid of the sequence files: voxel (x, y, z) = (column, row, slice), x towards the
#: patient's left, y posterior, z superior (an axial DICOM series, in RAS), 0.9 x 0.9 x 3 mm
SEQUENCE_AFFINE = np.array([[-0.9, 0, 0, 30.0], [0, -0.9, 0, 40.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.42"


def dicom_zip(folder: Path, pixels: np.ndarray, *, series: int = 8, frame_of_reference: bool = True) -> bytes:
    """``pixels`` (N, Rows, Columns) written as a DICOM series on :data:`SEQUENCE_AFFINE`'s grid
    (files in reverse slice order) into ``folder``, zipped (members ``<folder name>/IM…``)."""
    n = len(pixels)
    files = write_dicom_series(folder, np.asarray(pixels).astype(np.uint16),
                               [(-30.0, -40.0, -12.0 + 3.0 * k) for k in range(n)],
                               names=[f"IM{n - k:04d}" for k in range(n)], pixel_spacing=(0.9, 0.9),
                               series_uid=f"1.2.826.0.1.3680043.8.498.{series}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            if frame_of_reference:
                dataset = pydicom.dcmread(file)
                dataset.FrameOfReferenceUID = FRAME_OF_REFERENCE
                dataset.save_as(file, enforce_file_format=True)
            archive.write(file, f"{folder.name}/{file.name}")
    return buffer.getvalue()


def sequence_radio(at: AppTest):
    """The upload tab's MRI-sequence radio (its key names its options)."""
    [radio] = [r for r in at.radio if str(r.key).startswith("upload_sequence:")]
    return radio


def record_downloads(monkeypatch) -> dict[str, Callable[[], bytes]]:
    """{file name: bytes maker} of every file the page offers for download from now on; a
    deferred download's maker is the page's own callable, run as a click would run it."""
    offered: dict[str, Callable[[], bytes]] = {}
    add, add_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def recording_add(self, data, mimetype, coordinates, file_name=None,
                      is_for_static_download=False):
        if is_for_static_download:
            offered[file_name] = lambda: data
        return add(self, data, mimetype, coordinates, file_name, is_for_static_download)

    def recording_add_deferred(self, data_callable, mimetype, coordinates, file_name=None,
                               **kwargs):
        offered[file_name] = data_callable
        return add_deferred(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", recording_add)
    monkeypatch.setattr(MediaFileManager, "add_deferred", recording_add_deferred)
    return offered
