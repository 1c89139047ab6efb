"""Config files passed by mistake: the error names the file and the problem, never quotes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cli.main import main

SECRET = "ghp_s3cretT0kenValue"


@pytest.mark.parametrize(("content", "problem"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + SECRET.encode(), "a binary file, not a YAML config"),
    (b"data:\n  root: caf\xe9 " + SECRET.encode() + b"\n", "not UTF-8 text (invalid byte at offset 17)"),
    (f"{SECRET}: 1\n".encode(), "not a medseg config: none of its top-level keys is a section"),
    (f'{{"token": "{SECRET}"}}\n'.encode(), "not a medseg config"),
    (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n".encode(), "expected a mapping of sections"),
    (f"train: [1\n{SECRET}\n".encode(), "not valid YAML (line 3)"),
])
def test_a_wrong_file_is_named_not_quoted(tmp_path, capsys, content, problem):
    path = tmp_path / "wrong.yaml"
    path.write_bytes(content)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medseg: error: {path}: {problem}")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert SECRET not in err and "ghp" not in err


def test_a_real_config_still_names_its_misspelt_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    assert main(["train", str(path)]) == 2
    assert "unknown key train.epoch; valid keys of train:" in capsys.readouterr().err


CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_lgg.yaml"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("medseg: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("name", ["../../escape", "{tmp}/escape", "."])
def test_a_run_name_that_leaves_the_models_folder_exits_2(tmp_path, monkeypatch, capsys, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["train", str(CONFIG), "--set", f"output.run_name={name.format(tmp=tmp_path)}"]) == 2
    assert "output.run_name: " in _one_error_line(capsys)
    assert not (tmp_path / "escape").exists() and list(work.iterdir()) == []


def test_a_config_mixing_number_and_text_keys_exits_2(tmp_path, capsys):
    path = tmp_path / "mixed.yaml"
    path.write_text("train:\n  epochs: 2\n  1: 2\n  foo: 3\n")
    assert main(["train", str(path)]) == 2
    assert _one_error_line(capsys).startswith(f"medseg: error: {path}: unknown key train.1; valid keys of train:")


@pytest.mark.parametrize(("setting", "message"), [
    ("seed=18446744073709551617", "seed must be <= 4294967295"),
    ("model.in_channels=1", "model.in_channels must be 3, got 1"),
    ("data.image_size=1048576", "data.image_size must be <= 4096, got 1048576"),
])
def test_out_of_range_settings_exit_2_before_any_work(tmp_path, monkeypatch, capsys, setting, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(CONFIG), "--set", setting]) == 2
    assert _one_error_line(capsys).startswith(f"medseg: error: {CONFIG}: {message}")
    assert list(tmp_path.iterdir()) == []


def test_amp_off_reaches_the_engine_from_set_and_from_a_file(tmp_path, monkeypatch):
    import medseg.engine
    from medseg.engine import TrainResult

    seen = []

    def train(cfg, *, resume=False):
        seen.append((cfg.train.amp, cfg.train.channels_last))
        return TrainResult(run_dir=cfg.run_dir, best_metric=0.5, best_epoch=1, history=[],
                           test_metrics={}, task=cfg.task)

    monkeypatch.setattr(medseg.engine, "train", train)
    path = tmp_path / "off.yaml"
    path.write_text("train:\n  amp: off\n  channels_last: off\n")
    assert main(["train", str(CONFIG), "--set", "train.amp=off", "--set", "train.channels_last=off"]) == 0
    assert main(["train", str(path)]) == 0
    assert seen == [("off", "off"), ("off", "off")]
