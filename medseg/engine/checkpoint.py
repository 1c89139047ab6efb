"""Checkpoints: plain-value dicts written atomically and read with ``weights_only=True``.

A checkpoint holds only tensors, numbers, strings, booleans, None, lists, tuples and dicts,
so loading one never runs code from the file: ``torch.load(weights_only=True)`` refuses
anything else, and :func:`load_checkpoint` turns that refusal into a :class:`CheckpointError`.

Example:
    >>> save_checkpoint({"model": model.state_dict(), ...}, "models/run/last.pt")
    >>> loaded = load_model("models/run/best.pt")
    >>> loaded.model(images)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config import Config, config_from_dict
from medseg.engine.records import os_reason, write_failure
from medseg.errors import CheckpointError, MedsegError
from medseg.files import atomic_path, atomic_write

#: keys every medseg checkpoint holds (see docs/architecture.md)
REQUIRED_KEYS = ("model", "config", "task", "epoch", "metrics", "medseg_version")
#: the object named in torch's refusals: "Unsupported global: GLOBAL x.y was not an allowed
#: global" and "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
_UNSAFE_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) (\S+)")
#: how torch's pre-1.6 (non-zip) format begins: its magic number, pickled
_LEGACY_TORCH_HEAD = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
_PLAIN_TYPES = (torch.Tensor, int, float, bool, str, bytes, type(None))


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


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a medseg checkpoint onto the CPU with ``torch.load(weights_only=True)``.

    Args:
        path: the ``.pt`` file.
        mmap: map the tensors' bytes from the file (copy-on-write) instead of reading them
            all first; on POSIX systems only (elsewhere a mapped file could not be replaced by
            the next checkpoint while the tensors live).

    Raises:
        CheckpointError: when the file is missing, unreadable, truncated or corrupt, a plain
            pickle rather than a torch file, holds pickled objects other than tensors and
            plain values (the message names the first; nothing in it is run), or is not a
            medseg checkpoint.
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
    return payload


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
