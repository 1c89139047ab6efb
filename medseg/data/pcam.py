"""PatchCamelyon (Veeling et al.) HDF5 files, read lazily.

Layout: one folder with ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``; x files
hold dataset ``x`` (N, 96, 96, 3) uint8, y files dataset ``y`` (N, 1, 1, 1) uint8 (1 = tumour
tissue in the centre 32x32 region). ``..._meta.csv`` files are optional and not read.
Downloads come as ``.h5.gz``: they must be decompressed first (``gunzip FILE``); medseg
detects them and says so rather than decompressing 7 GB on every run.

Example:
    >>> x_path, y_path = pcam_files("demo_data/pcam", "val")
    >>> inspect_pcam_split(x_path, y_path)
    256
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from medseg.errors import DataError

#: medseg split name -> the split name in PCam's file names.
PCAM_SPLITS = {"train": "train", "val": "valid", "test": "test"}
#: side of a PCam patch in pixels: patches are (PATCH_SIZE, PATCH_SIZE, 3) uint8
PATCH_SIZE = 96
#: side of the centre square a PCam label describes (tumour tissue in it or not)
LABEL_REGION_SIZE = 32
PATCH_SHAPE = (PATCH_SIZE, PATCH_SIZE, 3)
LABEL_SHAPE = (1, 1, 1)
_CHUNK_CACHE_BYTES = 32 * 2**20


def label_region(
    height: int = PATCH_SIZE, width: int = PATCH_SIZE, size: int = LABEL_REGION_SIZE
) -> tuple[slice, slice]:
    """The rows and columns of the centre ``size`` x ``size`` square of a patch, the region
    a PCam label is about: rows and columns 32..63 of a 96 x 96 patch. With an odd margin the
    square sits one pixel nearer the top-left corner.

    Raises:
        ValueError: when the square is empty or bigger than the patch.

    Example:
        >>> label_region()
        (slice(32, 64, None), slice(32, 64, None))
    """
    if not 1 <= size <= min(height, width):
        raise ValueError(f"centre size {size} does not fit a {height}x{width} patch")
    top, left = (height - size) // 2, (width - size) // 2
    return slice(top, top + size), slice(left, left + size)


def pcam_file_name(split: str, kind: str) -> str:
    """``camelyonpatch_level_2_split_<valid|train|test>_<x|y>.h5`` for a medseg split name."""
    return f"camelyonpatch_level_2_split_{PCAM_SPLITS[split]}_{kind}.h5"


def is_pcam_root(folder: Path) -> bool:
    """True when ``folder`` holds a PCam HDF5 file (plain or ``.h5.gz``)."""
    return any(folder.glob("camelyonpatch_level_2_split_*.h5*"))


def pcam_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """Return the (x, y) file paths of ``split`` ("train", "val" or "test") under ``root``.

    Raises:
        DataError: when a file is missing, or only its gzip download is there.
    """
    root = Path(root)
    paths = tuple(root / pcam_file_name(split, kind) for kind in ("x", "y"))
    for path in paths:
        if not path.is_file():
            gz = path.with_name(path.name + ".gz")
            if gz.is_file():
                raise DataError(
                    f"{gz}: gzip-compressed download; decompress it first with: gunzip {gz}"
                )
            raise DataError(f"{path}: missing PatchCamelyon file")
    return paths[0], paths[1]


@contextmanager
def open_h5(path: Path, key: str) -> Iterator[h5py.Dataset]:
    """Open dataset ``key`` of an HDF5 file read-only (checked by :func:`stored_dataset`).

    Raises:
        DataError: when the file is not HDF5 or ``key`` is not a dataset stored in it.
    """
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        yield stored_dataset(handle, path, key)


def stored_dataset(handle: h5py.File, path: Path, key: str) -> h5py.Dataset:
    """The dataset ``key`` of the open file ``handle``, its data stored in that file.

    PCam's files hold plain datasets: a group, a named type, a broken link, a link into
    another file, or a dataset whose data lie in other files (external storage, a virtual
    dataset) is refused, so that reading a patch never opens another file.

    Raises:
        DataError: naming ``path`` and what ``key`` is instead (for a missing key, the keys
            the file holds).
    """
    link = handle.get(key, getlink=True)
    if link is None:
        keys = list(handle)
        found = ", ".join(repr(k) for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise DataError(f"{path}: no HDF5 dataset {key!r} (found {found or 'none'})")
    if isinstance(link, h5py.ExternalLink):
        raise DataError(f"{path}: {key!r} is a link into another file, not a dataset stored in this one")
    try:
        item = handle[key]
    except (KeyError, OSError) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"{path}: {key!r} cannot be opened ({detail})") from None
    if not isinstance(item, h5py.Dataset):
        kind = "a group" if isinstance(item, h5py.Group) else f"a {type(item).__name__}"
        raise DataError(f"{path}: {key!r} is {kind}, not a dataset")
    if item.is_virtual or item.external:
        raise DataError(f"{path}: dataset {key!r} keeps its data in other files; PCam data must be "
                        "stored in the file itself")
    return item


def _check_shape(path: Path, dataset: h5py.Dataset, item_shape: tuple[int, ...]) -> int:
    expected = "(N, " + ", ".join(map(str, item_shape)) + ")"
    if dataset.ndim != 1 + len(item_shape) or tuple(dataset.shape[1:]) != item_shape:
        raise DataError(f"{path}: dataset {dataset.name} has shape {dataset.shape}, expected {expected}")
    if dataset.dtype != np.uint8:
        raise DataError(f"{path}: dataset {dataset.name} has dtype {dataset.dtype}, expected uint8")
    return int(dataset.shape[0])


def inspect_pcam_split(x_path: Path, y_path: Path) -> int:
    """Check the keys, shapes and dtypes of one split's files (metadata only); return N.

    Raises:
        DataError: naming the file: not HDF5, ``x`` or ``y`` not a dataset stored in it
            (:func:`stored_dataset`), wrong shape or dtype, no patches, or x and y of
            different lengths.
    """
    with open_h5(x_path, "x") as x:
        n_x = _check_shape(x_path, x, PATCH_SHAPE)
    if n_x == 0:
        raise DataError(f"{x_path}: holds no patches")
    with open_h5(y_path, "y") as y:
        n_y = _check_shape(y_path, y, LABEL_SHAPE)
    if n_x != n_y:
        raise DataError(f"{y_path}: holds {n_y} labels but {x_path.name} holds {n_x} patches")
    return n_x


@contextmanager
def _read_errors(path: Path, what: str) -> Iterator[None]:
    """Turn the errors h5py raises on damaged data into a DataError naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError, ValueError) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"{path}: cannot {what}: corrupt or unreadable HDF5 data ({detail})") from None


class LoadPCamPatchd:
    """Add patch ``index`` of a PCam split as ``image`` and ``label``, reading lazily.

    A plain callable (the first step of :func:`~medseg.data.transforms.pcam_transforms`), so
    that reading PCam, as the app does, does not import MONAI.

    The HDF5 files are opened on first use in each process (so DataLoader workers never share
    a handle) and only the requested patch is read.

    Args:
        x_path: the split's ``..._x.h5``.
        y_path: the split's ``..._y.h5``.

    Returns:
        ``{"index": i, "image": float32 (3, 96, 96) in 0..255, "label": float32 (1,)}``.

    Example:
        >>> LoadPCamPatchd(*pcam_files("demo_data/pcam", "val"))({"index": 0})["image"].shape
        torch.Size([3, 96, 96])
    """

    def __init__(self, x_path: str | Path, y_path: str | Path) -> None:
        self.x_path = Path(x_path)
        self.y_path = Path(y_path)
        self._pid: int | None = None
        self._datasets: tuple[h5py.Dataset, h5py.Dataset] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pid"] = None
        state["_datasets"] = None
        return state

    def _open(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        if self._datasets is None or self._pid != os.getpid():
            with _read_errors(self.x_path, "open it"):
                x_file = h5py.File(self.x_path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
            with _read_errors(self.y_path, "open it"):
                y_file = h5py.File(self.y_path, "r")
            self._datasets = (stored_dataset(x_file, self.x_path, "x"), stored_dataset(y_file, self.y_path, "y"))
            self._pid = os.getpid()
        return self._datasets

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Read patch ``data["index"]``.

        Raises:
            DataError: naming the file and the index when HDF5 cannot read it (a corrupt
                chunk, a truncated file, an I/O error) or the label is not 0 or 1; naming
                the file when ``x`` or ``y`` is not a dataset stored in it.
        """
        x, y = self._open()
        index = int(data["index"])
        with _read_errors(self.x_path, f"read patch {index}"):
            patch = x[index]
        with _read_errors(self.y_path, f"read label {index}"):
            label = y[index].reshape(1)
        if label[0] > 1:
            raise DataError(f"{self.y_path}: label {int(label[0])} at index {index}; labels must be 0 or 1")
        return {
            **data,
            "index": index,
            "image": torch.from_numpy(patch).permute(2, 0, 1).float(),
            "label": torch.from_numpy(label.astype(np.float32)),
        }


class PCamRecords(Sequence):
    """The records ``{"index": i}`` for i < n, without building a list of 262,144 dicts."""

    def __init__(self, n: int) -> None:
        self._indices = range(n)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return [{"index": i} for i in self._indices[item]]
        return {"index": self._indices[item]}
