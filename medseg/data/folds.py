"""A cross-validation's patients: the held-out test patients and K patient-disjoint folds.

The test patients are drawn once, as any LGG run draws them
(:func:`medseg.data.splits.split_patients` with the config's seed and ``test_fraction``); the
others are shuffled with the same seed and dealt round-robin into K folds, so fold sizes
differ by at most one. ``folds.json`` keeps them (written once, atomically, by
:func:`medseg.cv.execution.prepare_cv` under the CV folder's lock)::

    {"seed": 0, "test_fraction": 0.1, "test": [...], "folds": [[...], [...], ...]}

(``folds``: each fold's patients, so K is its length.) :func:`read_folds` is its one reader:
the cross-validation (:mod:`medseg.cv`) and the ensemble of a CV folder
(:mod:`medseg.engine.ensemble`, one member per fold) both read it.

Fold k's split trains on every other fold, validates on fold k and tests on the test
patients (:meth:`Folds.split`).

Example:
    >>> folds = make_folds([f"P{i}" for i in range(12)], test_fraction=0.2, k=3, seed=0)
    >>> [len(patients) for patients in folds.fold_patients], len(folds.test)
    ([4, 3, 3], 2)
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.data.splits import split_patients
from medseg.errors import MedsegError
from medseg.files import write_text
from medseg.paths import read_json

#: the fewest folds a cross-validation has (one fold would train on nothing)
MIN_FOLDS = 2


@dataclass(frozen=True)
class Folds:
    """The patients of a cross-validation: ``test`` held out, ``fold_patients[k]`` fold k's."""

    seed: int
    test_fraction: float
    test: tuple[str, ...]
    fold_patients: tuple[tuple[str, ...], ...]

    @property
    def k(self) -> int:
        return len(self.fold_patients)

    def split(self, index: int) -> dict[str, list[str]]:
        """Fold ``index``'s split: train on the other folds, validate on it, test on ``test``."""
        train = [p for k, fold in enumerate(self.fold_patients) if k != index for p in fold]
        return {"train": sorted(train), "val": list(self.fold_patients[index]), "test": list(self.test)}

    def fold_of(self) -> dict[str, int]:
        """Each non-test patient's fold."""
        return {patient: k for k, fold in enumerate(self.fold_patients) for patient in fold}

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "test_fraction": self.test_fraction, "test": list(self.test),
                "folds": [list(fold) for fold in self.fold_patients]}


def make_folds(patients: Sequence[str], test_fraction: float, k: int, seed: int) -> Folds:
    """Hold out the test patients and deal the others into ``k`` folds (module docstring).

    Raises:
        MedsegError: for fewer than :data:`MIN_FOLDS` folds, or more folds than non-test
            patients (naming both counts).
        DataError: when too few patients remain for training (as a run's split).
    """
    if k < MIN_FOLDS:
        raise MedsegError(f"--folds {k}: a cross-validation needs at least {MIN_FOLDS} folds")
    held = split_patients(patients, 0.0, test_fraction, seed)
    rest = list(held["train"])
    if k > len(rest):
        raise MedsegError(f"--folds {k}: only {len(rest)} patients outside the test split; "
                          f"give at most {len(rest)} folds")
    random.Random(seed).shuffle(rest)
    folds = tuple(tuple(sorted(rest[index::k])) for index in range(k))
    return Folds(seed, test_fraction, tuple(held["test"]), folds)


def save_folds(folds: Folds, path: str | Path) -> Path:
    """Write ``folds`` as ``folds.json`` (atomically)."""
    return write_text(path, json.dumps(folds.to_dict(), indent=2) + "\n")


def read_folds(path: str | Path) -> Folds:
    """The folds recorded in ``path``.

    Raises:
        MedsegError: naming ``path`` when it is missing, not a regular file, not JSON, or not
            a folds record (a patient twice, a fold empty, counts that disagree).
    """
    path = Path(path)
    raw = read_json(path, "the folds")
    try:
        folds = Folds(raw["seed"], raw["test_fraction"], tuple(raw["test"]),
                      tuple(tuple(fold) for fold in raw["folds"]))
        names = [*folds.test, *(p for fold in folds.fold_patients for p in fold)]
        valid = (isinstance(folds.seed, int) and isinstance(folds.test_fraction, (int, float))
                 and folds.k >= MIN_FOLDS and all(folds.fold_patients)
                 and all(isinstance(name, str) for name in names) and len(set(names)) == len(names))
    except (KeyError, TypeError):
        valid = False
    if not valid:
        raise MedsegError(f"{path}: not a folds record (seed, test_fraction, test and at least "
                          f"{MIN_FOLDS} non-empty folds, each patient once)")
    return folds
