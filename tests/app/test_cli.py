"""``medseg app``: the streamlit command it runs, its environment and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import medseg
from medseg.cli import app as app_cli
from medseg.cli.main import main


def test_runs_the_packaged_page_with_the_folders(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_call(command, env):
        calls.append((command, env))
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
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
    assert env["MEDSEG_MODELS_DIR"] == str((tmp_path / "runs").resolve())
    assert env["MEDSEG_DATA_DIR"] == str((tmp_path / "cases").resolve())
    assert "MEDSEG_PCAM_DIR" not in env  # not given: the page's default applies
    assert "http://0.0.0.0:8600" in capsys.readouterr().out


def test_host_and_port_from_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, env: calls.append(command) or 0)
    monkeypatch.setenv("MEDSEG_APP_HOST", "0.0.0.0")  # as the Docker image sets it
    monkeypatch.setenv("MEDSEG_APP_PORT", "8777")
    assert main(["app"]) == 0
    assert main(["app", "--port", "8000", "--host", "127.0.0.1"]) == 0
    first, second = (dict(zip(c[5::2], c[6::2], strict=True)) for c in calls)
    assert (first["--server.address"], first["--server.port"]) == ("0.0.0.0", "8777")
    assert (second["--server.address"], second["--server.port"]) == ("127.0.0.1", "8000")


def test_missing_folder_and_bad_port_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: 0 / 0)  # must not be reached
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
