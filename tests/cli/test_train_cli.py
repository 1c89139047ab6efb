"""``medseg train``: arguments reach the engine, summaries, and errors as exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import medseg.engine
from medseg.cli.main import main
from medseg.engine import TrainResult

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "demo_lgg.yaml")


@pytest.fixture
def fake_train(monkeypatch):
    calls = []

    def train(cfg, *, resume=False):
        calls.append((cfg, resume))
        classify = cfg.task == "classification"
        test = ({"n": 8, "accuracy": 0.75, "auc": 0.8125} if classify
                else {"n": 10, "dice": 0.4, "iou": 0.3, "patient_dice": 0.35})
        return TrainResult(run_dir=cfg.run_dir, best_metric=0.5, best_epoch=2, history=[],
                           test_metrics=test, task=cfg.task)

    monkeypatch.setattr(medseg.engine, "train", train)
    return calls


def test_overrides_and_resume_reach_the_engine(fake_train, capsys):
    code = main(["train", CONFIG, "--set", "train.epochs=3", "--set", "output.run_name=abc", "--resume"])
    assert code == 0
    (cfg, resume), = fake_train
    assert cfg.train.epochs == 3 and cfg.run_dir == Path("models/abc") and resume is True
    out = capsys.readouterr().out.splitlines()
    assert out == ["run: models/abc", "best val dice: 0.5000 at epoch 2",
                   "test (best.pt, n=10): dice 0.4000  iou 0.3000  patient_dice 0.3500"]


def test_classification_summary_and_quiet_ranks(fake_train, capsys, monkeypatch):
    pcam = str(Path(CONFIG).with_name("demo_pcam.yaml"))
    assert main(["train", pcam]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "test (best.pt, n=8): accuracy 0.7500  auc 0.8125"
    monkeypatch.setenv("RANK", "1")
    assert main(["train", pcam]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "train.epoch=3"], "unknown key train.epoch; valid keys of train:"),
    (["--set", "optim.lr=-1"], "optim.lr must be > 0"),
    (["--set", "train.device=tpu"], "train.device: 'tpu' is not a device"),
])
def test_config_errors_exit_2(args, message, capsys, tmp_path):
    assert main(["train", CONFIG, "--set", f"output.dir={tmp_path / 'run'}", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medseg: error: ") and message in err and "Traceback" not in err


def test_missing_config_data_and_run_exit_2(capsys, tmp_path):
    assert main(["train", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: config file not found" in capsys.readouterr().err
    run = ["--set", f"output.dir={tmp_path / 'run'}", "--set", "train.device=cpu"]
    assert main(["train", CONFIG, "--set", f"data.root={tmp_path / 'nope'}", *run]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    assert main(["train", CONFIG, "--resume", *run]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "medseg train configs/demo_lgg.yaml" in out and "--resume" in out


def test_resume_from_a_corrupt_checkpoint_exits_2(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"\x00" * 64)
    assert main(["train", CONFIG, "--resume", "--set", f"output.dir={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert "last.pt: not a readable checkpoint" in err and "Traceback" not in err
    assert (run_dir / "last.pt").read_bytes() == b"\x00" * 64
    assert not (run_dir / "config.yaml").exists()
