"""Run configuration: typed dataclasses loaded from YAML, validated, with ``--set`` overrides.

Example:
    >>> cfg = load_config("configs/demo_lgg.yaml", overrides=["train.epochs=2", "seed=1"])
    >>> cfg.train.epochs
    2
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from medseg.errors import ConfigError
from medseg.files import write_text
from medseg.optim.settings import ZNORM_DEFAULTS, Granularity, check_znorm_settings
from medseg.tasks import TaskName, task_for_format


@dataclass
class DataConfig:
    """Where the data lives and how it is split and transformed."""

    format: Literal["lgg", "pcam"] = "lgg"
    root: str = "demo_data/lgg"
    image_size: int = 256
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_file: str | None = None  # reuse a split written by an earlier run
    augment: bool = True
    cache: bool = False  # MONAI CacheDataset for the deterministic part of the pipeline
    num_workers: int = 2
    max_samples: int | None = None  # cap per split (PCam subsets, quick runs)


@dataclass
class ModelConfig:
    """The network: ResNet-UNet for segmentation, ResNet for classification."""

    arch: Literal["unet", "resnet", "deep_resnet"] = "unet"
    encoder: str = "resnet50"
    encoder_weights: str | None = None  # None, "imagenet" (cached copy only) or a local file
    in_channels: int = 3
    depth: int = 20  # deep_resnet: residual blocks
    width: int = 32  # deep_resnet: channels
    bgn: bool = False  # a backward-gradient-normalization node after every residual block / decoder stage


@dataclass
class OptimConfig:
    """The optimizer from :func:`medseg.optim.build_optimizer`."""

    name: str = "adam+znorm"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    granularity: Granularity = ZNORM_DEFAULTS.granularity  # znorm
    eps: float = ZNORM_DEFAULTS.eps  # znorm / blocknorm (Adam keeps its own eps)
    min_ndim: int = ZNORM_DEFAULTS.min_ndim  # znorm / blocknorm
    max_norm: float = 1.0  # adam+clip
    clip_factor: float = 0.01  # adam+agc: largest gradient / weight norm ratio per unit


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = 10
    batch_size: int = 8
    accumulate: int = 1
    scheduler: Literal["cosine", "step", "none"] = "cosine"  # stepped per optimizer step
    warmup_epochs: int = 0  # linear warmup from lr/steps to lr
    lr_step_epochs: int | None = None  # step: decay every N epochs (default: a third of them)
    lr_gamma: float = 0.1  # step: the decay factor
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 on GPU, off on CPU
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on for GPU
    compile: bool = False
    device: str = "auto"  # auto, cpu, cuda, cuda:1
    deterministic: bool = True
    max_steps_per_epoch: int | None = None
    log_every: int = 10
    log_grad_stats: bool = False
    target_metric: float | None = None  # epochs-to-target in compare reports
    divergence_factor: float | None = 1000.0  # stop when a step loss exceeds this x the lowest smoothed loss (null: off)
    max_nonfinite_steps: int = 10  # consecutive steps with non-finite gradients skipped before stopping


@dataclass
class OutputConfig:
    """Where the run is written: ``dir`` defaults to ``models/<run_name>``."""

    run_name: str = "run"
    dir: str | None = None


@dataclass
class Config:
    """A whole run. ``task`` follows from ``data.format``."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def task(self) -> TaskName:
        """The name of the task ``data.format`` trains (see :mod:`medseg.tasks`)."""
        return task_for_format(self.data.format).name

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir) if self.output.dir else Path("models") / self.output.run_name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_value(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` converted to ``annotation`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {annotation}")


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; valid keys{' of ' + where if where else ''}: "
            f"{', '.join(sorted(valid))}"
        )
    kwargs = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, key)
        else:
            kwargs[name] = _check_value(value, hints[name], key)
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config`.

    A leading ``~`` in ``data.root``, ``data.split_file`` and ``output.dir`` is expanded to
    the home folder (shells leave ``--set data.root=~/data`` unexpanded).

    Raises:
        ConfigError: on an unknown key (the message lists the valid ones) or a wrong type.
    """
    cfg = _build(Config, raw, "")
    _check_ranges(cfg)
    cfg.data.root = os.path.expanduser(cfg.data.root)
    if cfg.data.split_file is not None:
        cfg.data.split_file = os.path.expanduser(cfg.data.split_file)
    if cfg.output.dir is not None:
        cfg.output.dir = os.path.expanduser(cfg.output.dir)
    return cfg


def _check_ranges(cfg: Config) -> None:
    task = task_for_format(cfg.data.format)
    checks = [
        (cfg.data.image_size >= 32 and cfg.data.image_size % 32 == 0,
         "data.image_size must be a multiple of 32 and at least 32"),
        (0 <= cfg.data.val_fraction < 1 and 0 <= cfg.data.test_fraction < 1
         and cfg.data.val_fraction + cfg.data.test_fraction < 1,
         "data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1"),
        (cfg.data.num_workers >= 0, "data.num_workers must be >= 0"),
        (cfg.data.max_samples is None or cfg.data.max_samples > 0, "data.max_samples must be > 0"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (cfg.optim.max_norm > 0, "optim.max_norm must be > 0"),
        (cfg.optim.clip_factor > 0, "optim.clip_factor must be > 0"),
        (not (cfg.model.bgn and cfg.train.amp == "fp16"),
         "model.bgn does not work with train.amp fp16: its nodes discard the loss scale that "
         "fp16's GradScaler divides out again; use bf16 or off"),
        (cfg.train.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.train.accumulate >= 1, "train.accumulate must be >= 1"),
        (cfg.train.warmup_epochs >= 0, "train.warmup_epochs must be >= 0"),
        (cfg.train.lr_step_epochs is None or cfg.train.lr_step_epochs >= 1,
         "train.lr_step_epochs must be >= 1"),
        (0 < cfg.train.lr_gamma <= 1, "train.lr_gamma must be in (0, 1]"),
        (cfg.train.max_steps_per_epoch is None or cfg.train.max_steps_per_epoch >= 1,
         "train.max_steps_per_epoch must be >= 1"),
        (cfg.train.log_every >= 1, "train.log_every must be >= 1"),
        (cfg.train.divergence_factor is None or cfg.train.divergence_factor > 1,
         "train.divergence_factor must be > 1 (or null to turn the check off)"),
        (cfg.train.max_nonfinite_steps >= 0, "train.max_nonfinite_steps must be >= 0"),
        (cfg.model.arch in task.architectures,
         f"model.arch {cfg.model.arch!r} does not serve data.format {cfg.data.format!r} "
         f"({task.name}); choose one of {', '.join(task.architectures)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    try:
        check_znorm_settings(cfg.optim.granularity, cfg.optim.eps, cfg.optim.min_ndim, prefix="optim.")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config mapping; values are parsed as YAML.

    Raises:
        ConfigError: when an override is not of the form ``key=value``.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def _read_config_file(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file.

    Errors name the file and the problem, never its content: a wrong file passed by mistake
    (a binary, a key file) is not echoed to the terminal.

    Raises:
        ConfigError: when the file is missing, unreadable, binary, not UTF-8, not valid YAML,
            not a mapping, or has none of the config's sections at the top level.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    if b"\x00" in data:
        raise ConfigError(f"{path}: a binary file, not a YAML config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte at offset {err.start}); configs are YAML text") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    sections = sorted(f.name for f in fields(Config))
    if loaded and not any(isinstance(key, str) and key in sections for key in loaded):
        raise ConfigError(
            f"{path}: not a medseg config: none of its top-level keys is a section "
            f"({', '.join(sections)})"
        )
    return loaded


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate.

    Raises:
        ConfigError: when the file is missing, unreadable, not a YAML mapping of config
            sections (these messages never quote the file's content), or fails validation.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = _read_config_file(path)
    raw = apply_overrides(raw, list(overrides or []))
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
