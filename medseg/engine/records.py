"""The run's text outputs: ``history.csv`` and ``metrics.json``, each replaced atomically.

A failed write (a full disk, a read-only folder) is a one-line :class:`MedsegError` naming
the file; the previous file stays as it was.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.files import atomic_write, write_text


def os_reason(err: OSError) -> str:
    """What went wrong, in lower case: ``no space left on device``."""
    return os.strerror(err.errno).lower() if err.errno else str(err)


def write_failure(path: str | Path, err: OSError) -> str:
    """The one-line message of a failed write, e.g. ``.../last.pt: cannot write it: no space
    left on device (the previous file is intact)``."""
    return f"{path}: cannot write it: {os_reason(err)} (the previous file is intact)"


@contextmanager
def reporting_write_errors(path: str | Path) -> Iterator[None]:
    """Turn an :class:`OSError` of the block into a :class:`MedsegError` naming ``path``.

    Raises:
        MedsegError: see :func:`write_failure`.
    """
    try:
        yield
    except OSError as err:
        raise MedsegError(write_failure(path, err)) from None


def write_history(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write one CSV row per epoch; the columns are the union of the rows' keys, in order (a
    row without a column leaves its cell empty). Read back by
    :meth:`medseg.runs.RunFolder.read_history`.

    Raises:
        MedsegError: when the file cannot be written.
    """
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with reporting_write_errors(path), atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` as indented JSON (NaN as null).

    Raises:
        MedsegError: when the file cannot be written.
    """
    with reporting_write_errors(path):
        write_text(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def to_json(data: dict[str, Any]) -> str:
    """``data`` as one line of strict JSON (NaN as null)."""
    return json.dumps(_json_safe(data), allow_nan=False)
