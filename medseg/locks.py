"""One writer per folder: the lock every folder medseg writes is held by.

``medseg train`` and ``compare`` (run folders, the comparison folder), ``medseg predict``
(its ``--out``) and ``medseg demo-data`` (its ``OUT``) hold :func:`folder_lock` from before
their first check of what the folder holds until their last write, so a second command
writing the same folder is refused with one line naming the first, instead of both
replacing each other's files.

**The lock file** :data:`LOCK_NAME` is created with ``O_CREAT | O_EXCL`` (exactly one process
succeeds) and holds its owner as JSON::

    {"pid": 4242, "host": "gpu-node-3", "since": "2025-01-31T09:12:45+00:00"}

It is removed when the holder ends, normally or by an exception. A lock left behind by a
killed process is reclaimed when it names this host and a pid that no longer runs; a lock
of another host is never taken over (its pid cannot be checked from here). Within a process
the lock is re-entrant for the thread holding it (``medseg compare`` holds a run folder's
lock while :func:`medseg.engine.train` takes it again inside); another thread is refused
like another process. Folders the lock had to create are removed again when it ends and
they are still empty, so a command refused before its first write leaves nothing behind.

**Temporary files** of interrupted writes (:data:`medseg.files.TEMP_NAME`) are removed by
:func:`remove_orphaned_temps`, which a holder calls only once it has recognised the folder as
one medseg owns (a run folder: :func:`medseg.engine.run_folder.check_fresh_start`); a user's
folder (``predict --out``) is never cleaned.

Example:
    >>> with folder_lock("predictions", what="--out folder"):
    ...     write_text("predictions/x_pred.json", report)
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from medseg.errors import MedsegError
from medseg.files import TEMP_NAME

#: the lock file, in the folder it locks
LOCK_NAME = ".medseg.lock"
_LOCK_BYTES = 4096  # a larger lock file is not one of ours

#: folders this process holds: the thread holding each and its nesting depth
_HELD: dict[Path, tuple[int, int]] = {}
_HELD_GUARD = threading.Lock()


@dataclass(frozen=True)
class LockHolder:
    """Who holds a folder: the process id, its host name and the time it took the lock."""

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
        MedsegError: when the file is not a medseg lock (empty, truncated, foreign, or not a
            regular file: a FIFO there is never opened).
    """
    try:
        mode = os.stat(lock_path).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError("not a regular file")
        with open(lock_path, "rb") as handle:
            raw = json.loads(handle.read(_LOCK_BYTES + 1)[:_LOCK_BYTES])
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


def _in_use(folder: Path, holder: LockHolder, lock_path: Path) -> MedsegError:
    return MedsegError(f"{folder}: in use by another medseg process ({holder}); wait for it to "
                       f"end, or remove {lock_path} if it no longer runs")


def _reason(err: OSError) -> str:
    return os.strerror(err.errno).lower() if err.errno else str(err)


def _acquire(folder: Path, what: str) -> None:
    lock_path = folder / LOCK_NAME
    try:
        for _ in range(3):  # create, or reclaim a stale lock and try again
            if _create(lock_path, _this_process()):
                return
            holder = _read_settled(lock_path)
            if holder is not None and not _is_stale(holder):
                raise _in_use(folder, holder, lock_path)
            if holder is not None:
                _reclaim(lock_path, holder)
    except OSError as err:
        raise MedsegError(f"{lock_path}: cannot create the lock of the {what}: {_reason(err)}") from None
    raise MedsegError(f"{folder}: could not take the lock {lock_path} (other processes keep taking it)")


def _release(folder: Path) -> None:
    """Remove ``folder``'s lock file if it still names this process (one that another
    process took over, after someone removed this one's, stays)."""
    lock_path = folder / LOCK_NAME
    try:
        holder = read_holder(lock_path)
    except MedsegError:
        return
    if holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname():
        lock_path.unlink(missing_ok=True)


def _make_folder(folder: Path, what: str) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MedsegError(f"{folder}: cannot create the {what}: {_reason(err)}") from None
    return missing


def _remove_if_empty(created: list[Path]) -> None:
    """Remove the folders :func:`_make_folder` created, deepest first, while they are empty."""
    for path in created:
        try:
            path.rmdir()
        except OSError:  # not empty (written, or another holder's lock), or gone
            return


def _enter(key: Path, what: str) -> None:
    """Count one more hold of ``key`` by this thread, taking the lock file on the first."""
    thread = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == thread:
            _HELD[key] = (thread, held[1] + 1)
            return
        if held is not None:
            holder = read_holder(key / LOCK_NAME) or _this_process()
            raise MedsegError(f"{key}: in use by another thread of this medseg process ({holder})")
        _acquire(key, what)
        _HELD[key] = (thread, 1)


def _leave(key: Path) -> bool:
    """Count one hold of ``key`` less; True when it was the last (the lock file is removed)."""
    with _HELD_GUARD:
        thread, depth = _HELD[key]
        if depth > 1:
            _HELD[key] = (thread, depth - 1)
            return False
        del _HELD[key]
        _release(key)
        return True


@contextmanager
def folder_lock(folder: str | Path, *, what: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the duration of the block, creating the folder (and its
    missing parents) first; yield the lock file.

    Args:
        folder: the folder written in the block.
        what: what the folder is, for messages ("run folder", "--out folder", ...).

    Raises:
        MedsegError: when another live process (or another thread of this one) holds the
            folder, naming its pid, host and start time; or the folder or its lock file
            cannot be created or read.
    """
    created = _make_folder(Path(folder), what)
    key = Path(folder).resolve()  # one key per folder, whatever the spelling
    try:
        _enter(key, what)
    except BaseException:
        _remove_if_empty(created)
        raise
    try:
        yield key / LOCK_NAME
    finally:
        if _leave(key):
            _remove_if_empty(created)


def remove_orphaned_temps(folder: str | Path) -> list[tuple[str, int]]:
    """Delete the temporary files of writes that never finished directly in ``folder``: only
    regular files named as :func:`medseg.files.atomic_path` names them
    (:data:`~medseg.files.TEMP_NAME`). Call it only while holding the folder's lock, and only
    for a folder recognised as medseg's own.

    Returns:
        (name, size in bytes) of each file removed.
    """
    removed = []
    for path in sorted(Path(folder).iterdir()):
        if TEMP_NAME.fullmatch(path.name) and not path.is_symlink() and path.is_file():
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append((path.name, size))
    return removed
