"""What every part of a comparison shares: a planned run and its record on disk.

A run lives in ``<out>/runs/<method>/seed<k>`` and carries ``compare_run.json``
(:attr:`~medseg.runs.RunFolder.compare_record`): its method, seed and full config, plus facts
of its training (``resumed``, ``wall_time_s``, ``diverged``, and ``split_sha256``: the identity
of the patient split it trains on, :func:`medseg.compare.execution.split_digest`). Planning
compares the record with the planned config, the worker process rebuilds the run from it, the
report reads the wall time back, and collecting checks that every run trained on the
comparison's split as it is now.

Example:
    >>> spec = RunSpec("adam+znorm", 0, cfg)                            # doctest: +SKIP
    >>> write_record(spec, resumed=False)                               # doctest: +SKIP
    >>> load_spec(spec.run_dir) == spec                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.config import Config, config_from_dict
from medseg.errors import ConfigError, MedsegError
from medseg.files import write_text
from medseg.paths import is_regular_file
from medseg.runs import RunFolder

#: the method every other one is paired against in the report (when it is run)
BASELINE = "adam"
#: the record's key for the identity of the split the run trained on
#: (:func:`medseg.compare.execution.split_digest`)
SPLIT_DIGEST = "split_sha256"


@dataclass(frozen=True)
class ModelMethod:
    """A comparison method that trains an optimizer of :data:`medseg.optim.OPTIMIZER_NAMES`
    on a changed model: ``model_overrides`` are ``model.*`` settings for its runs only."""

    optimizer: str
    model_overrides: tuple[str, ...]


#: the comparison methods that are not optimizer names: method -> its optimizer and model
MODEL_METHODS: dict[str, ModelMethod] = {
    # Adam on the model with backward-gradient-normalization nodes (Cabana & Lago-Fernández 2021)
    "adam+bgn": ModelMethod("adam", ("model.bgn=true",)),
}


@dataclass(frozen=True)
class RunSpec:
    """One planned run: a method, a seed and the full config it trains with."""

    method: str
    seed: int
    cfg: Config

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def folder(self) -> RunFolder:
        """The run's folder, which knows where each of its files is."""
        return RunFolder(self.cfg.run_dir)

    @property
    def label(self) -> str:
        return f"{self.method} seed {self.seed}"


def write_record(spec: RunSpec, **extra: Any) -> Path:
    """Write ``spec`` (and ``extra`` facts such as ``wall_time_s``) to its run record.

    Creates the run directory; the record is replaced atomically.
    """
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    record = {"method": spec.method, "seed": spec.seed, "config": spec.cfg.to_dict(), **extra}
    return write_text(spec.folder.compare_record, json.dumps(record, indent=2))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: the facts a record may hold beside method, seed and config, and what each must be
_FACTS = {
    "resumed": (lambda value: isinstance(value, bool), "true or false"),
    "wall_time_s": (lambda value: _is_number(value) and (math.isnan(value) or value >= 0),
                    "a number of seconds"),
    "diverged": (lambda value: isinstance(value, str), "the divergence guard's message"),
    SPLIT_DIGEST: (lambda value: value is None or (isinstance(value, str) and len(value) == 64),
                   "a SHA-256 in hex, or null"),
}


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run record of ``run_dir``: a dict with at least ``method``, ``seed`` and ``config``,
    and facts of the types :data:`_FACTS` names.

    Raises:
        MedsegError: when the record is missing, unreadable, lacks one of those keys or holds
            a fact of the wrong type.
    """
    path = RunFolder(run_dir).compare_record
    if path.exists() and not is_regular_file(path):  # a FIFO would block the read
        raise MedsegError(f"{path}: unreadable comparison run record (not a regular file); "
                          "remove that run directory")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MedsegError(
            f"{path}: unreadable comparison run record ({err.__class__.__name__}); "
            "remove that run directory"
        ) from None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("method"), str)
        and isinstance(record.get("seed"), int)
        and isinstance(record.get("config"), dict)
    )
    if not valid:
        raise MedsegError(
            f"{path}: not a comparison run record (needs method, seed and config); "
            "remove that run directory"
        )
    for key, (test, expected) in _FACTS.items():
        if key in record and not test(record[key]):
            raise MedsegError(f"{path}: {key} must be {expected}, got {str(record[key])[:60]!r}; "
                              "remove that run directory")
    return record


def load_spec(run_dir: Path) -> RunSpec:
    """The :class:`RunSpec` recorded in ``run_dir``.

    Raises:
        MedsegError: when the record is missing or unreadable, or its config is invalid.
    """
    record = read_record(run_dir)
    try:
        cfg = config_from_dict(record["config"])
    except ConfigError as err:
        raise MedsegError(f"{RunFolder(run_dir).compare_record}: {err}") from None
    return RunSpec(record["method"], record["seed"], cfg)
