"""Hostile files in real formats, written without medseg, and a guard that turns a read that
would block forever into a failure: shared by the imaging, data, CLI and app tests."""

from __future__ import annotations

import os
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file

MR_SMALL = Path(get_testdata_file("MR_small.dcm"))
#: what a sparse file declares: 2 GiB
TWO_GIB = 2**31
#: MR_small.dcm's PixelData element (7FE0,0010) OW, explicit VR little endian: tag, VR, 0, length
_PIXEL_DATA = b"\xe0\x7f\x10\x00OW\x00\x00"
#: byte offsets of scl_slope and scl_inter in a NIfTI-1 header
_SCL_OFFSET = 112


class Blocked(BaseException):
    """A read still waiting when the guard expired (a BaseException: no reader swallows it)."""


@contextmanager
def no_hang(seconds: int = 10) -> Iterator[None]:
    """Fail with :class:`Blocked` instead of waiting forever (opening a FIFO blocks until a
    writer appears)."""

    def expired(signum, frame):
        raise Blocked(f"still blocked after {seconds} s (a FIFO was opened)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> Path:
    """A FIFO at ``path`` (no writer: opening it for reading blocks forever)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def write_mr_small(path: Path, **values: object) -> Path:
    """MR_small.dcm (64x64, 16 bits, one slice), rewritten by pydicom with ``values`` set as
    stored strings (``NumberOfFrames="abc"`` is stored as is, not validated)."""
    dataset = pydicom.dcmread(MR_SMALL)
    for keyword, value in values.items():
        if keyword not in dataset:
            dataset.add_new(keyword, pydicom.datadict.dictionary_VR(keyword), None)
        dataset[keyword]._value = value  # as a damaged file holds it, bypassing validation
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path)
    return path


def write_sparse_dicom(path: Path, declared: int = TWO_GIB) -> Path:
    """MR_small.dcm whose PixelData length field declares ``declared`` bytes, the file extended
    sparse to hold them (a few KB on disk, ``declared`` bytes long)."""
    write_mr_small(path)
    data = bytearray(path.read_bytes())
    at = data.rfind(_PIXEL_DATA)
    assert struct.unpack_from("<I", data, at + 8)[0] == 64 * 64 * 2
    struct.pack_into("<I", data, at + 8, declared)
    path.write_bytes(bytes(data))
    os.truncate(path, at + 12 + declared)
    return path


def write_nifti(path: Path, data: np.ndarray, *, slope: float | None = None,
                inter: float = 0.0) -> Path:
    """``data`` as a NIfTI-1 file (identity affine); ``slope``: scl_slope/scl_inter written into
    the header bytes as given (nibabel would reset them)."""
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    if slope is not None:
        block = bytearray(path.read_bytes())
        struct.pack_into("<ff", block, _SCL_OFFSET, slope, inter)
        path.write_bytes(bytes(block))
    return path


def rgb24(shape: tuple[int, ...]) -> np.ndarray:
    """Voxels of NIfTI datatype RGB24 (128): one (R, G, B) byte triple each."""
    voxels = np.zeros(shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    voxels["G"] = 100
    return voxels
