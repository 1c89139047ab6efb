"""Config loading: validation, overrides, the shipped configs, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config import Config, config_from_dict, load_config, save_config
from medseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults():
    cfg = load_config(None)
    assert cfg.task == "segmentation" and cfg.run_dir == Path("models") / "run"
    assert cfg.optim.name == "adam+znorm" and cfg.train.amp == "auto"


def test_misspelt_key_lists_the_valid_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: unknown key train.epoch; valid keys of train:")
    assert "epochs" in message and "batch_size" in message


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["train.epochs=5", "optim.lr=1e-4", "data.max_samples=null",
                             "train.amp=bf16", "output.run_name=x", "seed=7", "train.compile=true"])
    assert cfg.train.epochs == 5 and cfg.optim.lr == 1e-4 and cfg.data.max_samples is None
    assert cfg.train.amp == "bf16" and cfg.run_dir == Path("models/x") and cfg.seed == 7
    assert cfg.train.compile is True


@pytest.mark.parametrize(("override", "message"), [
    ("train.epochs", "expected KEY=VALUE"),
    ("train.epochs=abc", "train.epochs: expected an integer, got 'abc'"),
    ("train.amp=fp8", "train.amp: 'fp8' is not one of"),
    ("train.lr_gamma=2", "train.lr_gamma must be in (0, 1]"),
    ("train.lr_step_epochs=0", "train.lr_step_epochs must be >= 1"),
    ("data.image_size=100", "multiple of 32"),
    ("model.arch=resnet", "model.arch 'unet' goes with data.format 'lgg'"),
    ("train.epochs=3 train.epochs.x=1", "epochs is not a section"),
    ("trian.epochs=1", "unknown key trian"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, override.split(" "))
    assert message in str(err.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "broken.yaml").write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 3\)"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(tmp_path / "list.yaml")


def test_save_and_dict_round_trips(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "data.format=pcam", "model.arch=resnet"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").to_dict() == cfg.to_dict()
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.task == "classification"


def test_home_folder_is_expanded():
    cfg = load_config(None, ["data.root=~/data/kaggle_3m", "output.dir=~/runs/a"])
    assert cfg.data.root == str(Path.home() / "data/kaggle_3m")
    assert cfg.run_dir == Path.home() / "runs/a"


@pytest.mark.parametrize("name", ["lgg_resnet50_unet", "pcam_resnet50", "demo_lgg", "demo_pcam"])
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.optim.name == "adam+znorm"
    assert cfg.model.encoder_weights is None  # nothing is downloaded
    assert cfg.output.run_name == name


def test_shipped_configs_are_sized_for_their_machines():
    lgg = load_config(CONFIGS / "lgg_resnet50_unet.yaml")
    assert (lgg.task, lgg.model.encoder, lgg.data.image_size) == ("segmentation", "resnet50", 256)
    assert 16 <= lgg.train.batch_size <= 32 and lgg.train.epochs >= 40
    pcam = load_config(CONFIGS / "pcam_resnet50.yaml")
    assert (pcam.task, pcam.model.arch, pcam.model.encoder) == ("classification", "resnet", "resnet50")
    demo = load_config(CONFIGS / "demo_lgg.yaml")
    assert (demo.model.encoder, demo.data.image_size, demo.data.root) == ("resnet50", 128, "demo_data/lgg")
    demo_pcam = load_config(CONFIGS / "demo_pcam.yaml")
    assert demo_pcam.data.root == "demo_data/pcam" and demo_pcam.data.max_samples is not None


def test_every_section_is_a_dataclass_with_defaults():
    assert Config() == config_from_dict({})
