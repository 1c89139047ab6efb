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
    ("train.lr_gamma=2", "train.lr_gamma must be <= 1, got 2.0"),
    ("train.lr_step_epochs=0", "train.lr_step_epochs must be >= 1"),
    ("data.image_size=100", "multiple of 32"),
    ("model.arch=resnet", "model.arch 'resnet' does not serve data.format 'lgg' (segmentation); choose one of unet"),
    ("train.epochs=3 train.epochs.x=1", "epochs is not a section"),
    ("trian.epochs=1", "unknown key trian"),
    ("optim.eps=0", "optim.eps must be a positive finite number, got 0.0"),
    ("optim.eps=.inf", "optim.eps: expected a finite number, got inf"),
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


# --- issue 22: every value checked by type and range before use ------------------------


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", ".", "..", "a/b", ".hidden", "my run"])
def test_run_name_is_one_plain_folder_name(name):
    with pytest.raises(ConfigError, match=r"^output\.run_name: .* is not a plain name"):
        load_config(None, [f"output.run_name={name}"])


def test_run_names_that_compare_makes_and_an_explicit_output_dir_are_allowed(tmp_path):
    assert load_config(None, ["output.run_name=adam+znorm-seed0"]).run_dir == Path("models/adam+znorm-seed0")
    outside = tmp_path.parent / "elsewhere"  # output.dir is the user's own choice of folder
    assert load_config(None, [f"output.dir={outside}"]).run_dir == outside


@pytest.mark.parametrize(("content", "key"), [
    ("1: 2\nfoo: 3\ntrain: {epochs: 1}\n", "unknown key 1; valid keys: data,"),
    ("train:\n  1: 2\n  foo: 3\n", "unknown key train.1; valid keys of train: accumulate,"),
    ("train:\n  epochs: 2\n  null: 3\n", "unknown key train.None; valid keys of train:"),
    ("data:\n  2024-01-01: 1\n  root: x\n", "unknown key data.2024-01-01; valid keys of data:"),
    ("train:\n  epochs: {1: 2, foo: 3}\n", "train.epochs: expected an integer, got {1: 2, 'foo': 3}"),
    (f"train:\n  {'k' * 1000}: 1\n", f"unknown key train.{'k' * 80}; valid keys of train:"),
])
def test_keys_of_mixed_yaml_types_are_named_not_compared(tmp_path, content, key):
    path = tmp_path / "mixed.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}") and "\n" not in message and len(message) < 600


@pytest.mark.parametrize(("override", "message"), [
    ("seed=18446744073709551617", "seed must be <= 4294967295, got 18446744073709551617"),
    ("seed=-1", "seed must be >= 0, got -1"),
    ("model.in_channels=1", "model.in_channels must be 3, got 1: LGG slices and PCam patches are RGB"),
    ("model.in_channels=0", "model.in_channels must be 3, got 0"),
    ("data.image_size=1048576", "data.image_size must be <= 4096, got 1048576"),
    ("data.image_size=4128", "data.image_size must be <= 4096, got 4128"),
    ("data.image_size=48", "data.image_size must be a multiple of 32, got 48"),
    ("data.num_workers=100000", "data.num_workers must be <= 256, got 100000"),
    ("data.max_samples=0", "data.max_samples must be >= 1, got 0"),
    ("data.val_fraction=-0.1", "data.val_fraction must be >= 0, got -0.1"),
    ("data.val_fraction=0.5 data.test_fraction=0.5",
     "data.val_fraction + data.test_fraction must be below 1, got 0.5 + 0.5"),
    ("data.root=''", "data.root: an empty string"),
    ("model.encoder_weights=''", "model.encoder_weights: an empty string"),
    ("model.encoder=18", "model.encoder: expected a string, got 18 (put it in quotes to keep it as text)"),
    ("model.depth=0", "model.depth must be >= 1, got 0"),
    ("model.width=1000000", "model.width must be <= 1024, got 1000000"),
    ("optim.lr=.nan", "optim.lr: expected a finite number, got nan"),
    ("optim.lr=-.inf", "optim.lr: expected a finite number, got -inf"),
    ("optim.weight_decay=-1", "optim.weight_decay must be >= 0, got -1.0"),
    ("optim.momentum=1", "optim.momentum must be < 1, got 1.0"),
    ("optim.max_norm=0", "optim.max_norm must be > 0, got 0.0"),
    ("optim.clip_factor=-1", "optim.clip_factor must be > 0, got -1.0"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.batch_size=100000000", "train.batch_size must be <= 4096, got 100000000"),
    ("train.accumulate=0", "train.accumulate must be >= 1, got 0"),
    ("train.warmup_epochs=-1", "train.warmup_epochs must be >= 0, got -1"),
    ("train.max_steps_per_epoch=0", "train.max_steps_per_epoch must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every must be >= 1, got 0"),
    ("train.target_metric=2", "train.target_metric must be <= 1, got 2.0"),
    ("train.divergence_factor=1", "train.divergence_factor must be > 1, got 1.0 (or null to turn the check off)"),
    ("train.max_nonfinite_steps=-1", "train.max_nonfinite_steps must be >= 0, got -1"),
    ("train.epochs=" + "9" * 500, "train.epochs must be <= 2147483647, got 99999"),
    ("train.warmup_epochs=2147483648", "train.warmup_epochs must be <= 2147483647, got 2147483648"),
])
def test_values_out_of_range_are_refused_by_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, override.split(" "))
    assert message in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("override", [
    "seed=4294967295", "data.image_size=4096", "data.image_size=32", "data.num_workers=0",
    "optim.momentum=0", "optim.weight_decay=0", "train.lr_gamma=1", "train.target_metric=0",
    "train.batch_size=4096", "model.in_channels=3",
])
def test_the_bounds_themselves_are_allowed(override):
    load_config(None, [override])


def test_every_number_setting_declares_its_range():
    """A new int or float setting cannot skip validation: its field declares a Range (an
    integer's with an upper bound) or names the rule elsewhere that checks it, and every
    default lies in its range."""
    import dataclasses
    import typing

    def settings(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[spec.name]):
                yield from settings(hints[spec.name], f"{spec.name}.")
            else:
                yield f"{prefix}{spec.name}", spec, {hints[spec.name], *typing.get_args(hints[spec.name])}

    unchecked = []
    for key, spec, types in settings(Config):
        bounds = spec.metadata.get("range")
        if "checked_by" in spec.metadata or not {int, float} & types:
            continue
        if bounds is None or (int in types and bounds.high is None):
            unchecked.append(key)
        elif spec.default is not None:
            bounds.check(spec.default, key)
    assert unchecked == []


def test_the_seed_bound_is_numpys():
    import numpy as np

    from medseg.config import MAX_SEED

    np.random.seed(MAX_SEED)
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)


def test_only_three_channels_reach_the_model():
    """The one in_channels a run accepts is the channel count both pipelines produce."""
    import numpy as np

    from medseg.config import IMAGE_CHANNELS
    from medseg.data.pcam import PATCH_SHAPE
    from medseg.data.preprocess import preprocess_image
    from medseg.errors import DataError

    assert preprocess_image(np.zeros((40, 40, 3), np.uint8), 32).shape[0] == IMAGE_CHANNELS
    assert PATCH_SHAPE[-1] == IMAGE_CHANNELS
    with pytest.raises(DataError):
        preprocess_image(np.zeros((40, 40, 1), np.uint8), 32)


# --- issue 29 item 6: documented words that YAML reads as booleans --------------------------


@pytest.mark.parametrize(("setting", "word", "expected"), [
    ("train.amp", "off", "off"), ("train.amp", "Off", "off"), ("train.amp", "no", "off"),
    ("train.channels_last", "off", "off"), ("train.channels_last", "on", "on"),
    ("train.channels_last", "yes", "on"), ("train.amp", "bf16", "bf16"),
])
def test_boolean_words_of_enumerated_settings_work_in_set_and_in_a_file(tmp_path, setting, word, expected):
    section, key = setting.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  {key}: {word}\n")
    from_file, from_set = load_config(path), load_config(None, [f"{setting}={word}"])
    assert getattr(getattr(from_file, section), key) == expected
    assert getattr(getattr(from_set, section), key) == expected
    save_config(from_set, tmp_path / "saved.yaml")  # and the saved config reads back the same
    assert load_config(tmp_path / "saved.yaml") == from_set


@pytest.mark.parametrize(("override", "message"), [
    ("train.amp=on", "train.amp: True is not one of 'auto', 'bf16', 'fp16', 'off'"),
    ("train.amp=true", "train.amp: True is not one of"),
    ("optim.granularity=off", "optim.granularity: False is not one of 'tensor', 'channel'"),
    ("train.compile=off", None),  # a true boolean setting takes the words as YAML booleans
])
def test_boolean_words_map_back_only_where_the_setting_allows_them(override, message):
    if message is None:
        assert load_config(None, [override]).train.compile is False
        return
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)
