"""The rules of a run folder: one writer at a time, no overwriting, what a resume may change.

**The lock.** ``train`` (fresh or ``--resume``) and ``medseg compare`` hold the lock file
(:attr:`~medseg.runs.RunFolder.lock_file`) in every run folder they write, from before their first write until they end. The file is
created with ``O_CREAT | O_EXCL`` (exactly one process succeeds) and holds its owner as JSON::

    {"pid": 4242, "host": "gpu-node-3", "since": "2025-01-31T09:12:45+00:00"}

It is removed when the holder ends, normally or by an exception. A lock left behind by a
killed process is reclaimed when it names this host and a pid that no longer runs; a lock
of another host is never taken over (its pid cannot be checked from here). Locks are
re-entrant within a process: ``medseg compare`` holds a run folder's lock while
:func:`medseg.engine.train` takes it again inside. The holder removes the temporary files of
interrupted writes (:func:`remove_orphaned_temps`).

**A fresh start** refuses a folder holding any of its
:attr:`~medseg.runs.RunFolder.result_files` (:func:`check_fresh_start`). **A resume** continues with the run's own config, stored in its
``last.pt``; only the settings of :data:`RESUME_MAY_CHANGE` may differ
(:func:`resumed_config`).

Example:
    >>> with run_lock("models/run"):
    ...     check_fresh_start(Path("models/run"))
    ...     removed = remove_orphaned_temps("models/run")
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medseg.config import Config, config_from_dict
from medseg.errors import ConfigError, MedsegError
from medseg.files import TEMP_PREFIX
from medseg.runs import RunFolder

#: the settings a resume may change: the length of the run, where it runs and reads its data
#: from, logging, the divergence guard, and where the run folder now is
RESUME_MAY_CHANGE = (
    "train.epochs", "train.device", "train.log_every", "train.log_grad_stats",
    "train.divergence_factor", "train.max_nonfinite_steps", "data.root", "data.num_workers",
    "output.dir", "output.run_name",
)

#: run folders this process holds, with the nesting depth of each
_HELD: dict[Path, int] = {}


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder: the process id, its host name and the time it took the lock."""

    pid: int
    host: str
    since: str

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "since": self.since})

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"


def _this_process() -> LockHolder:
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return LockHolder(pid=os.getpid(), host=socket.gethostname(), since=since)


def read_holder(lock_path: Path) -> LockHolder | None:
    """The holder recorded in ``lock_path``; None when the file is gone.

    Raises:
        MedsegError: when the file is not a medseg lock (empty, truncated or foreign).
    """
    try:
        raw = json.loads(lock_path.read_text())
        holder = LockHolder(pid=int(raw["pid"]), host=str(raw["host"]), since=str(raw["since"]))
        if holder.pid <= 0:
            raise ValueError(holder.pid)
        return holder
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        raise MedsegError(
            f"{lock_path.parent}: unreadable lock file {lock_path.name}; if no medseg process "
            f"writes this folder any more, remove {lock_path}"
        ) from None


def _is_stale(holder: LockHolder) -> bool:
    """True when ``holder`` ran on this host and its process is gone (or is this process,
    which does not hold the folder: a pid reused after a restart)."""
    if holder.host != socket.gethostname():
        return False
    if holder.pid == os.getpid():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def _create(lock_path: Path, holder: LockHolder) -> bool:
    """Create ``lock_path`` holding ``holder``; False when it exists already."""
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        os.write(fd, holder.to_json().encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        lock_path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return True


def _reclaim(lock_path: Path, stale: LockHolder) -> None:
    """Remove the stale lock of ``stale``, unless another process replaced it meanwhile.

    The lock is first renamed to a private name (atomic), so of two processes reclaiming
    at once only one moves it; a lock that turns out not to be ``stale``'s is put back.
    """
    private = lock_path.with_name(f"{lock_path.name}-reclaim-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(lock_path, private)
    except FileNotFoundError:
        return
    try:
        moved = read_holder(private)
    except MedsegError:  # a lock being created this instant
        moved = None
    if moved != stale:
        with suppress(FileExistsError):
            os.link(private, lock_path)
    private.unlink(missing_ok=True)


def _read_settled(lock_path: Path) -> LockHolder | None:
    """:func:`read_holder`, giving a lock that another process creates this instant (still
    empty) a moment to be written."""
    for _ in range(10):
        with suppress(MedsegError):
            return read_holder(lock_path)
        time.sleep(0.05)
    return read_holder(lock_path)


def _acquire(run_dir: Path) -> None:
    lock_path = RunFolder(run_dir).lock_file
    try:
        for _ in range(3):  # create, or reclaim a stale lock and try again
            if _create(lock_path, _this_process()):
                return
            holder = _read_settled(lock_path)
            if holder is not None and not _is_stale(holder):
                raise MedsegError(
                    f"{run_dir}: in use by another medseg process ({holder}); wait for it to "
                    f"end, or remove {lock_path} if it no longer runs"
                )
            if holder is not None:
                _reclaim(lock_path, holder)
    except OSError as err:
        raise MedsegError(f"{lock_path}: cannot create the run lock: {_reason(err)}") from None
    raise MedsegError(f"{run_dir}: could not take the run lock {lock_path} (other processes keep taking it)")


def _reason(err: OSError) -> str:
    return os.strerror(err.errno).lower() if err.errno else str(err)


def _release(run_dir: Path) -> None:
    """Remove ``run_dir``'s lock file if it still names this process (one that another
    process took over, after someone removed this one's, stays)."""
    lock_path = RunFolder(run_dir).lock_file
    try:
        holder = read_holder(lock_path)
    except MedsegError:
        return
    if holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname():
        lock_path.unlink(missing_ok=True)


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the duration of the block (creating the folder).

    Args:
        run_dir: the run folder; nested calls for the same folder in one process only
            count, the outermost one creates and removes the lock file.

    Raises:
        MedsegError: when another live process holds the folder (naming its pid, host and
            start time), or the lock file cannot be created or read.
    """
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MedsegError(f"{run_dir}: cannot create the run folder: {_reason(err)}") from None
    key = Path(run_dir).resolve()  # one key per folder, whatever the spelling
    if key not in _HELD:
        _acquire(key)
        _HELD[key] = 0
    _HELD[key] += 1
    try:
        yield RunFolder(key).lock_file
    finally:
        _HELD[key] -= 1
        if _HELD[key] == 0:
            del _HELD[key]
            _release(key)


def remove_orphaned_temps(run_dir: str | Path) -> list[tuple[str, int]]:
    """Delete the temporary files of writes that never finished (``.tmp-*``, see
    :mod:`medseg.files`) directly in ``run_dir``; only call it while holding its lock.

    Returns:
        (name, size in bytes) of each file removed.
    """
    removed = []
    for path in sorted(Path(run_dir).glob(f"{TEMP_PREFIX}*")):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append((path.name, size))
    return removed


def check_fresh_start(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that holds results of another one.

    Raises:
        MedsegError: naming the files found, when any of its
            :attr:`~medseg.runs.RunFolder.result_files` is there.
    """
    run = RunFolder(run_dir)
    found = [path.name for path in run.result_files if path.exists()]
    if not found:
        return
    if run.last_checkpoint.exists():
        advice = "pass --resume to continue it, or choose another output.run_name / output.dir"
    else:
        advice = (f"it has no {run.LAST_NAME} to resume from; choose another output.run_name / "
                  "output.dir")
    raise MedsegError(f"{run_dir} already holds a run ({', '.join(found)}): {advice}")


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
