"""The run record (compare_run.json): written atomically, read back into the same run."""

from __future__ import annotations

import json

import pytest

from medseg.compare.spec import RunSpec, load_spec, read_record, write_record
from medseg.config import config_from_dict
from medseg.errors import MedsegError

from .conftest import tiny_config

RUN_RECORD = "compare_run.json"


def _spec(tmp_path):
    raw = tiny_config(tmp_path)
    raw["output"] = {"dir": str(tmp_path / "runs/adam+znorm/seed3")}
    return RunSpec("adam+znorm", 3, config_from_dict({**raw, "seed": 3}))


def test_record_round_trip(tmp_path):
    spec = _spec(tmp_path)
    write_record(spec, resumed=False)
    write_record(spec, wall_time_s=12.5, resumed=False)  # replaces the first one
    record = read_record(spec.run_dir)
    assert record["wall_time_s"] == 12.5 and record["config"] == spec.cfg.to_dict()
    assert load_spec(spec.run_dir) == spec
    assert [path.name for path in spec.run_dir.iterdir()] == [RUN_RECORD]  # no temporary file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"unreadable comparison run record \(FileNotFoundError\)"),
        ('{"method": "adam", "seed": 0, "conf', r"unreadable comparison run record \(JSONDecodeError\)"),
        ('{"method": "adam", "seed": "0", "config": {}}', "not a comparison run record"),
        ('["adam", 0]', "not a comparison run record"),
    ],
)
def test_a_broken_record_names_the_file(tmp_path, text, message):
    if text is not None:
        (tmp_path / RUN_RECORD).write_text(text)
    with pytest.raises(MedsegError, match=message) as info:
        read_record(tmp_path)
    assert str(tmp_path / RUN_RECORD) in str(info.value)


def test_a_record_with_an_invalid_config_names_the_file(tmp_path):
    raw = tiny_config(tmp_path)
    raw["train"]["epochs"] = 0
    record = {"method": "adam", "seed": 0, "config": raw}
    (tmp_path / RUN_RECORD).write_text(json.dumps(record))
    with pytest.raises(MedsegError, match=rf"{RUN_RECORD}: .*train.epochs must be >= 1"):
        load_spec(tmp_path)
