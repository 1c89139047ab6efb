"""Run configuration: typed dataclasses loaded from YAML, validated, with ``--set`` overrides.

Example:
    >>> cfg = load_config("configs/demo_lgg.yaml", overrides=["train.epochs=2", "seed=1"])
    >>> cfg.train.epochs
    2
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from medseg.errors import ConfigError, DataError
from medseg.files import write_text
from medseg.optim.settings import ZNORM_DEFAULTS, Granularity, check_znorm_settings
from medseg.paths import plain_name, regular_file
from medseg.tasks import TaskName, task_for_format

#: the largest ``seed``: numpy seeds its generator with 0 <= seed < 2**32, and MONAI's
#: ``set_determinism`` reduces any seed modulo 2**32
MAX_SEED = 2**32 - 1
#: the channels of every image medseg trains on: LGG slices (pre-contrast, FLAIR,
#: post-contrast) and PCam patches are RGB, and so is every upload the app and predict give
IMAGE_CHANNELS = 3
#: the largest ``data.image_size``: one 4096 x 4096 RGB slice is 200 MB as float32 before
#: the network's activations; LGG slices are 256 x 256
MAX_IMAGE_SIZE = 4096
#: the largest count that has no natural bound (epochs, steps, samples): a C ``int``, which
#: every torch and numpy argument takes
MAX_COUNT = 2**31 - 1
#: YAML 1.1 reads these words as booleans (in files and in ``--set`` values alike)
_YAML_BOOLEAN_WORDS = {True: ("yes", "true", "on"), False: ("no", "false", "off")}


@dataclass(frozen=True)
class Range:
    """The values a number setting may take; the rule :func:`config_from_dict` applies.

    Attributes:
        low: the smallest value (``None``: no lower bound); excluded when ``low_open``.
        high: the largest value (``None``: no upper bound); excluded when ``high_open``.
        multiple_of: the value must be a multiple of this.
        why: appended to the message when the value is refused.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    multiple_of: int | None = None
    why: str = ""

    def check(self, value: float, key: str) -> None:
        """Raise a one-line ConfigError naming ``key`` and the bound ``value`` breaks.

        Example:
            >>> Range(low=0, low_open=True, high=1).check(2.0, "train.lr_gamma")
            Traceback (most recent call last):
            medseg.errors.ConfigError: train.lr_gamma must be <= 1, got 2.0
        """
        if self.low is not None and self.low == self.high:
            rule = f"be {self.low}" if value != self.low else ""
        elif self.low is not None and (value <= self.low if self.low_open else value < self.low):
            rule = f"be {'>' if self.low_open else '>='} {self.low}"
        elif self.high is not None and (value >= self.high if self.high_open else value > self.high):
            rule = f"be {'<' if self.high_open else '<='} {self.high}"
        elif self.multiple_of is not None and value % self.multiple_of:
            rule = f"be a multiple of {self.multiple_of}"
        else:
            rule = ""
        if rule:
            raise ConfigError(f"{key} must {rule}, got {_shown(value)}{self.why}")


def setting(default: Any, **bounds: Any) -> Any:
    """A dataclass field holding ``default`` whose values must lie in ``Range(**bounds)``."""
    return field(default=default, metadata={"range": Range(**bounds)})


def checked_by(default: Any, rule: str) -> Any:
    """A dataclass field whose values a rule outside this module checks (named for readers)."""
    return field(default=default, metadata={"checked_by": rule})


@dataclass
class DataConfig:
    """Where the data lives and how it is split and transformed."""

    format: Literal["lgg", "pcam"] = "lgg"
    root: str = "demo_data/lgg"
    image_size: int = setting(256, low=32, high=MAX_IMAGE_SIZE, multiple_of=32)  # U-Net: 5 halvings
    val_fraction: float = setting(0.1, low=0, high=1, high_open=True)
    test_fraction: float = setting(0.1, low=0, high=1, high_open=True)
    split_file: str | None = None  # reuse a split written by an earlier run
    augment: bool = True
    cache: bool = False  # MONAI CacheDataset for the deterministic part of the pipeline
    num_workers: int = setting(2, low=0, high=256)
    max_samples: int | None = setting(None, low=1, high=MAX_COUNT)  # cap per split (PCam subsets, quick runs)


@dataclass
class ModelConfig:
    """The network: ResNet-UNet for segmentation, ResNet for classification."""

    arch: Literal["unet", "resnet", "deep_resnet"] = "unet"
    encoder: str = "resnet50"
    encoder_weights: str | None = None  # None, "imagenet" (cached copy only) or a local file
    in_channels: int = setting(IMAGE_CHANNELS, low=IMAGE_CHANNELS, high=IMAGE_CHANNELS,
                               why=": LGG slices and PCam patches are RGB images, and only 3 "
                                   "channels reach the model end to end")
    depth: int = setting(20, low=1, high=1000)  # deep_resnet: residual blocks
    width: int = setting(32, low=1, high=1024)  # deep_resnet: channels
    bgn: bool = False  # a backward-gradient-normalization node after every residual block / decoder stage


@dataclass
class OptimConfig:
    """The optimizer from :func:`medseg.optim.build_optimizer`."""

    name: str = "adam+znorm"
    lr: float = setting(1e-3, low=0, low_open=True)
    weight_decay: float = setting(0.0, low=0)
    momentum: float = setting(0.9, low=0, high=1, high_open=True)  # sgd only
    granularity: Granularity = ZNORM_DEFAULTS.granularity  # znorm
    # znorm / blocknorm (Adam keeps its own eps)
    eps: float = checked_by(ZNORM_DEFAULTS.eps, "medseg.optim.settings.check_znorm_settings")
    min_ndim: int = checked_by(ZNORM_DEFAULTS.min_ndim, "medseg.optim.settings.check_znorm_settings")
    max_norm: float = setting(1.0, low=0, low_open=True)  # adam+clip
    # adam+agc: largest gradient / weight norm ratio per unit
    clip_factor: float = setting(0.01, low=0, low_open=True)


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = setting(10, low=1, high=MAX_COUNT)
    batch_size: int = setting(8, low=1, high=4096)
    accumulate: int = setting(1, low=1, high=MAX_COUNT)
    scheduler: Literal["cosine", "step", "none"] = "cosine"  # stepped per optimizer step
    warmup_epochs: int = setting(0, low=0, high=MAX_COUNT)  # linear warmup from lr/steps to lr
    lr_step_epochs: int | None = setting(None, low=1, high=MAX_COUNT)  # step: decay every N epochs (default: a third of them)
    lr_gamma: float = setting(0.1, low=0, low_open=True, high=1)  # step: the decay factor
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 on GPU and on a CPU with native bf16, else off
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on for GPU, and with auto's bf16 on a CPU
    compile: bool = False
    device: str = "auto"  # auto, cpu, cuda, cuda:1
    deterministic: bool = True
    max_steps_per_epoch: int | None = setting(None, low=1, high=MAX_COUNT)
    log_every: int = setting(10, low=1, high=MAX_COUNT)
    log_grad_stats: bool = False
    target_metric: float | None = setting(None, low=0, high=1)  # epochs-to-target in compare reports
    # stop when a step loss exceeds this x the lowest smoothed loss (null: off)
    divergence_factor: float | None = setting(1000.0, low=1, low_open=True,
                                              why=" (or null to turn the check off)")
    max_nonfinite_steps: int = setting(10, low=0, high=MAX_COUNT)  # consecutive steps with non-finite gradients skipped before stopping


@dataclass
class OutputConfig:
    """Where the run is written: ``dir`` defaults to ``models/<run_name>``."""

    run_name: str = "run"
    dir: str | None = None


@dataclass
class Config:
    """A whole run. ``task`` follows from ``data.format``."""

    seed: int = setting(0, low=0, high=MAX_SEED)
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


def _shown(value: Any) -> str:
    """``repr(value)``, cut to 80 characters: a message stays one short line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _literal_word(value: Any, allowed: tuple[Any, ...]) -> Any:
    """The allowed word that YAML 1.1 read as the boolean ``value`` (``off`` -> False ->
    ``"off"``), when exactly one allowed word reads so; else ``value`` unchanged."""
    if not isinstance(value, bool):
        return value
    words = [word for word in allowed if isinstance(word, str) and word.lower() in _YAML_BOOLEAN_WORDS[value]]
    return words[0] if len(words) == 1 else value


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
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {_shown(value)}")
    if origin is Literal:
        allowed = typing.get_args(annotation)
        value = _literal_word(value, allowed)
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{where}: {_shown(value)} is not one of {', '.join(map(repr, allowed))}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_shown(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_shown(value)}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            scalar = isinstance(value, (int, float, datetime.date))  # YAML typed a bare word
            hint = " (put it in quotes to keep it as text)" if scalar else ""
            raise ConfigError(f"{where}: expected a string, got {_shown(value)}{hint}")
        if not value.strip():
            raise ConfigError(f"{where}: an empty string; leave the key out (or null where allowed)")
        return value
    raise ConfigError(f"{where}: unsupported type {annotation}")


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    # keys of any YAML type (1, null, a date) sort by their text: no comparison error
    unknown = sorted((key for key in raw if not isinstance(key, str) or key not in known), key=str)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{str(unknown[0])[:80]}; valid keys{' of ' + where if where else ''}: "
            f"{', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, key)
            continue
        kwargs[name] = _check_value(value, hints[name], key)
        bounds = known[name].metadata.get("range")
        if bounds is not None and kwargs[name] is not None:
            bounds.check(kwargs[name], key)
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config`.

    Every value is checked by type, then by the :class:`Range` its field declares, then by
    the rules that tie settings together; ``output.run_name`` must be a plain folder name
    (:func:`medseg.paths.plain_name`): the run is written to ``models/<run_name>``. A leading
    ``~`` in ``data.root``, ``data.split_file`` and ``output.dir`` is expanded to the home
    folder (shells leave ``--set data.root=~/data`` unexpanded).

    Raises:
        ConfigError: one line naming the key: an unknown key (the message lists the valid
            ones), a wrong type, a value out of range, or settings that do not go together.
    """
    cfg = _build(Config, raw, "")
    plain_name(cfg.output.run_name, "output.run_name")
    _check_combinations(cfg)
    cfg.data.root = os.path.expanduser(cfg.data.root)
    if cfg.data.split_file is not None:
        cfg.data.split_file = os.path.expanduser(cfg.data.split_file)
    if cfg.output.dir is not None:
        cfg.output.dir = os.path.expanduser(cfg.output.dir)
    return cfg


def _check_combinations(cfg: Config) -> None:
    """The rules between settings (each value's own range is its field's :class:`Range`)."""
    task = task_for_format(cfg.data.format)
    checks = [
        (cfg.data.val_fraction + cfg.data.test_fraction < 1,
         "data.val_fraction + data.test_fraction must be below 1, got "
         f"{cfg.data.val_fraction} + {cfg.data.test_fraction}"),
        (not (cfg.model.bgn and cfg.train.amp == "fp16"),
         "model.bgn does not work with train.amp fp16: its nodes discard the loss scale that "
         "fp16's GradScaler divides out again; use bf16 or off"),
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
            not a mapping, or has none of the config's sections at the top level; when it
            is not a regular file (a FIFO or a device is never opened).
    """
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = regular_file(path).read_bytes()
    except DataError as err:  # a folder, a FIFO, a device: never opened
        raise ConfigError(f"{err} (a config is a YAML file)") from None
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


#: top-level sections of a config file that a command reads, not training: ``medseg compare
#: --tune`` reads ``tune:`` (:func:`command_section`); :func:`load_config` leaves them out
COMMAND_SECTIONS = ("tune",)


def command_section(path: str | Path, name: str) -> Any:
    """The ``name`` section of the YAML config at ``path`` (one of :data:`COMMAND_SECTIONS`),
    None when the file has none; read with :func:`load_config`'s checks.

    Raises:
        ConfigError: as :func:`load_config` for an unreadable or malformed file.
    """
    return _read_config_file(Path(path)).get(name)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate.
    The :data:`COMMAND_SECTIONS` of the file are left out.

    Raises:
        ConfigError: when the file is missing, unreadable, not a YAML mapping of config
            sections (these messages never quote the file's content), or fails validation.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = {key: value for key, value in _read_config_file(path).items()
               if key not in COMMAND_SECTIONS}
    raw = apply_overrides(raw, list(overrides or []))
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
