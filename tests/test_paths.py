"""The one path rule (medseg.paths): plain names, paths confined to a folder, regular files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from medseg.errors import ConfigError, DataError, MedsegError
from medseg.paths import confined, is_regular_file, plain_name, read_json, regular_file


@pytest.mark.parametrize("name", ["demo_lgg", "adam+znorm-seed0", "run-2.b", "A", "x" * 128])
def test_plain_names_pass_unchanged(name):
    assert plain_name(name, "output.run_name") == name


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", "/abs", ".hidden", "a\\b",
                                  "x" * 129, "tab\there", "é", 5, None])
def test_anything_else_is_refused_naming_the_option(name):
    with pytest.raises(ConfigError, match=r"^output\.run_name: .* is not a plain name"):
        plain_name(name, "output.run_name")


def test_confined_joins_a_relative_path(tmp_path):
    assert confined(tmp_path, "a/b.json", "x") == tmp_path / "a" / "b.json"


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "", "."])
def test_confined_refuses_paths_that_could_leave_the_folder(tmp_path, relative):
    with pytest.raises(ConfigError, match=r"^split: .* must be a path inside"):
        confined(tmp_path, relative, "split")


def test_confined_refuses_a_link_out_of_the_folder(tmp_path):
    base, outside = tmp_path / "base", tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "link").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"leads outside .* through a link"):
        confined(base, "link/file.txt", "what")
    (base / "inner").mkdir()
    (base / "ok").symlink_to(base / "inner")
    assert confined(base, "ok/file.txt", "what") == base / "ok" / "file.txt"


def test_regular_files_and_links_to_them_pass(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    assert regular_file(tmp_path / "f") == tmp_path / "f"
    assert regular_file(tmp_path / "l") == tmp_path / "l"


def test_a_fifo_a_device_a_socket_a_folder_and_nothing_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match=r"fifo: not a regular file \(a FIFO\)"):
        regular_file(tmp_path / "fifo")  # opening it would block forever
    with pytest.raises(DataError, match=r"^/dev/zero: not a regular file \(a character device\)"):
        regular_file(Path("/dev/zero"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(DataError, match=r"not a regular file \(a socket\)"):
            regular_file(tmp_path / "sock")
    with pytest.raises(DataError, match=r"not a regular file \(a folder\)"):
        regular_file(tmp_path)
    with pytest.raises(DataError, match=r"missing: no such file"):
        regular_file(tmp_path / "missing")


def test_is_regular_file_probes_without_opening(tmp_path):
    (tmp_path / "f").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    assert is_regular_file(tmp_path / "f")
    assert not is_regular_file(tmp_path / "fifo")
    assert not is_regular_file(tmp_path)
    assert not is_regular_file(tmp_path / "missing")
    assert not is_regular_file(Path("/dev/null"))


def test_read_json_returns_the_document_and_names_the_file_and_what_it_holds(tmp_path):
    good = tmp_path / "folds.json"
    good.write_text('{"seed": 0, "folds": [["A"], ["B"]]}', encoding="utf-8")
    assert read_json(good, "the folds") == {"seed": 0, "folds": [["A"], ["B"]]}
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "deep.json").write_text("[" * 100_000, encoding="utf-8")  # RecursionError
    os.mkfifo(tmp_path / "fifo.json")
    for name, why in [("bad.json", "not JSON"), ("deep.json", "not JSON"), ("missing.json", "no such file"),
                      ("fifo.json", "not a regular file")]:
        with pytest.raises(MedsegError, match=rf"^{tmp_path / name}: cannot read the folds \(.*{why}") as err:
            read_json(tmp_path / name, "the folds")
        assert "\n" not in str(err.value)
