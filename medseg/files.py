"""Atomic file writes: every file medseg writes appears whole or not at all.

A write goes to a hidden temporary file in the target's folder (``.tmp-<random>-<name>``,
so it keeps the target's extension for libraries that pick a format by name), is flushed
and fsynced, renamed over the target, and the folder is fsynced so that the rename itself
survives a power cut. A crash or an exception leaves the old file untouched and removes the
temporary one. New files get the usual permissions (0666 less the umask).

Example:
    >>> with atomic_write("models/run/metrics.json") as handle:
    ...     json.dump(metrics, handle)
    >>> with atomic_path("out/brain_pred.nii.gz") as tmp:
    ...     nibabel.save(image, tmp)
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: the prefix of every temporary file :func:`atomic_path` creates
TEMP_PREFIX = ".tmp-"
#: the name of every temporary file :func:`atomic_path` creates: ``.tmp-<12 hex digits>-<name>``
TEMP_NAME = re.compile(rf"{re.escape(TEMP_PREFIX)}[0-9a-f]{{12}}-(?P<target>.+)", re.DOTALL)


def fsync_dir(directory: str | Path) -> None:
    """Flush a folder's entries (renames, new files) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically.

    For libraries that write to a file name (nibabel, PIL, ``torch.save``). The parent
    folder must exist.

    Args:
        path: the file to create or replace.

    Raises:
        FileNotFoundError: when the parent folder does not exist.
        Any error of the body: ``path`` is then left as it was and the temporary file removed.
    """
    target = Path(path)
    tmp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{target.name}")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


@contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing; the file appears, complete, only when the block ends cleanly.

    Args:
        path: the file to create or replace; its folder must exist.
        mode: "w" (text) or "wb" (binary).
        encoding: text encoding (ignored in binary mode).
        newline: as for :func:`open` (pass "" for :mod:`csv`).

    Raises:
        ValueError: for a mode other than "w" or "wb".
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    binary = mode == "wb"
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(
            fd, mode, encoding=None if binary else encoding, newline=None if binary else newline
        ) as handle:
            yield handle
            handle.flush()


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)
