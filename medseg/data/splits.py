"""Patient-level train/val/test splits, seeded and persisted as JSON.

A split never puts one patient's slices in two subsets (slices of one patient are strongly
correlated, so a slice-level split would leak). The file is
``{"seed": 0, "train": [...], "val": [...], "test": [...]}``.

Example:
    >>> split = split_patients([f"P{i}" for i in range(10)], 0.2, 0.1, seed=0)
    >>> [len(split[k]) for k in ("train", "val", "test")]
    [7, 2, 1]
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.errors import DataError
from medseg.files import write_text
from medseg.paths import regular_file

SPLIT_NAMES = ("train", "val", "test")


def _subset_size(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def split_patients(
    patients: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Split patient names into train/val/test, reproducibly for a seed.

    Each of val and test gets ``round(n * fraction)`` patients, and at least one when its
    fraction is above zero; train keeps the rest. Lists are sorted by name.

    Args:
        patients: unique patient names (their order does not matter).
        val_fraction: share of patients for validation, in [0, 1).
        test_fraction: share of patients for testing, in [0, 1).
        seed: seed of the shuffle.

    Raises:
        DataError: when there are too few patients to leave at least one for training.
    """
    names = sorted(set(patients))
    n_val = _subset_size(len(names), val_fraction)
    n_test = _subset_size(len(names), test_fraction)
    if n_val + n_test >= len(names):
        raise DataError(
            f"cannot split {len(names)} patients into train/val/test with val_fraction="
            f"{val_fraction} and test_fraction={test_fraction}: need at least "
            f"{n_val + n_test + 1} patients"
        )
    random.Random(seed).shuffle(names)
    return {
        "train": sorted(names[n_val + n_test :]),
        "val": sorted(names[:n_val]),
        "test": sorted(names[n_val : n_val + n_test]),
    }


def save_split(split: dict[str, list[str]], path: str | Path, *, seed: int | None = None) -> None:
    """Write ``split`` (and the seed that made it) as JSON, atomically."""
    path = Path(path)
    payload: dict[str, Any] = {"seed": seed, **{name: list(split[name]) for name in SPLIT_NAMES}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(payload, indent=2) + "\n")


def read_split_file(path: str | Path) -> tuple[dict[str, list[str]], int | None]:
    """Return the split stored in ``path`` and its seed (None when not recorded).

    Raises:
        DataError: when the file is missing, not a regular file (a FIFO is never opened),
            not JSON, lacks a subset, or lists a patient twice.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: split file not found")
    try:
        raw = json.loads(regular_file(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON split file ({err})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object with keys {', '.join(SPLIT_NAMES)}")
    split: dict[str, list[str]] = {}
    for name in SPLIT_NAMES:
        names = raw.get(name)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: '{name}' must be a list of patient names")
        split[name] = names
    seen: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for patient in split[name]:
            if patient in seen:
                raise DataError(f"{path}: patient {patient} is in both '{seen[patient]}' and '{name}'")
            seen[patient] = name
    seed = raw.get("seed")
    return split, seed if isinstance(seed, int) else None
