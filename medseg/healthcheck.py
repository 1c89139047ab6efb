"""Container health check: probe the Streamlit app when this container serves it.

Docker runs ``python -m medseg.healthcheck``. A container whose main process is a training
job has no web server and counts as healthy; one serving ``medseg app`` is healthy when
``/_stcore/health`` answers ``ok``.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def serves_app(cmdline_path: Path = Path("/proc/1/cmdline")) -> bool:
    """True when the container's main process is ``medseg app`` (or streamlit)."""
    try:
        args = cmdline_path.read_bytes().split(b"\0")
    except OSError:
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
