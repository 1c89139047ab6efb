"""``medseg app``: serve the Streamlit app shipped inside the package.

The folder picker (the page's folder fields, ``$MEDSEG_APP_FOLDER_PICKER``) is on when the
server binds a loopback address (127.0.0.1, ::1, localhost) and off on any other address,
unless ``--folder-picker`` / ``--no-folder-picker`` or the variable says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
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
                        help="folder of training runs, exports (medseg export) and cross-validation "
                             "folders (medseg cv) (default: $MEDSEG_MODELS_DIR or models/)")
    parser.add_argument("--data", metavar="DIR",
                        help="LGG-format case folder (default: $MEDSEG_DATA_DIR, else each run's own data.root, else demo_data/lgg)")
    parser.add_argument("--pcam", metavar="DIR",
                        help="PCam-format folder (default: $MEDSEG_PCAM_DIR, else each run's own data.root, else demo_data/pcam)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to serve on (default: ${PORT_ENV} or {DEFAULT_PORT})")
    parser.add_argument("--host", default=None,
                        help=f"address to bind (default: ${HOST_ENV} or {DEFAULT_HOST}; "
                             "the Docker image sets 0.0.0.0)")
    parser.add_argument("--folder-picker", action=argparse.BooleanOptionalAction, default=None,
                        help="let the page's folder fields read any folder the server can "
                             "(default: $MEDSEG_APP_FOLDER_PICKER, else on for a loopback "
                             "--host only)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def folder_picker_value(flag: bool | None, environment: str | None, host: str) -> str:
    """``$MEDSEG_APP_FOLDER_PICKER`` for the server: the flag, else the variable, else on
    (``1``) for a loopback host and off (``0``) for any other."""
    if flag is not None:
        return "1" if flag else "0"
    if environment:
        return environment
    return "1" if is_loopback(host) else "0"


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line serving the page on ``host:port``."""
    from medseg.app.settings import MAX_UPLOAD_MB

    return [
        sys.executable, "-m", "streamlit", "run", str(app_script()),
        "--server.port", str(port),
        "--server.address", host,
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats", "false",
        "--server.showEmailPrompt", "false",  # no first-run prompt writing ~/.streamlit/
        "--client.toolbarMode", "minimal",
    ]


def run(args: argparse.Namespace) -> int:
    from medseg.app.settings import (
        FOLDER_PICKER_ENV,
        LGG_DIR_ENV,
        MODELS_DIR_ENV,
        PCAM_DIR_ENV,
        is_on,
    )

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
    env[FOLDER_PICKER_ENV] = folder_picker_value(args.folder_picker, env.get(FOLDER_PICKER_ENV),
                                                 host)
    print(f"medseg: serving the app on http://{host}:{port} (Ctrl+C stops it)")
    if is_on(env[FOLDER_PICKER_ENV]):
        print("medseg: folder picker on: the page can read any folder this server can"
              + ("" if is_loopback(host) else f", for anyone who can reach port {port}"))
    else:
        print("medseg: folder picker off: the page reads only the configured folders")
    return serve(streamlit_command(host, port), env)


def serve(command: list[str], env: dict[str, str]) -> int:
    """Become the streamlit server (``os.execve``, same process): Ctrl+C, a container's stop
    or a process manager's SIGTERM reach the server itself, and no server outlives the
    ``medseg app`` that started it."""
    sys.stdout.flush()
    os.execve(command[0], command, env)
