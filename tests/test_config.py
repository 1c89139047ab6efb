"""Config loading: validation, overrides, the shipped configs, round trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medseg.config import Config, config_from_dict, load_config, save_config
from medseg.errors import ConfigError
from medseg.tasks import task_for_format

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_no_file_gives_the_defaults_and_derived_fields():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.task == task_for_format(cfg.data.format).name
    assert cfg.run_dir == Path("models") / cfg.output.run_name  # no output.dir: models/<run_name>
    assert load_config(None, ["output.dir=elsewhere/r1"]).run_dir == Path("elsewhere/r1")


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
    ("model.arch=resnet", "model.arch 'resnet' does not serve data.format 'lgg' (segmentation); choose one of unet"),
    ("train.epochs=3 train.epochs.x=1", "epochs is not a section"),
    ("trian.epochs=1", "unknown key trian"),
    ("optim.eps=0", "optim.eps must be a positive finite number, got 0.0"),
    ("optim.eps=.inf", "optim.eps must be a positive finite number, got inf"),
    ("optim.min_ndim=0", "optim.min_ndim must be an integer >= 1, got 0"),
    ("optim.granularity=layer", "optim.granularity: 'layer' is not one of 'tensor', 'channel'"),
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
    assert cfg.model.encoder_weights is None  # nothing is downloaded
    assert cfg.output.run_name == name  # `medseg train configs/<name>.yaml` writes models/<name>


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_builds_its_model(path):
    """Each config's network is built for its task and maps a batch at the config's image
    size to its task's logits (on the meta device: shapes only, nothing allocated)."""
    import torch

    from medseg.models import build_model

    cfg = load_config(path)
    size = cfg.data.image_size
    with torch.device("meta"):
        logits = build_model(cfg.model, cfg.task)(torch.zeros(2, 3, size, size))
    expected = (2, 1, size, size) if cfg.task == "segmentation" else (2, 1)
    assert tuple(logits.shape) == expected


def test_the_app_opens_what_the_demo_configs_train(monkeypatch):
    from medseg.app import settings

    for name in (settings.MODELS_DIR_ENV, settings.LGG_DIR_ENV, settings.PCAM_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    demo_lgg, demo_pcam = (load_config(CONFIGS / f"{name}.yaml") for name in ("demo_lgg", "demo_pcam"))
    assert Path(demo_lgg.data.root) == settings.lgg_dir()
    assert Path(demo_pcam.data.root) == settings.pcam_dir()
    assert demo_lgg.run_dir.parent == demo_pcam.run_dir.parent == settings.models_dir()


def test_every_section_is_a_dataclass_with_defaults():
    assert Config() == config_from_dict({})


def test_znorm_settings_default_to_the_optimizers_own_and_load_without_torch():
    from medseg.optim.settings import ZNORM_DEFAULTS

    optim = Config().optim
    assert (optim.granularity, optim.eps, optim.min_ndim) == ("tensor", 1e-8, 2)
    assert (optim.granularity, optim.eps, optim.min_ndim) == (
        ZNORM_DEFAULTS.granularity, ZNORM_DEFAULTS.eps, ZNORM_DEFAULTS.min_ndim)
    code = "import sys, medseg.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
