"""Atomic writes (medseg.files): whole files or none, old files kept on error, no leftovers."""

from __future__ import annotations

import gzip
import os
import re
import stat

import pytest

from medseg import files
from medseg.files import TEMP_PREFIX, atomic_path, atomic_write, write_bytes, write_text


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def restore_umask():
    """Restore the process umask after a test that changes it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def test_the_target_appears_only_after_a_clean_exit(tmp_path):
    target = tmp_path / "metrics.json"
    with atomic_write(target) as handle:
        handle.write('{"dice": 0.5}')
        handle.flush()
        assert not target.exists()
        assert len(names(tmp_path)) == 1 and names(tmp_path)[0].startswith(TEMP_PREFIX)
    assert target.read_text() == '{"dice": 0.5}'
    assert names(tmp_path) == ["metrics.json"]


def test_an_existing_target_is_replaced_only_after_a_clean_exit(tmp_path):
    target = write_text(tmp_path / "history.csv", "epoch\n1\n")
    with atomic_write(target) as handle:
        handle.write("epoch\n1\n2\n")
        handle.flush()
        assert target.read_text() == "epoch\n1\n"
    assert target.read_text() == "epoch\n1\n2\n"
    assert names(tmp_path) == ["history.csv"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_error_in_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = write_bytes(tmp_path / "last.pt", b"\x00old bytes\xff")
    with pytest.raises(type(error)), atomic_write(target, "wb") as handle:
        handle.write(b"partial")
        raise error
    assert target.read_bytes() == b"\x00old bytes\xff"
    assert names(tmp_path) == ["last.pt"]


def test_an_error_after_a_library_wrote_the_temporary_path_removes_it(tmp_path):
    target = tmp_path / "mask.nii.gz"
    with pytest.raises(ValueError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a volume")
        raise ValueError("boom")
    assert names(tmp_path) == []


def test_the_temporary_path_keeps_the_folder_and_the_extension(tmp_path):
    target = tmp_path / "brain_pred.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(TEMP_PREFIX) and tmp.name.endswith("-brain_pred.nii.gz")
        assert tmp.suffixes[-2:] == [".nii", ".gz"]
        with gzip.open(tmp, "wb") as handle:  # a writer that picks its format by name
            handle.write(b"voxels")
    with gzip.open(target) as handle:
        assert handle.read() == b"voxels"
    assert names(tmp_path) == ["brain_pred.nii.gz"]


def test_two_writes_to_one_target_use_different_temporary_names(tmp_path):
    target = tmp_path / "split.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert target.read_text() == "1"  # the outer block ends last
    assert names(tmp_path) == ["split.json"]


def test_text_is_utf8_and_newlines_follow_the_newline_argument(tmp_path):
    assert write_text(tmp_path / "a.txt", "é\n").read_bytes() == "é\n".encode()
    with atomic_write(tmp_path / "b.csv", newline="") as handle:
        handle.write("x\r\ny\n")
    assert (tmp_path / "b.csv").read_bytes() == b"x\r\ny\n"
    with atomic_write(tmp_path / "c.txt", newline="\r\n") as handle:
        handle.write("x\ny\n")
    assert (tmp_path / "c.txt").read_bytes() == b"x\r\ny\r\n"
    with atomic_write(tmp_path / "d.txt", encoding="latin-1") as handle:
        handle.write("é")
    assert (tmp_path / "d.txt").read_bytes() == b"\xe9"


def test_binary_mode_writes_bytes_as_given(tmp_path):
    data = bytes(range(256)) + b"\r\n\n"
    assert write_bytes(tmp_path / "w.bin", data) == tmp_path / "w.bin"
    assert (tmp_path / "w.bin").read_bytes() == data
    with atomic_write(tmp_path / "h.bin", "wb") as handle:
        assert "b" in handle.mode
        handle.write(data)
    assert (tmp_path / "h.bin").read_bytes() == data


@pytest.mark.parametrize("mode", ["a", "r", "w+", "x"])
def test_other_modes_are_refused_before_anything_is_written(tmp_path, mode):
    refused = rf"mode must be 'w' or 'wb', got '{re.escape(mode)}'"
    with pytest.raises(ValueError, match=refused), atomic_write(tmp_path / "f", mode):
        pass
    assert names(tmp_path) == []


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_0666_less_the_umask(tmp_path, restore_umask, mask, expected):
    os.umask(mask)
    write_text(tmp_path / "t.txt", "x")
    write_bytes(tmp_path / "b.bin", b"x")
    with atomic_path(tmp_path / "p.bin") as tmp:
        tmp.write_bytes(b"x")
    for name in ("t.txt", "b.bin", "p.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text(tmp_path / "nope" / "config.yaml", "seed: 0\n")
    assert names(tmp_path) == []


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    write_text(tmp_path / "config.yaml", "seed: 0\n")
    assert events == ["fsync file", "replace", "fsync dir"]
