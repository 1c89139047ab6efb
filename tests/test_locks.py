"""medseg.locks beyond what tests/engine/test_run_lock.py holds for run folders: threads,
the folders a lock creates, and which temporary files count as orphans."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from medseg.errors import MedsegError
from medseg.files import TEMP_NAME, atomic_path
from medseg.locks import LOCK_NAME, folder_lock, remove_orphaned_temps
from medseg.runs import RunFolder
from tests.imaging.hostile import fifo, no_hang


def test_another_thread_of_this_process_is_refused(tmp_path):
    taken, done = threading.Event(), threading.Event()

    def first() -> None:
        with folder_lock(tmp_path, what="test folder"):
            taken.set()
            done.wait(30)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert taken.wait(30)
        with pytest.raises(MedsegError, match=f"^{tmp_path}: in use by another thread of this medseg "
                                              f"process \\(pid {os.getpid()} on "), \
                folder_lock(tmp_path, what="test folder"):
            pass
        assert (tmp_path / LOCK_NAME).exists()  # the refusal left the holder's lock alone
    finally:
        done.set()
        thread.join()
    with folder_lock(tmp_path, what="test folder") as lock, folder_lock(tmp_path, what="test folder") as again:
        assert lock == again == tmp_path.resolve() / LOCK_NAME
    assert not lock.exists()


def test_folders_the_lock_created_go_when_nothing_was_written(tmp_path):
    with folder_lock(tmp_path / "a" / "b", what="test folder"):
        assert (tmp_path / "a" / "b").is_dir()
    assert list(tmp_path.iterdir()) == []
    with folder_lock(tmp_path / "a" / "b", what="test folder"):
        (tmp_path / "a" / "b" / "x.txt").write_text("written")
    assert (tmp_path / "a" / "b" / "x.txt").read_text() == "written"
    with folder_lock(tmp_path / "a" / "c", what="test folder"):
        pass
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]  # a existed: kept
    (tmp_path / "file").write_text("")
    refused = f"^{tmp_path / 'file' / 'sub'}: cannot create the test folder: "
    with pytest.raises(MedsegError, match=refused), folder_lock(tmp_path / "file" / "sub", what="test folder"):
        pass


def test_only_temporary_files_named_as_medseg_names_them_are_orphans(tmp_path):
    with atomic_path(tmp_path / "brain_pred.nii.gz") as tmp:
        match = TEMP_NAME.fullmatch(tmp.name)
        assert match is not None and match.group("target") == "brain_pred.nii.gz"
        tmp.write_bytes(b"whole")
    ours = [".tmp-0123456789ab-last.pt", ".tmp-ffffffffffff-history.csv"]
    theirs = [".tmp-notours-last.pt", ".tmp-0123456789AB-last.pt", ".tmp-0123456789a-last.pt",
              ".tmp-0123456789ab-", ".tmp-", "notes.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"1234")
    (tmp_path / ".tmp-aaaaaaaaaaaa-dir").mkdir()
    (tmp_path / ".tmp-bbbbbbbbbbbb-link").symlink_to(tmp_path / "notes.tmp")
    with no_hang():
        fifo(tmp_path / ".tmp-cccccccccccc-fifo")
        assert remove_orphaned_temps(tmp_path) == [(name, 4) for name in ours]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*theirs, "brain_pred.nii.gz", ".tmp-aaaaaaaaaaaa-dir", ".tmp-bbbbbbbbbbbb-link", ".tmp-cccccccccccc-fifo"])


def test_a_fifo_as_lock_file_is_refused_not_opened(tmp_path):
    fifo(tmp_path / LOCK_NAME)
    with no_hang(), pytest.raises(MedsegError, match=f"unreadable lock file {LOCK_NAME}"), \
            folder_lock(tmp_path, what="test folder"):
        pass


@pytest.mark.parametrize(("name", "ours"), [
    ("config.yaml", True), ("last.pt", True), (".medseg.lock", True), ("compare_run.json", True),
    ("events.out.tfevents.1700000000.node.1.0", True), (".tmp-0123456789ab-best.pt", True),
    (".tmp-0123456789ab-notes.txt", False), (".tmp-notours-last.pt", False), ("notes.txt", False),
    ("events.out", False), ("Config.yaml", False),
])
def test_which_names_a_run_folder_holds(name, ours):
    assert RunFolder.is_run_entry(name) is ours
    assert RunFolder.LOCK_NAME == LOCK_NAME and RunFolder(Path("r")).lock_file == Path("r") / LOCK_NAME
