"""The run's text outputs: ``history.csv`` and ``metrics.json``, each replaced atomically."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.files import atomic_write, write_text


def write_history(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write one CSV row per epoch; the columns are the union of the rows' keys, in order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with atomic_write(path, newline="") as handle:
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
    """Write ``data`` as indented JSON (NaN as null)."""
    write_text(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def to_json(data: dict[str, Any]) -> str:
    """``data`` as one line of strict JSON (NaN as null)."""
    return json.dumps(_json_safe(data), allow_nan=False)
