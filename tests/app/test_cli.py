"""``medseg app``: the streamlit command it runs, its environment and its errors."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import medseg
from medseg.app import settings
from medseg.cli import app as app_cli
from medseg.cli.main import main
from medseg.healthcheck import app_is_healthy


def test_runs_the_packaged_page_with_the_folders(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_call(command, env):
        calls.append((command, env))
        return 0

    monkeypatch.setattr(app_cli, "serve", fake_call)
    monkeypatch.delenv("MEDSEG_PCAM_DIR", raising=False)
    (tmp_path / "runs").mkdir()
    (tmp_path / "cases").mkdir()
    code = main(["app", "--models", str(tmp_path / "runs"), "--data", str(tmp_path / "cases"),
                 "--port", "8600", "--host", "0.0.0.0"])
    assert code == 0
    [(command, env)] = calls
    script = Path(command[4])
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert script == Path(medseg.__file__).parent / "app" / "streamlit_app.py"
    assert script.is_file()
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.port"] == "8600"
    assert options["--server.address"] == "0.0.0.0"
    assert options["--server.maxUploadSize"] == "200"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.showEmailPrompt"] == "false"  # nothing written to ~/.streamlit
    assert env["MEDSEG_MODELS_DIR"] == str((tmp_path / "runs").resolve())
    assert env["MEDSEG_DATA_DIR"] == str((tmp_path / "cases").resolve())
    assert "MEDSEG_PCAM_DIR" not in env  # not given: the page's default applies
    assert "http://0.0.0.0:8600" in capsys.readouterr().out


def test_host_and_port_from_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(app_cli, "serve", lambda command, env: calls.append(command) or 0)
    monkeypatch.setenv("MEDSEG_APP_HOST", "0.0.0.0")  # as the Docker image sets it
    monkeypatch.setenv("MEDSEG_APP_PORT", "8777")
    assert main(["app"]) == 0
    assert main(["app", "--port", "8000", "--host", "127.0.0.1"]) == 0
    first, second = (dict(zip(c[5::2], c[6::2], strict=True)) for c in calls)
    assert (first["--server.address"], first["--server.port"]) == ("0.0.0.0", "8777")
    assert (second["--server.address"], second["--server.port"]) == ("127.0.0.1", "8000")


def test_missing_folder_and_bad_port_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(app_cli, "serve", lambda *a, **k: 0 / 0)  # must not be reached
    assert main(["app", "--models", str(tmp_path / "nope")]) == 2
    assert f"medseg: error: --models {tmp_path / 'nope'}: not a folder" in capsys.readouterr().err
    assert main(["app", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    monkeypatch.setenv("MEDSEG_APP_PORT", "http")
    assert main(["app"]) == 2
    assert "$MEDSEG_APP_PORT http: expected a port number" in capsys.readouterr().err


def test_checkout_shim_runs_the_same_page():
    shim = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
    assert "from medseg.app.streamlit_app import main" in shim.read_text()
    assert app_cli.app_script().name == "streamlit_app.py"
    assert app_cli.EXAMPLE.startswith("medseg app")


def picker_for(monkeypatch, *argv: str, environment: str | None = None) -> str:
    """``$MEDSEG_APP_FOLDER_PICKER`` as ``medseg app ARGV`` hands it to the server."""
    envs = []
    monkeypatch.setattr(app_cli, "serve", lambda command, env: envs.append(env) or 0)
    monkeypatch.delenv("MEDSEG_APP_HOST", raising=False)
    if environment is None:
        monkeypatch.delenv("MEDSEG_APP_FOLDER_PICKER", raising=False)
    else:
        monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", environment)
    assert main(["app", *argv]) == 0
    return envs[0]["MEDSEG_APP_FOLDER_PICKER"]


def test_folder_picker_on_for_loopback_only_unless_told(monkeypatch, capsys):
    assert picker_for(monkeypatch) == "1"  # the default host, 127.0.0.1
    assert "folder picker on" in capsys.readouterr().out
    for host in ("127.0.0.1", "127.0.1.1", "::1", "localhost"):
        assert picker_for(monkeypatch, "--host", host) == "1", host
    for host in ("0.0.0.0", "::", "192.168.1.20", "medseg.example.org"):
        assert picker_for(monkeypatch, "--host", host) == "0", host
    assert "folder picker off" in capsys.readouterr().out
    # explicit settings win: the flag over the variable, the variable over the host rule
    assert picker_for(monkeypatch, "--host", "0.0.0.0", "--folder-picker") == "1"
    assert "for anyone who can reach port 8501" in capsys.readouterr().out
    assert picker_for(monkeypatch, "--no-folder-picker") == "0"
    assert picker_for(monkeypatch, "--host", "0.0.0.0", environment="1") == "1"
    assert picker_for(monkeypatch, environment="0") == "0"
    assert picker_for(monkeypatch, "--no-folder-picker", environment="1") == "0"


def test_folder_picker_setting(monkeypatch):
    monkeypatch.delenv("MEDSEG_APP_FOLDER_PICKER", raising=False)
    assert not settings.folder_picker()
    for value in ("1", "true", "Yes", " ON "):
        monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", value)
        assert settings.folder_picker(), value
    for value in ("", "0", "false", "no", "off", "2"):
        monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", value)
        assert not settings.folder_picker(), value


def test_docker_image_keeps_the_folder_picker_off():
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    env = re.search(r"^ENV (.*?)(?<!\\)$", dockerfile, re.MULTILINE | re.DOTALL)
    assert env is not None
    variables = dict(item.split("=", 1) for item in env.group(1).replace("\\\n", " ").split())
    assert variables["MEDSEG_APP_HOST"] == "0.0.0.0"
    assert variables["MEDSEG_APP_FOLDER_PICKER"] == "0"
    assert dockerfile.count("MEDSEG_APP_FOLDER_PICKER") == 1


@pytest.mark.slow
def test_medseg_app_is_the_server_so_a_sigterm_leaves_no_server_behind(tmp_path):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "medseg", "app", "--port", str(port),
                                "--models", str(tmp_path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not app_is_healthy(port, timeout=1.0):
            assert process.poll() is None and time.monotonic() < deadline, "the app never served"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)  # as a container's stop or a process manager
        process.wait(timeout=30)
        time.sleep(1.0)
        assert not app_is_healthy(port, timeout=1.0)  # no server left behind on the port
    finally:
        if process.poll() is None:
            process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
