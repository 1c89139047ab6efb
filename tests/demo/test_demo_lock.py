"""One ``medseg demo-data`` per folder: a folder another medseg process writes is refused
before anything in it is removed or written."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from medseg.cli.main import main
from medseg.demo.marker import remove_demo, start_demo
from medseg.errors import MedsegError
from medseg.locks import LOCK_NAME
from tests.demo.conftest import files_of
from tests.locking import held_by_another_process


@pytest.mark.parametrize("args", [[], ["--force"]], ids=["new", "force"])
def test_demo_data_into_a_locked_folder_is_refused(demo_pcam, tmp_path, capsys, args):
    out = tmp_path / "pcam"
    if args:  # an earlier demo there, which --force would replace
        shutil.copytree(demo_pcam, out)
    with held_by_another_process(out) as first:
        before = files_of(out)
        assert main(["demo-data", "pcam", str(out), "--seed", "1", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{out}: in use by another medseg process (pid {first.pid} on {socket.gethostname()}, " in err
        assert files_of(out) == before
        for call in (lambda: remove_demo(out, "pcam"), lambda: start_demo(out, "pcam", seed=1)):
            with pytest.raises(MedsegError, match=f"in use by another medseg process \\(pid {first.pid} "):
                call()
        assert files_of(out) == before


def test_demo_data_holds_its_folder_while_it_writes(tmp_path, capsys, monkeypatch):
    import medseg.demo.pcam

    seen = []

    def writer(out: Path, seed: int) -> Path:
        seen.append(sorted(p.name for p in out.iterdir()))
        raise MedsegError("stop")

    monkeypatch.setattr(medseg.demo.pcam, "write_demo_pcam", writer)
    assert main(["demo-data", "pcam", str(tmp_path / "new" / "pcam")]) == 2
    assert seen == [[LOCK_NAME]] and not (tmp_path / "new").exists()
