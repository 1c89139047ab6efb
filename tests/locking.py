"""A live medseg process of this host holding a folder's lock: the first of two commands
writing one folder, for the tests that the second is refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLD = """
import sys, time
from medseg.locks import folder_lock
with folder_lock(sys.argv[1], what="test folder"):
    print("held", flush=True)
    time.sleep(120)
"""


@contextmanager
def held_by_another_process(folder: Path) -> Iterator[subprocess.Popen]:
    """Hold ``folder``'s lock (:func:`medseg.locks.folder_lock`) in a child process for the
    block; the child is killed at the end (its lock is then stale: a dead pid of this host)."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
