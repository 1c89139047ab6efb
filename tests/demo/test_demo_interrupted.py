"""``medseg demo-data --force`` after an interrupted or killed writer removes only what the
demo wrote: a user's file copied to a demo name since is never deleted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medseg.demo.marker import DEMO_MARKER, DemoRecord, remove_demo
from medseg.errors import DataError


def _marker_files(folder: Path) -> dict:
    return json.loads((folder / DEMO_MARKER).read_text())["files"]


def test_an_interrupted_writer_records_what_it_wrote_and_forgets_what_it_did_not(tmp_path):
    written, never = tmp_path / "a.txt", tmp_path / "b.txt"
    record = DemoRecord(tmp_path, "pcam", seed=0)
    with pytest.raises(KeyboardInterrupt), record.writing([written, never]):
        written.write_text("demo")
        raise KeyboardInterrupt
    assert _marker_files(tmp_path) == {"a.txt": hashlib.sha256(b"demo").hexdigest()}
    never.write_text("the user's own file, copied here after the interruption")
    remove_demo(tmp_path, "pcam")
    assert not written.exists() and not (tmp_path / DEMO_MARKER).exists()
    assert never.read_text().startswith("the user's own file")


def test_a_file_left_with_a_null_digest_by_a_killed_writer_is_refused_not_deleted(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"maybe demo, maybe the user's")
    (tmp_path / "y.h5").write_bytes(b"demo")
    marker = {"synthetic": True, "kind": "pcam", "written_by": "medseg demo-data", "version": "0",
              "seed": 0, "files": {"y.h5": hashlib.sha256(b"demo").hexdigest(), "x.h5": None}}
    (tmp_path / DEMO_MARKER).write_text(json.dumps(marker))
    with pytest.raises(DataError, match=r"x\.h5: was being written when an earlier demo-data was killed"):
        remove_demo(tmp_path, "pcam")
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEMO_MARKER, "x.h5", "y.h5"]
