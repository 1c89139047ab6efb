"""A full disk (or any OSError) while writing a run's files is a one-line error naming the
file; the previous file stays intact and no temporary file is left."""

from __future__ import annotations

import errno
import os
import re
import shutil

import pytest
import torch

import medseg.files
from medseg.cli.main import main
from medseg.engine import save_checkpoint
from medseg.engine.checkpoint import copy_checkpoint
from medseg.engine.records import write_history, write_json
from medseg.errors import CheckpointError, MedsegError


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_a_checkpoint_save(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _disk_full)
    message = f"{tmp_path / 'last.pt'}: cannot write it: no space left on device (the previous file is intact)"
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_full_disk_during_a_checkpoint_copy(tmp_path, monkeypatch):
    last = save_checkpoint({"epoch": 2}, tmp_path / "last.pt")
    best = save_checkpoint({"epoch": 1}, tmp_path / "best.pt")
    before = best.read_bytes()
    monkeypatch.setattr(os, "link", _disk_full)
    monkeypatch.setattr(shutil, "copyfile", _disk_full)
    with pytest.raises(CheckpointError, match=r"best\.pt: cannot copy .*last\.pt to it: no space left on device"):
        copy_checkpoint(last, best)
    assert best.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize(("name", "write"), [
    ("history.csv", lambda path: write_history([{"epoch": 2, "train_loss": 0.5}], path)),
    ("metrics.json", lambda path: write_json({"epoch": 2}, path)),
])
def test_a_full_disk_during_a_record_write(tmp_path, monkeypatch, name, write):
    path = tmp_path / name
    path.write_text("before\n")
    monkeypatch.setattr(medseg.files, "_fsync_file", _disk_full)  # where a full disk shows up late
    with pytest.raises(MedsegError, match=f"^{re.escape(str(path))}: cannot write it: no space left on device"):
        write(path)
    assert path.read_text() == "before\n"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_train_reports_a_full_disk_in_one_line(tiny_pcam, tmp_path, pcam_settings, write_config,
                                               monkeypatch, capsys):
    run_dir = tmp_path / "run"
    config = write_config(pcam_settings(tiny_pcam, run_dir), tmp_path / "run.yaml")
    monkeypatch.setattr(torch, "save", _disk_full)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"medseg: error: {run_dir / 'last.pt'}: cannot write it: no space left on device "
                        "(the previous file is intact)\n")
    assert "Traceback" not in err
    assert not list(run_dir.glob(".tmp-*")) and not (run_dir / "last.pt").exists()
