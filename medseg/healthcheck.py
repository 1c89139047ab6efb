"""Container health check: probe the Streamlit app when this container serves it.

Docker runs ``python -m medseg.healthcheck``. A container running a training job has no web
server and counts as healthy; one serving ``medseg app`` is healthy when ``/_stcore/health``
answers ``ok`` on ``$MEDSEG_APP_PORT`` (default 8501).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def serves_app(proc: Path = Path("/proc")) -> bool:
    """True when a process of the container is ``medseg app`` (or streamlit).

    ``proc`` lists the processes the container sees: under Docker its own PID namespace (the
    main process and any started beside it); under buildah's chroot isolation, which has none,
    the host's too.
    """
    try:
        cmdlines = [entry / "cmdline" for entry in proc.iterdir() if entry.name.isdigit()]
    except OSError:
        return False
    return any(_is_app(cmdline) for cmdline in cmdlines)


def _is_app(cmdline: Path) -> bool:
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:  # the process ended, or is not ours to read
        return False
    words = [a.decode(errors="replace") for a in args if a]
    runs_medseg_app = "app" in words and any(Path(w).name == "medseg" for w in words)
    return runs_medseg_app or any(Path(w).name == "streamlit" for w in words)


def app_is_healthy(port: int, timeout: float = 5.0) -> bool:
    """True when the Streamlit server on localhost answers its health endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def main() -> int:
    if not serves_app():
        return 0
    port = int(os.environ.get("MEDSEG_APP_PORT", "8501"))
    return 0 if app_is_healthy(port) else 1


if __name__ == "__main__":
    sys.exit(main())
