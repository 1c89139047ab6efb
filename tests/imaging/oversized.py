"""Tiny files in real formats whose headers declare huge images or volumes (decompression
bombs), written without medseg: shared by the data, CLI and predict tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid-looking RGB PNG of about 70 bytes whose IHDR declares ``width`` x ``height``."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    return path


def write_tiff_declaring(path: Path, width: int, height: int) -> Path:
    """An uncompressed RGB TIFF of a few hundred bytes whose tags declare ``width`` x ``height``."""
    tifffile.imwrite(path, np.zeros((1, 1, 3), np.uint8), photometric="rgb")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)
    return path


def write_nifti_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """A ``.nii`` file holding only a NIfTI-1 header that declares ``shape`` float32 voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(np.eye(4), code=1)
    path.write_bytes(header.binaryblock + b"\0" * 4)  # 348-byte header + empty extension flag
    return path
