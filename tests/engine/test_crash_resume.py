"""last.pt is the one commit point of an epoch: a kill between any two writes of a run's last
epoch, then ``--resume``, ends bit for bit like a run that never stopped."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from medseg.cli.main import main
from medseg.engine import TrainCallback, load_checkpoint
from medseg.engine import trainer as trainer_module
from medseg.errors import CheckpointError
from medseg.runs import RunFolder
from tests.support import train_tiny

#: every function through which the trainer writes a file of the run folder
WRITERS = ("save_config", "save_checkpoint", "copy_checkpoint", "write_history", "write_json")
#: history.csv columns that measure time, not the run
TIMINGS = ("images_per_s", "seconds")


class Kill(BaseException):
    """Stands in for a SIGKILL: no ``except Exception`` stops it."""


class KillAfterEpoch(TrainCallback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, info):
        if info.epoch == self.epoch:
            raise Kill


def _kill_at_write(monkeypatch, k: int) -> None:
    """Kill the run as it starts its k-th write, leaving that write's temporary file behind."""
    count = {"n": 0}

    def wrap(real):
        def writer(*args, **kwargs):
            count["n"] += 1
            if count["n"] == k:
                target = args[1]
                (target.parent / f".tmp-0123456789ab-{target.name}").write_bytes(b"half a file")
                raise Kill
            return real(*args, **kwargs)

        return writer

    for name in WRITERS:
        monkeypatch.setattr(trainer_module, name, wrap(getattr(trainer_module, name)))


@pytest.fixture
def later_epochs_score_higher(monkeypatch):
    """Validation scores epoch / 10, so that the last epoch is the best and its end writes
    every file (last.pt, best.pt, history.csv, then metrics.json)."""
    real = trainer_module._history_row

    def history_row(epoch, *args):
        return {**real(epoch, *args), "val_dice": epoch / 10}

    monkeypatch.setattr(trainer_module, "_history_row", history_row)


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(handle)]


def _assert_same_run(a, b):
    for name in ("last.pt", "best.pt"):
        weights_a, weights_b = load_checkpoint(a / name), load_checkpoint(b / name)
        assert weights_a["epoch"] == weights_b["epoch"], name
        assert weights_a["model"].keys() == weights_b["model"].keys()
        for key, tensor in weights_a["model"].items():
            assert torch.equal(tensor, weights_b["model"][key]), f"{name}: {key}"
    assert _history(a) == _history(b)
    assert json.loads((a / "metrics.json").read_text()) == json.loads((b / "metrics.json").read_text())
    assert not list(b.glob(".tmp-*")) and not RunFolder(b).lock_file.exists()


def test_a_kill_between_any_two_writes_resumes_bit_for_bit(tiny_lgg, tmp_path, lgg_settings,
                                                            later_epochs_score_higher, monkeypatch):
    settings = lambda run_dir: lgg_settings(tiny_lgg, run_dir, max_steps_per_epoch=1)  # noqa: E731
    straight = tmp_path / "straight"
    train_tiny(settings(straight))
    after_epoch_1 = tmp_path / "after_epoch_1"
    with pytest.raises(Kill):
        train_tiny(settings(after_epoch_1), callbacks=[KillAfterEpoch(1)])

    k = 0
    while True:  # kill at the 1st, 2nd, ... write of the resumed run, until one completes
        k += 1
        run_dir = tmp_path / f"killed_at_write_{k}"
        shutil.copytree(after_epoch_1, run_dir)
        with monkeypatch.context() as patch:
            _kill_at_write(patch, k)
            try:
                train_tiny(settings(run_dir), resume=True)
            except Kill:
                killed = True
            else:
                killed = False
        if killed:
            train_tiny(settings(run_dir), resume=True)
        _assert_same_run(straight, run_dir)
        if not killed:
            break
    # history.csv (rebuilt), config.yaml, then epoch 2: last.pt, best.pt, history.csv, metrics.json
    assert k == 7


def test_resuming_a_finished_run_completes_its_files(trained_pcam, tiny_pcam, tmp_path, pcam_settings,
                                                     write_config):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_pcam.run_dir, run_dir)
    for name in ("best.pt", "history.csv", "metrics.json"):
        (run_dir / name).unlink()
    config = write_config(pcam_settings(tiny_pcam, run_dir), tmp_path / "run.yaml")
    assert main(["train", str(config), "--resume"]) == 0
    _assert_same_run(trained_pcam.run_dir, run_dir)
    assert main(["train", str(config), "--resume"]) == 0  # nothing left to do


def test_a_stale_best_pt_is_replaced_from_last_pt(trained_pcam, tiny_pcam, tmp_path, pcam_settings,
                                                  write_config, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_pcam.run_dir, run_dir)
    best = load_checkpoint(run_dir / "best.pt")
    torch.save({**best, "epoch": 0}, run_dir / "best.pt")  # as if the copy had not happened
    config = write_config(pcam_settings(tiny_pcam, run_dir), tmp_path / "run.yaml")
    assert main(["train", str(config), "--resume"]) == 0
    assert f"rebuilt {run_dir / 'best.pt'} from last.pt (epoch 1)" in capsys.readouterr().err
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1


def test_extending_a_run_drops_its_metrics_until_the_new_end(trained_pcam, tiny_pcam, tmp_path,
                                                             pcam_settings, monkeypatch):
    # metrics.json scores the best.pt of a finished run; while an extension runs there is none
    run_dir = tmp_path / "run"
    shutil.copytree(trained_pcam.run_dir, run_dir)
    _kill_at_write(monkeypatch, 3)  # history.csv, config.yaml, then epoch 2's last.pt
    with pytest.raises(Kill):
        train_tiny(pcam_settings(tiny_pcam, run_dir, epochs=2), resume=True)
    assert not (run_dir / "metrics.json").exists()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1


def test_a_best_pt_that_last_pt_cannot_provide_is_reported(trained_pcam, tiny_pcam, tmp_path, pcam_settings):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_pcam.run_dir, run_dir)
    last = load_checkpoint(run_dir / "last.pt")
    torch.save({**last, "epoch": 2, "best_epoch": 1}, run_dir / "last.pt")  # epoch 1 was the best
    (run_dir / "best.pt").unlink()
    with pytest.raises(CheckpointError, match=r"best\.pt: is missing or unreadable, but last\.pt records "
                                              r"epoch 1 as the best and has moved on to epoch 2"):
        train_tiny(pcam_settings(tiny_pcam, run_dir, epochs=2), resume=True)
