"""Every reader of a file a user names or a run folder holds opens regular files only: a
FIFO (opening it waits for a writer forever) or a device is refused by name, without
blocking (guarded by :func:`tests.imaging.hostile.no_hang`: a regression fails instead of
hanging). The imaging readers have theirs in tests/imaging; the run cards in tests/app."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.compare.grad_stats import read_grad_stats, read_overlap
from medseg.compare.spec import read_record
from medseg.config import load_config
from medseg.data.splits import read_split_file
from medseg.engine.checkpoint import load_checkpoint
from medseg.errors import CheckpointError, ConfigError, DataError, MedsegError
from medseg.runs import RunFolder
from tests.imaging.hostile import fifo, no_hang

DEVICE = Path("/dev/zero")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_config_that_is_not_a_regular_file(tmp_path, kind):
    path = fifo(tmp_path / "config.yaml") if kind == "fifo" else DEVICE
    what = "a FIFO" if kind == "fifo" else "a character device"
    with no_hang(), pytest.raises(ConfigError, match=f"^{path}: not a regular file \\({what}\\); "):
        load_config(path)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_split_file_that_is_not_a_regular_file(tmp_path, kind):
    path = fifo(tmp_path / "split.json") if kind == "fifo" else DEVICE
    with no_hang(), pytest.raises(DataError, match=f"^{path}: not a regular file"):
        read_split_file(path)
    with pytest.raises(DataError, match="split file not found"):
        read_split_file(tmp_path / "missing.json")


def test_a_checkpoint_that_is_a_fifo(tmp_path):
    path = fifo(tmp_path / "best.pt")
    with no_hang(), pytest.raises(CheckpointError, match=f"^{path}: not a checkpoint file"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["history.csv", "metrics.json"])
def test_a_run_s_history_or_metrics_that_is_a_fifo(tmp_path, name):
    run = RunFolder(tmp_path)
    fifo(tmp_path / name)
    read = run.read_history if name == "history.csv" else run.read_metrics
    with no_hang(), pytest.raises(MedsegError, match=f"^{tmp_path / name}: cannot read the .*\\(not a "
                                                     "regular file \\(a FIFO\\)"):
        read()


def test_metrics_json_is_read_as_a_json_object(tmp_path):
    run = RunFolder(tmp_path)
    run.metrics_file.write_text('{"epoch": 2, "dice": 0.5}')
    assert run.read_metrics() == {"epoch": 2, "dice": 0.5}
    run.metrics_file.write_text("[1, 2]")
    with pytest.raises(MedsegError, match="cannot read the test metrics \\(not a JSON object\\)"):
        run.read_metrics()
    run.metrics_file.write_text("{")
    with pytest.raises(MedsegError, match="cannot read the test metrics \\(not JSON\\)"):
        run.read_metrics()
    run.metrics_file.unlink()
    with pytest.raises(MedsegError, match=f"^{run.metrics_file}: cannot read the test metrics \\(no such file\\)"):
        run.read_metrics()


def test_a_comparison_record_or_grad_stats_that_is_a_fifo(tmp_path):
    record = fifo(tmp_path / "compare_run.json")
    with no_hang(), pytest.raises(MedsegError, match=f"^{record}: unreadable comparison run record \\(not a regular"):
        read_record(tmp_path)
    stats = fifo(tmp_path / "grad_stats.jsonl")
    for read in (read_grad_stats, read_overlap):
        with no_hang(), pytest.raises(DataError, match=f"^{stats}: not a regular file \\(a FIFO\\)"):
            read(stats)
