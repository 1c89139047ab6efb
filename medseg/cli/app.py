"""``medseg app``: serve the Streamlit app shipped inside the package."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from medseg.errors import MedsegError

EXAMPLE = "medseg app --models models --data demo_data/lgg --port 8501"
HOST_ENV, DEFAULT_HOST = "MEDSEG_APP_HOST", "127.0.0.1"
PORT_ENV, DEFAULT_PORT = "MEDSEG_APP_PORT", 8501


def app_script() -> Path:
    """Path of the Streamlit page inside the installed package (works non-editable too),
    found without importing it (importing streamlit here would be slow and noisy)."""
    spec = importlib.util.find_spec("medseg.app.streamlit_app")
    if spec is None or spec.origin is None:
        raise MedsegError("the medseg app page (medseg/app/streamlit_app.py) is not installed")
    return Path(spec.origin).resolve()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="DIR",
                        help="folder of training runs (default: $MEDSEG_MODELS_DIR or models/)")
    parser.add_argument("--data", metavar="DIR",
                        help="LGG-format case folder (default: $MEDSEG_DATA_DIR or demo_data/lgg)")
    parser.add_argument("--pcam", metavar="DIR",
                        help="PCam-format folder (default: $MEDSEG_PCAM_DIR or demo_data/pcam)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to serve on (default: ${PORT_ENV} or {DEFAULT_PORT})")
    parser.add_argument("--host", default=None,
                        help=f"address to bind (default: ${HOST_ENV} or {DEFAULT_HOST}; "
                             "the Docker image sets 0.0.0.0)")


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line serving the page on ``host:port``."""
    from medseg.app.settings import MAX_UPLOAD_MB

    return [
        sys.executable, "-m", "streamlit", "run", str(app_script()),
        "--server.port", str(port),
        "--server.address", host,
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]


def run(args: argparse.Namespace) -> int:
    from medseg.app.settings import LGG_DIR_ENV, MODELS_DIR_ENV, PCAM_DIR_ENV

    host = args.host or os.environ.get(HOST_ENV) or DEFAULT_HOST
    port_text = str(args.port) if args.port is not None else os.environ.get(PORT_ENV)
    where = "--port" if args.port is not None else f"${PORT_ENV}"
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise MedsegError(f"{where} {port_text}: expected a port number between 1 and 65535") from None
    if not 0 < port < 65536:
        raise MedsegError(f"{where} {port}: expected a port number between 1 and 65535")
    env = dict(os.environ)
    for option, value, variable in (
        ("--models", args.models, MODELS_DIR_ENV),
        ("--data", args.data, LGG_DIR_ENV),
        ("--pcam", args.pcam, PCAM_DIR_ENV),
    ):
        if value is None:
            continue
        if not Path(value).is_dir():
            raise MedsegError(f"{option} {value}: not a folder")
        env[variable] = str(Path(value).resolve())
    print(f"medseg: serving the app on http://{host}:{port} (Ctrl+C stops it)")
    return subprocess.call(streamlit_command(host, port), env=env)
