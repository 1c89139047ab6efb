"""Driving the page with ``streamlit.testing.v1.AppTest``, and test files shared by the app's
test modules."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
TIMEOUT = 180  # the first run loads torch and the model


def start(monkeypatch, models: Path, lgg: Path | None = None, pcam: Path | None = None,
          *, picker: bool = False) -> AppTest:
    """The page run once over ``models`` (and the case folders), the folder picker off
    unless ``picker``."""
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(models))
    if lgg is not None:
        monkeypatch.setenv("MEDSEG_DATA_DIR", str(lgg))
    if pcam is not None:
        monkeypatch.setenv("MEDSEG_PCAM_DIR", str(pcam))
    monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", "1" if picker else "0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


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
