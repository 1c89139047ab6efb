"""Checkpoints: plain-value dicts written atomically and read with ``weights_only=True``.

A checkpoint holds only tensors, numbers, strings, booleans, None, lists, tuples and dicts,
so loading one never runs code from the file: ``torch.load(weights_only=True)`` refuses
anything else, and :func:`load_checkpoint` turns that refusal into a :class:`CheckpointError`.

:func:`load_checkpoint` then checks every field a reader uses by type and range (the model's
fields always, those of a resume when asked), so that a damaged or foreign file is refused in
one line naming the field instead of failing later. Weights are float32, the dtype of every
network medseg builds: float16 and bfloat16 are widened to it (exactly: float32 holds each of
their values), any other floating dtype is refused (float64 would be rounded silently), and
so is a non-finite weight: a non-finite model is refused, not scored.

Example:
    >>> save_checkpoint({"model": model.state_dict(), ...}, "models/run/last.pt")
    >>> loaded = load_model("models/run/best.pt")
    >>> loaded.model(images)
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import random
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.config import Config, config_from_dict
from medseg.engine.records import os_reason, write_failure
from medseg.errors import CheckpointError, MedsegError
from medseg.files import atomic_path, atomic_write
from medseg.tasks import TASKS

#: the object named in torch's refusals: "Unsupported global: GLOBAL x.y was not an allowed
#: global" and "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
_UNSAFE_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) (\S+)")
#: how torch's pre-1.6 (non-zip) format begins: its magic number, pickled
_LEGACY_TORCH_HEAD = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
_PLAIN_TYPES = (torch.Tensor, int, float, bool, str, bytes, type(None))
#: the dtype of every network medseg builds (AMP casts per operation, never the weights)
MODEL_DTYPE = torch.float32
#: floating dtypes whose every value :data:`MODEL_DTYPE` holds exactly: widened on load
WIDENED_EXACTLY = (torch.float16, torch.bfloat16)
#: a field's check: the problem with its value (``"must be ..."``) given the whole payload, or None
FieldCheck = Callable[[Any, Mapping[str, Any]], "str | None"]


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError when ``value`` holds anything but tensors and plain values."""
    if isinstance(value, _PLAIN_TYPES):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}, not a plain value")


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (see :mod:`medseg.files`): a crash or a failed
    write leaves the old file intact.

    Raises:
        TypeError: when ``payload`` holds something other than plain values and tensors.
        CheckpointError: when the file cannot be written (e.g. no space left on device).
    """
    path = Path(path)
    _check_plain(payload, "payload")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as handle:
            torch.save(payload, handle)
    except OSError as err:
        raise CheckpointError(write_failure(path, err)) from None
    return path


def copy_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` a copy of the checkpoint ``source``, atomically.

    A hard link when the file system allows it (no bytes copied: checkpoints are only ever
    replaced, never modified in place, so the two names stay independent), else a copy.

    Raises:
        CheckpointError: when the copy cannot be written; ``target`` stays as it was.
    """
    source, target = Path(source), Path(target)
    try:
        with atomic_path(target) as tmp:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
    except OSError as err:
        raise CheckpointError(
            f"{target}: cannot copy {source} to it: {os_reason(err)} (the previous file is intact)"
        ) from None
    return target


def _unreadable(path: Path) -> str:
    """The message for a file torch cannot load; a bare pickle stream (``torch.save`` writes a
    zip archive, or before torch 1.6 a stream opening with its magic number) is named."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_LEGACY_TORCH_HEAD))
    except OSError as err:
        return f"{path}: not a readable checkpoint ({err.strerror or err})"
    raw = len(head) >= 2 and head[:1] == pickle.PROTO and head != _LEGACY_TORCH_HEAD
    if raw and not zipfile.is_zipfile(path):
        return (f"{path}: not a readable checkpoint: a plain pickle (protocol {head[1]}), not a "
                "torch.save file as medseg train writes")
    return f"{path}: not a readable checkpoint (corrupt, truncated or not a torch file)"


def load_checkpoint(path: str | Path, *, mmap: bool = False, resume: bool = False) -> dict[str, Any]:
    """Read a medseg checkpoint onto the CPU with ``torch.load(weights_only=True)`` and check
    its fields (:func:`check_payload`).

    Args:
        path: the ``.pt`` file.
        mmap: map the tensors' bytes from the file (copy-on-write) instead of reading them
            all first; on POSIX systems only (elsewhere a mapped file could not be replaced by
            the next checkpoint while the tensors live).
        resume: also check every field a resume reads (optimizer, schedule, scaler, random
            generators, progress, history).

    Raises:
        CheckpointError: when the file is missing, unreadable, truncated or corrupt, a plain
            pickle rather than a torch file, holds pickled objects other than tensors and
            plain values (the message names the first; nothing in it is run), is not a
            medseg checkpoint, or a field fails :func:`check_payload`.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint file (a folder or a special file)")
    try:
        with warnings.catch_warnings():  # torch warns about raw pickles before refusing them
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True,
                                 mmap=mmap and os.name == "posix")
    except pickle.UnpicklingError as err:
        unsafe = _UNSAFE_GLOBAL.search(str(err))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: the file holds a pickled {unsafe.group(1)} object, not only "
                "tensors and plain values (nothing from it was run)"
            ) from None
        raise CheckpointError(_unreadable(path)) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError):
        raise CheckpointError(_unreadable(path)) from None
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a medseg checkpoint (expected keys {', '.join(REQUIRED_KEYS)})")
    return check_payload(payload, path, resume=resume)


# --- what each field must be --------------------------------------------------------------


def _is_whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_mapping(value: Any, item: Callable[[Any], bool]) -> bool:
    """Whether ``value`` is a dict of string keys whose every value passes ``item``."""
    return isinstance(value, dict) and all(isinstance(k, str) and item(v) for k, v in value.items())


def _rule(test: Callable[[Any], bool], problem: str) -> FieldCheck:
    """A check of a value alone: ``problem`` when ``test`` fails."""
    return lambda value, payload: None if test(value) else problem


def _is_optimizer_state(value: Any) -> bool:
    """``Optimizer.state_dict()``: per-parameter ``state`` and at least one parameter group."""
    if not isinstance(value, dict) or not isinstance(value.get("state"), dict):
        return False
    groups = value.get("param_groups")
    return (isinstance(groups, list) and len(groups) > 0
            and all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups))


def _is_scaler_state(value: Any) -> bool:
    """``GradScaler.state_dict()``: empty when scaling is off, else its five settings."""
    if not isinstance(value, dict) or not value:
        return isinstance(value, dict)
    scale: Any = value.get("scale")
    return (_is_number(scale) and math.isfinite(scale) and scale > 0
            and _is_number(value.get("growth_factor")) and _is_number(value.get("backoff_factor"))
            and _is_whole(value.get("growth_interval"), 1) and _is_whole(value.get("_growth_tracker"), 0))


def _is_guard_state(value: Any) -> bool:
    """:meth:`medseg.engine.loop.DivergenceGuard.state_dict`."""
    return (isinstance(value, dict) and all(value.get(key) is None or _is_number(value.get(key))
                                            for key in ("smoothed", "floor"))
            and _is_whole(value.get("nonfinite_streak"), 0))


def _unusable_rng_part(state: Any) -> str | None:
    """The first part of one process's random generator states (as
    :func:`medseg.engine.seeding.capture_rng_state` stores them) that cannot be restored,
    tried on fresh generators (the process's own are untouched); None when all can."""
    def python(part: Any) -> None:
        version, internal, gauss_next = part
        random.Random().setstate((version, tuple(internal), gauss_next))

    def numpy(part: Any) -> None:
        name, keys, pos, has_gauss, gauss = part
        np.random.RandomState().set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))

    def cuda(part: Any) -> None:
        if not isinstance(part, list) or not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                                  for t in part):
            raise TypeError("not a list of byte tensors")

    trials: dict[str, Callable[[Any], object]] = {
        "python": python, "numpy": numpy, "torch": lambda part: torch.Generator().set_state(part),
        "cuda": cuda, "loader": lambda part: torch.Generator().set_state(part),
    }
    for name, trial in trials.items():
        try:
            trial(state[name])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError):
            return name
    return None


def _rng_problem(value: Any, payload: Mapping[str, Any]) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of random generator states (one per process)"
    unusable = next((part for part in map(_unusable_rng_part, value) if part), None)
    return None if unusable is None else f"holds an unusable random generator state ({unusable})"


def _best_epoch_problem(value: Any, payload: Mapping[str, Any]) -> str | None:
    epoch = payload["epoch"]
    ok = _is_whole(value, 1) and value <= epoch
    return None if ok else f"must be a whole number from 1 to the checkpoint's epoch ({epoch})"


#: the fields every reader of a checkpoint uses (``model``'s tensors are checked further by
#: :func:`_checked_weights`)
MODEL_FIELDS: dict[str, FieldCheck] = {
    "model": _rule(lambda v: _is_mapping(v, lambda t: isinstance(t, torch.Tensor)),
                   "must be a mapping of parameter names to tensors"),
    "config": _rule(lambda v: isinstance(v, dict), "must be a mapping of config sections"),
    "task": _rule(lambda v: isinstance(v, str) and v in TASKS,
                  f"must be one of {', '.join(map(repr, TASKS))}"),
    "epoch": _rule(lambda v: _is_whole(v, 1), "must be a whole number >= 1"),
    "metrics": _rule(lambda v: _is_mapping(v, _is_number), "must be a mapping of metric names to numbers"),
    "medseg_version": _rule(lambda v: isinstance(v, str), "must be a string"),
}
#: keys every medseg checkpoint holds (see docs/architecture.md)
REQUIRED_KEYS = tuple(MODEL_FIELDS)
#: the further fields a resume reads, all required
RESUME_FIELDS: dict[str, FieldCheck] = {
    "optimizer": _rule(_is_optimizer_state,
                       "must be an optimizer state (a mapping with state and param_groups)"),
    "scheduler": _rule(lambda v: isinstance(v, dict) and _is_whole(v.get("last_epoch"), -1),
                       "must be a learning-rate schedule state (a mapping with last_epoch)"),
    "scaler": _rule(_is_scaler_state, "must be a loss scaler state (a mapping, empty when scaling is off)"),
    "rng": _rng_problem,
    "global_step": _rule(lambda v: _is_whole(v, 0), "must be a whole number >= 0"),
    "best_metric": _rule(_is_number, "must be a number"),
    "best_epoch": _best_epoch_problem,
    "history": _rule(lambda v: isinstance(v, list) and all(_is_mapping(row, _is_number) for row in v),
                     "must be a list of epoch rows (mappings of names to numbers)"),
}
#: fields a resume reads when present (checkpoints of medseg before the divergence guard lack it)
OPTIONAL_RESUME_FIELDS: dict[str, FieldCheck] = {
    "guard": _rule(_is_guard_state, "must be a divergence guard state (smoothed, floor, nonfinite_streak)"),
}


def _shown(value: Any) -> str:
    """``repr(value)`` cut to 60 characters: the message stays one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_fields(payload: dict[str, Any], path: Path, checks: Mapping[str, FieldCheck]) -> None:
    for key, check in checks.items():
        if key in payload:
            problem = check(payload[key], payload)
            if problem:
                raise CheckpointError(f"{path}: checkpoint field {key!r} {problem}, got {_shown(payload[key])}")


def _checked_weights(weights: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``weights`` in :data:`MODEL_DTYPE`: float16 and bfloat16 widened, other floating dtypes
    and non-finite values refused (integer tensors such as BatchNorm's counts stay as they are).
    """
    checked = {}
    for name, tensor in weights.items():
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
            if tensor.dtype in WIDENED_EXACTLY:
                tensor = tensor.to(MODEL_DTYPE)
            elif tensor.dtype != MODEL_DTYPE:
                stored = str(tensor.dtype).removeprefix("torch.")
                raise CheckpointError(
                    f"{path}: checkpoint field 'model' holds {name} in {stored}; medseg models are "
                    f"float32, which holds float16 and bfloat16 exactly but not {stored} (refused, "
                    "not rounded): save the weights in float32"
                )
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{path}: checkpoint field 'model' holds a non-finite value in "
                                      f"{name}; a non-finite model is refused, not scored")
        checked[name] = tensor
    return checked


def check_payload(payload: dict[str, Any], path: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Check a loaded checkpoint's fields (:data:`MODEL_FIELDS`; with ``resume`` also
    :data:`RESUME_FIELDS` and :data:`OPTIONAL_RESUME_FIELDS`) and return it with its weights
    in :data:`MODEL_DTYPE`.

    Raises:
        CheckpointError: naming ``path`` and the first field that is missing (for a resume) or
            holds a value of the wrong type or range, a weight of another floating dtype, or a
            non-finite weight.
    """
    path = Path(path)
    _check_fields(payload, path, MODEL_FIELDS)
    if resume:
        missing = [key for key in RESUME_FIELDS if key not in payload]
        if missing:
            raise CheckpointError(f"{path}: cannot resume from it: it lacks {', '.join(missing)}")
        _check_fields(payload, path, {**RESUME_FIELDS, **OPTIONAL_RESUME_FIELDS})
    return {**payload, "model": _checked_weights(payload["model"], path)}


def checkpoint_config(payload: dict[str, Any], path: str | Path) -> Config:
    """The run config stored in a checkpoint.

    Raises:
        CheckpointError: when the stored config is not valid.
    """
    try:
        return config_from_dict(payload["config"])
    except MedsegError as err:
        raise CheckpointError(f"{path}: the stored config is invalid: {err}") from None


@dataclass(frozen=True)
class LoadedModel:
    """A model restored from a checkpoint, in eval mode, with what was stored beside it."""

    model: nn.Module
    config: Config
    task: str
    metrics: dict[str, Any]
    checkpoint_path: Path
    epoch: int | None = None  # the epoch whose end the checkpoint saved


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network of a checkpoint and load its weights (eval mode, on ``device``).

    Raises:
        CheckpointError: as :func:`load_checkpoint`, or when the weights do not fit the
            network described by the stored config.
    """
    return model_from_checkpoint(load_checkpoint(path, mmap=True), path, device)


def model_from_checkpoint(
    payload: dict[str, Any], path: str | Path, device: str | torch.device = "cpu"
) -> LoadedModel:
    """:func:`load_model` for a checkpoint already read by :func:`load_checkpoint`.

    The network is built without ``model.encoder_weights`` (the stored weights replace them
    all), so a checkpoint loads after its pre-training file has moved. ``config`` keeps the
    setting as trained.
    """
    from medseg.models import build_model

    path = Path(path)
    cfg = checkpoint_config(payload, path)
    # The state dict holds every weight: never reload the pre-training file, which may be
    # gone; and build on the meta device, so no time goes into initializing weights that the
    # stored tensors then replace (assign=True).
    with torch.device("meta"):
        model = build_model(dataclasses.replace(cfg.model, encoder_weights=None), cfg.task)
    try:
        model.load_state_dict(payload["model"], assign=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: the weights do not fit {cfg.model.arch}/{cfg.model.encoder}: {first}"
        ) from None
    model.to(device).eval()
    return LoadedModel(
        model=model, config=cfg, task=cfg.task, metrics=dict(payload["metrics"]), checkpoint_path=path,
        epoch=payload["epoch"] if isinstance(payload.get("epoch"), int) else None,
    )
