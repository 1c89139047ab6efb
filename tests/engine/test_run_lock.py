"""One writer per run folder: the lock file, its holder, stale locks, train and compare."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from medseg.cli.main import main
from medseg.compare.execution import execute_run
from medseg.compare.spec import RunSpec
from medseg.config import config_from_dict
from medseg.engine import train
from medseg.engine.run_folder import run_lock
from medseg.errors import MedsegError

LOCK_NAME = ".medseg.lock"


@pytest.fixture
def other_process():
    """A live process of this host that is not this one (killed at the end)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _hold(run_dir: Path, pid: int, host: str | None = None) -> Path:
    """Write the lock a process ``pid`` of ``host`` would hold."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    holder = {"pid": pid, "host": host or socket.gethostname(), "since": "2025-01-31T09:12:45+00:00"}
    lock.write_text(json.dumps(holder))
    return lock


def test_the_lock_file_names_its_holder_and_goes_away(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with run_lock(run_dir) as lock:
        holder = json.loads(lock.read_text())
        assert lock == run_dir.resolve() / LOCK_NAME
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert datetime.fromisoformat(holder["since"]).tzinfo is not None
    assert not lock.exists()
    with pytest.raises(KeyError), run_lock(run_dir):
        raise KeyError("boom")
    assert not lock.exists()


def test_nested_locks_of_one_process_share_the_file(tmp_path):
    with run_lock(tmp_path) as outer:
        with run_lock(tmp_path / "." / "") as inner:
            assert inner == outer
        assert outer.exists()
    assert not outer.exists()


def test_release_leaves_a_lock_that_another_process_took_over(tmp_path, other_process):
    # someone removed this process's lock while it ran, and another process took the folder
    with run_lock(tmp_path) as lock:
        lock.unlink()
        theirs = _hold(tmp_path, other_process.pid).read_text()
    assert lock.read_text() == theirs
    refused = f"in use by another medseg process \\(pid {other_process.pid} "
    with pytest.raises(MedsegError, match=refused), run_lock(tmp_path):
        pass


def test_a_live_holder_is_refused_by_name(tmp_path, other_process):
    lock = _hold(tmp_path / "run", other_process.pid)
    before = lock.read_text()
    expected = re.escape(f"{tmp_path / 'run'}: in use by another medseg process (pid {other_process.pid} "
                         f"on {socket.gethostname()}, since 2025-01-31T09:12:45+00:00)")
    with pytest.raises(MedsegError, match=expected), run_lock(tmp_path / "run"):
        pass
    assert lock.read_text() == before


def test_a_stale_lock_of_this_host_is_reclaimed(tmp_path):
    lock = _hold(tmp_path, _dead_pid())
    with run_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    lock = _hold(tmp_path, _dead_pid(), host="node-elsewhere")
    with pytest.raises(MedsegError, match=r"in use by another medseg process .* on node-elsewhere"), \
            run_lock(tmp_path):
        pass
    assert json.loads(lock.read_text())["host"] == "node-elsewhere"


def test_an_unreadable_lock_is_refused(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(MedsegError, match=f"unreadable lock file {LOCK_NAME}; .*remove"), \
            run_lock(tmp_path):
        pass


def test_train_refuses_a_locked_folder_before_writing(tiny_pcam, tmp_path, pcam_settings, write_config,
                                                      other_process, capsys):
    run_dir = tmp_path / "run"
    lock = _hold(run_dir, other_process.pid)
    config = write_config(pcam_settings(tiny_pcam, run_dir), tmp_path / "run.yaml")
    for extra in ([], ["--resume"]):
        assert main(["train", str(config), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"{run_dir}: in use by another medseg process (pid {other_process.pid} on " in err
    assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME] and lock.exists()


def test_a_refused_start_releases_the_lock(tiny_pcam, tmp_path, pcam_settings):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "history.csv").write_text("epoch\n1\n")
    with pytest.raises(MedsegError, match="already holds a run"):
        train(config_from_dict(pcam_settings(tiny_pcam, run_dir)))
    assert [p.name for p in run_dir.iterdir()] == ["history.csv"]


def test_compare_takes_the_lock_before_its_first_write(tiny_lgg, tmp_path, lgg_config, other_process):
    spec = RunSpec("adam", 0, lgg_config(tiny_lgg, tmp_path / "runs" / "adam" / "seed0"))
    _hold(spec.run_dir, other_process.pid)
    with pytest.raises(MedsegError, match="in use by another medseg process"):
        execute_run(spec, resume=False)
    assert not spec.folder.compare_record.exists()
