"""A run folder is never overwritten, a resume keeps the run's own config, and the temporary
files of interrupted writes are removed by the next start."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
import yaml

from medseg.cli.main import main
from medseg.config import config_from_dict, load_config, save_config
from medseg.engine import train
from medseg.engine.run_folder import is_written_config
from medseg.errors import ConfigError, DataError, MedsegError
from tests.imaging.hostile import fifo, no_hang


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
    # what a run killed during its first epoch leaves: its config.yaml as medseg wrote it,
    # TensorBoard's events, and a half-written last.pt
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(config_from_dict({**pcam_settings(tiny_pcam, run_dir), "seed": 7}), run_dir / "config.yaml")
    (run_dir / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"")
    (run_dir / ".tmp-0123456789ab-last.pt").write_bytes(b"\0" * 2**20)

    result = train(config_from_dict(pcam_settings(tiny_pcam, run_dir)))
    assert result.best_epoch == 1 and (run_dir / "metrics.json").is_file()
    assert "removed unfinished temporary files of an interrupted run: .tmp-0123456789ab-last.pt (1.0 MiB)" \
        in capsys.readouterr().err
    assert not list(run_dir.glob(".tmp-*"))
    assert load_config(run_dir / "config.yaml").seed == 0


def _user_folder(folder: Path, config: dict) -> dict[str, bytes]:
    """A user's own folder: their hand-written config.yaml, a temporary file of theirs and
    notes; returns its files' bytes."""
    folder.mkdir()
    (folder / "config.yaml").write_text("# my settings\n" + yaml.safe_dump(config))
    (folder / ".tmp-0123456789ab-draft.txt").write_text("my draft")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("data_root", ["present", "missing"])
def test_a_users_folder_is_refused_untouched(tiny_pcam, tmp_path, pcam_settings, capsys, data_root):
    # the issue: `medseg train p/config.yaml --set output.dir=p` deleted the .tmp-* file and
    # overwrote config.yaml, and only then failed on the data root
    folder = tmp_path / "p"
    settings = pcam_settings(tiny_pcam if data_root == "present" else tmp_path / "nowhere", folder)
    del settings["output"]
    before = _user_folder(folder, settings)
    assert main(["train", str(folder / "config.yaml"), "--set", f"output.dir={folder}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    if data_root == "present":
        assert (f"{folder}: not empty and not a run folder of medseg's (holds .tmp-0123456789ab-draft.txt, "
                "config.yaml)") in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("extra", ["notes.txt", ".tmp-notours-last.pt", "sub"])
def test_a_run_folder_holding_other_files_is_not_taken_over(tiny_pcam, tmp_path, pcam_settings, capsys, extra):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(config_from_dict(pcam_settings(tiny_pcam, run_dir)), run_dir / "config.yaml")
    (run_dir / ".tmp-0123456789ab-last.pt").write_bytes(b"half")
    (run_dir / extra).mkdir() if extra == "sub" else (run_dir / extra).write_text("mine")
    before = _snapshot(run_dir)
    with pytest.raises(MedsegError, match=f"not a run folder of medseg's \\(holds {re.escape(extra)}\\)"):
        train(config_from_dict(pcam_settings(tiny_pcam, run_dir)))
    assert _snapshot(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == sorted(
        [*before, *(["sub"] if extra == "sub" else [])])


def test_only_a_whole_config_as_medseg_writes_it_counts_as_a_runs(tiny_pcam, tmp_path, pcam_settings):
    written = tmp_path / "written.yaml"
    save_config(config_from_dict(pcam_settings(tiny_pcam, tmp_path / "run")), written)
    assert is_written_config(written)
    whole = yaml.safe_load(written.read_text())
    hand = tmp_path / "hand.yaml"
    hand.write_text(yaml.safe_dump(pcam_settings(tiny_pcam, tmp_path / "run")))  # some settings only
    assert not is_written_config(hand)
    whole["train"]["epochs"] = "1"  # a value validation would change
    hand.write_text(yaml.safe_dump(whole))
    assert not is_written_config(hand)
    assert not is_written_config(tmp_path / "missing.yaml")
    with no_hang():
        assert not is_written_config(fifo(tmp_path / "config.yaml"))


@pytest.mark.parametrize("problem", ["missing_root", "wrong_format", "missing_split"])
def test_data_problems_are_reported_before_anything_is_written(tiny_lgg, tiny_pcam, tmp_path, pcam_settings,
                                                               write_config, capsys, problem):
    settings = pcam_settings(tiny_pcam, tmp_path / "new" / "run")
    if problem == "missing_root":
        settings["data"]["root"] = str(tmp_path / "nowhere")
        expected = f"{tmp_path / 'nowhere' / 'camelyonpatch_level_2_split_train_x.h5'}: missing PatchCamelyon file"
    elif problem == "wrong_format":  # an LGG folder given as PCam
        settings["data"]["root"] = str(tiny_lgg)
        expected = f"{tiny_lgg / 'camelyonpatch_level_2_split_train_x.h5'}: missing PatchCamelyon file"
    else:
        settings["data"]["split_file"] = str(tmp_path / "split.json")
        expected = f"{tmp_path / 'split.json'}: split file not found"
    config = write_config(settings, tmp_path / "run.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    for run_dir in (tmp_path / "new" / "run", empty):
        assert main(["train", str(config), "--set", f"output.dir={run_dir}"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists() and not list(empty.iterdir())


def test_a_missing_lgg_root_is_named(tiny_lgg, tmp_path, lgg_config):
    cfg = lgg_config(tiny_lgg, tmp_path / "run")
    cfg.data.root = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'nowhere'))}: no such folder$"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_resume_with_a_missing_data_root_changes_nothing(finished_pcam, tmp_path, capsys):
    run_dir, config = finished_pcam
    (run_dir / ".tmp-0123456789ab-last.pt").write_bytes(b"half")
    (run_dir / "metrics.json").unlink()
    before = _snapshot(run_dir)
    assert main(["train", str(config), "--resume", "--set", f"data.root={tmp_path / 'nowhere'}"]) == 2
    assert "missing PatchCamelyon file" in capsys.readouterr().err
    assert _snapshot(run_dir) == before


def test_resume_removes_orphaned_temp_files(finished_pcam, capsys):
    run_dir, config = finished_pcam
    (run_dir / ".tmp-0123456789ab-last.pt").write_bytes(b"\0" * 3 * 2**20)
    (run_dir / ".tmp-ba9876543210-history.csv").write_text("epoch\n")
    (run_dir / ".tmp-notours-last.pt").write_text("not named as medseg names its temporary files")
    (run_dir / "notes.tmp").write_text("mine")
    assert main(["train", str(config), "--resume"]) == 0
    err = capsys.readouterr().err
    assert ("removed unfinished temporary files of an interrupted run: .tmp-0123456789ab-last.pt "
            "(3.0 MiB), .tmp-ba9876543210-history.csv (0.0 MiB)") in err
    assert [p.name for p in run_dir.glob(".tmp-*")] == [".tmp-notours-last.pt"]
    assert (run_dir / "notes.tmp").read_text() == "mine"


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
