"""The rules of a run folder: one writer at a time, whose folder it is, no overwriting, what a
resume may change.

**The lock.** ``train`` (fresh or ``--resume``) and ``medseg compare`` hold the run folder's
lock (:func:`run_lock`: :func:`medseg.locks.folder_lock`) from before their first look at
what the folder holds until they end.

**Whose folder it is.** A run folder is recognised as medseg's by its entries
(:func:`check_fresh_start`): every one is a name a run writes
(:meth:`medseg.runs.RunFolder.is_run_entry`), and it holds proof that medseg started a run
there: a checkpoint, or a ``config.yaml`` holding a whole config exactly as ``medseg train``
writes it (:func:`is_written_config`), or a comparison's run record. A user's own
``config.yaml`` (a hand-written subset of the settings) in a folder is never taken for a
run's, so it is never overwritten, and the temporary files in such a folder are never
removed.

**A fresh start** takes only a missing or empty folder, or one recognised as medseg's that
holds no :attr:`~medseg.runs.RunFolder.result_files` (a start interrupted before its first
epoch ended); only then does it remove the temporary files of interrupted writes
(:func:`medseg.locks.remove_orphaned_temps`). **A resume** continues with the run's own
config, stored in its ``last.pt``; only the settings of :data:`RESUME_MAY_CHANGE` may differ
(:func:`resumed_config`).

Example:
    >>> with run_lock("models/run"):
    ...     check_fresh_start(Path("models/run"))
    ...     removed = remove_orphaned_temps("models/run")
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from medseg.config import Config, config_from_dict
from medseg.errors import ConfigError, MedsegError
from medseg.locks import LOCK_NAME, folder_lock
from medseg.paths import is_regular_file
from medseg.runs import RunFolder

#: the settings a resume may change: the length of the run, where it runs and reads its data
#: from, logging, the divergence guard, and where the run folder now is
RESUME_MAY_CHANGE = (
    "train.epochs", "train.device", "train.log_every", "train.log_grad_stats",
    "train.divergence_factor", "train.max_nonfinite_steps", "data.root", "data.num_workers",
    "output.dir", "output.run_name",
)
_CONFIG_BYTES = 2**20  # a larger config.yaml was not written by medseg train


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the duration of the block (:func:`medseg.locks.folder_lock`,
    creating the folder); yield the lock file.

    Raises:
        MedsegError: when another live process holds the folder (naming its pid, host and
            start time), or the folder or its lock file cannot be created or read.
    """
    with folder_lock(run_dir, what="run folder") as lock:
        yield lock


def is_written_config(path: Path) -> bool:
    """True when ``path`` is a ``config.yaml`` as ``medseg train`` writes it: a regular file
    holding a whole valid config, every section and setting, with the values validation
    gives (a hand-written config lists some settings only). Nothing but a regular file
    under 1 MiB is opened."""
    try:
        if not is_regular_file(path) or path.stat().st_size > _CONFIG_BYTES:
            return False
        written = yaml.safe_load(path.read_text(encoding="utf-8"))
        return isinstance(written, dict) and config_from_dict(copy.deepcopy(written)).to_dict() == written
    except (OSError, UnicodeDecodeError, yaml.YAMLError, MedsegError, RecursionError, TypeError, ValueError):
        return False


def _entries(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` (empty when it does not exist), but its lock file.

    Raises:
        MedsegError: when ``run_dir`` is not a folder or cannot be listed.
    """
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        raise MedsegError(f"{run_dir}: exists and is not a folder; choose another output.run_name / output.dir")
    try:
        return sorted(name for name in os.listdir(run_dir) if name != LOCK_NAME)
    except OSError as err:
        raise MedsegError(f"{run_dir}: cannot read the run folder ({err.strerror or err})") from None


def check_fresh_start(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that holds results of another run, or that is
    not a run folder of medseg's (module docstring). Only reads.

    Raises:
        MedsegError: naming the files found: :attr:`~medseg.runs.RunFolder.result_files`
            (resume advice), or entries of a folder that is not medseg's.
    """
    run = RunFolder(run_dir)
    found = [path.name for path in run.result_files if path.exists()]
    if found:
        if run.last_checkpoint.exists():
            advice = "pass --resume to continue it, or choose another output.run_name / output.dir"
        else:
            advice = (f"it has no {run.LAST_NAME} to resume from; choose another output.run_name / "
                      "output.dir")
        raise MedsegError(f"{run_dir} already holds a run ({', '.join(found)}): {advice}")
    entries = _entries(run_dir)
    if not entries:
        return
    foreign = [name for name in entries if not RunFolder.is_run_entry(name)]
    if run.CONFIG_NAME in entries and not is_written_config(run.config_file):
        foreign.append(run.CONFIG_NAME)  # a user's own config
    started = run.CONFIG_NAME in entries or run.compare_record.is_file()
    if foreign or not started:
        named = foreign or entries
        shown = ", ".join(named[:5]) + (" ..." if len(named) > 5 else "")
        raise MedsegError(
            f"{run_dir}: not empty and not a run folder of medseg's (holds {shown}); a new run "
            "needs a new or empty folder: choose another output.run_name / output.dir"
        )


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.epochs": 10, ...}`` from a nested config mapping, in its order."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_leaves(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def resumed_config(given: Config, stored: Config, checkpoint: Path, epochs_done: int) -> Config:
    """The config a resume continues with: the run's own (``stored``, from its last.pt) with
    the settings of :data:`RESUME_MAY_CHANGE` taken from ``given`` (file and ``--set``).

    Raises:
        ConfigError: naming the first other setting where ``given`` differs (with both
            values), or a ``train.epochs`` below the epochs already done.
    """
    ours, theirs = _leaves(given.to_dict()), _leaves(stored.to_dict())
    for key, value in ours.items():
        if key not in RESUME_MAY_CHANGE and value != theirs.get(key):
            raise ConfigError(
                f"--resume: {key} is {value!r} but the run in {checkpoint.parent} was trained "
                f"with {theirs.get(key)!r} ({checkpoint.name}); only "
                f"{', '.join(RESUME_MAY_CHANGE)} may change when continuing a run"
            )
    merged = stored.to_dict()
    for key in RESUME_MAY_CHANGE:
        section, name = key.split(".")
        merged[section][name] = ours[key]
    if given.train.epochs < epochs_done:
        raise ConfigError(
            f"--resume: train.epochs={given.train.epochs} is below the {epochs_done} epochs "
            f"the run in {checkpoint.parent} has done"
        )
    return config_from_dict(merged)
