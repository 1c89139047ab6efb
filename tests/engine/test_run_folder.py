"""A run folder is never overwritten, a resume keeps the run's own config, and the temporary
files of interrupted writes are removed by the next start."""

from __future__ import annotations

import re
import shutil

import pytest
import segmentation_models_pytorch as smp
import torch
import yaml

from medseg.cli.main import main
from medseg.config import config_from_dict, load_config
from medseg.engine import train
from medseg.errors import ConfigError


@pytest.fixture
def finished_pcam(trained_pcam, tiny_pcam, tmp_path, pcam_settings, write_config):
    """A copy of the finished 1-epoch PCam run and its config file: (run folder, config)."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_pcam.run_dir, run_dir)
    return run_dir, write_config(pcam_settings(tiny_pcam, run_dir), tmp_path / "run.yaml")


def _snapshot(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def test_results_without_last_pt_are_not_overwritten(finished_pcam, capsys):
    run_dir, config = finished_pcam
    (run_dir / "last.pt").unlink()
    before = _snapshot(run_dir)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert (f"{run_dir} already holds a run (best.pt, history.csv, metrics.json): it has no "
            "last.pt to resume from") in err and err.count("\n") == 1
    assert _snapshot(run_dir) == before


def test_a_folder_without_a_finished_epoch_starts_over(tiny_pcam, tmp_path, pcam_settings, capsys):
    # what a run killed during its first epoch leaves: config.yaml, and a half-written last.pt
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 7\n")
    (run_dir / ".tmp-0123456789ab-last.pt").write_bytes(b"\0" * 2**20)
    (run_dir / "notes.tmp").write_text("mine")
    (run_dir / "sub").mkdir()
    (run_dir / "sub" / ".tmp-0123456789ab-x.pt").write_text("not in the run folder itself")

    result = train(config_from_dict(pcam_settings(tiny_pcam, run_dir)))
    assert result.best_epoch == 1 and (run_dir / "metrics.json").is_file()
    assert "removed unfinished temporary files of an interrupted run: .tmp-0123456789ab-last.pt (1.0 MiB)" \
        in capsys.readouterr().err
    assert not list(run_dir.glob(".tmp-*"))
    assert (run_dir / "notes.tmp").read_text() == "mine" and (run_dir / "sub" / ".tmp-0123456789ab-x.pt").exists()
    assert load_config(run_dir / "config.yaml").seed == 0


def test_resume_removes_orphaned_temp_files(finished_pcam, capsys):
    run_dir, config = finished_pcam
    (run_dir / ".tmp-0123456789ab-last.pt").write_bytes(b"\0" * 3 * 2**20)
    (run_dir / ".tmp-ba9876543210-history.csv").write_text("epoch\n")
    assert main(["train", str(config), "--resume"]) == 0
    err = capsys.readouterr().err
    assert ("removed unfinished temporary files of an interrupted run: .tmp-0123456789ab-last.pt "
            "(3.0 MiB), .tmp-ba9876543210-history.csv (0.0 MiB)") in err
    assert not list(run_dir.glob(".tmp-*"))


@pytest.mark.parametrize(("override", "key", "stored", "given"), [
    ("optim.name=sgdd", "optim.name", "'adam+znorm'", "'sgdd'"),
    ("optim.lr=0.5", "optim.lr", "0.001", "0.5"),
    ("model.encoder=resnet34", "model.encoder", "'resnet18'", "'resnet34'"),
])
def test_resume_refuses_a_changed_setting_before_writing(finished_pcam, capsys, override, key, stored, given):
    run_dir, config = finished_pcam
    before = _snapshot(run_dir)
    assert main(["train", str(config), "--resume", "--set", override]) == 2
    err = capsys.readouterr().err
    assert (f"--resume: {key} is {given} but the run in {run_dir} was trained with {stored} "
            "(last.pt); only train.epochs, ") in err
    assert err.count("\n") == 1
    assert _snapshot(run_dir) == before


def test_resume_takes_the_allowed_changes_and_records_them(finished_pcam, tiny_pcam, tmp_path):
    run_dir, config = finished_pcam
    moved = tmp_path / "moved_pcam"
    shutil.copytree(tiny_pcam, moved)
    history = (run_dir / "history.csv").read_text()
    args = ["--set", f"data.root={moved}", "--set", "train.log_every=5", "--set", "train.divergence_factor=null"]
    assert main(["train", str(config), "--resume", *args]) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["root"] == str(moved) and saved["train"]["log_every"] == 5
    assert saved["train"]["divergence_factor"] is None
    assert saved["output"]["dir"] == str(run_dir)
    assert (run_dir / "history.csv").read_text() == history


def test_resume_cannot_shorten_a_run_below_its_done_epochs(trained_lgg, tiny_lgg, tmp_path, lgg_config):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_lgg.run_dir, run_dir)
    message = f"train.epochs=1 is below the 2 epochs the run in {run_dir} has done"
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(lgg_config(tiny_lgg, run_dir, epochs=1), resume=True)



def test_resume_does_not_need_the_encoder_weights_file(tiny_lgg, tmp_path, lgg_settings):
    """last.pt holds every weight: a run started from a pre-training file resumes after the
    file moved (and its weights are not reloaded over the trained ones)."""
    weights = tmp_path / "resnet18_encoder.pt"
    torch.save(smp.encoders.get_encoder("resnet18", weights=None).state_dict(), weights)
    settings = lgg_settings(tiny_lgg, tmp_path / "run", epochs=1, max_steps_per_epoch=1)
    settings["model"]["encoder_weights"] = str(weights)
    train(config_from_dict(settings))
    weights.unlink()
    settings["train"]["epochs"] = 2
    result = train(config_from_dict(settings), resume=True)
    assert result.best_epoch in (1, 2) and len(result.history) == 2
