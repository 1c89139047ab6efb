"""Training runs found under a models folder, described from their files (no torch needed).

A run is a folder holding ``best.pt`` and/or ``last.pt`` (see ``models/README.md``); its card
is read from ``config.yaml``, ``metrics.json``, ``history.csv`` and, for runs split by patient,
``split.json``, each found through :class:`medseg.runs.RunFolder`. Only regular files count
as checkpoints; a side file that is missing, not a regular file, over
:data:`MAX_SIDE_FILE_BYTES`, not UTF-8 or malformed becomes one of the card's ``problems``,
never an error, so one odd run folder cannot take the page down.

Example:
    >>> runs = find_runs("models")
    >>> runs[0].name, runs[0].checkpoint
    ('demo_lgg', PosixPath('models/demo_lgg/best.pt'))
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from medseg.config import Config, load_config
from medseg.errors import MedsegError
from medseg.paths import is_regular_file
from medseg.runs import RunFolder, parse_history
from medseg.tasks import TASKS, metric_label

#: metrics shown on a card, in the tasks' display order (counts and timings stay in the files)
CARD_METRICS = tuple(key for task in TASKS.values() for key in task.metric_keys)
_MAX_DEPTH = 3  # models/<group>/<run>/best.pt is found; deeper trees are not searched
#: largest config.yaml, metrics.json or history.csv read for a card
MAX_SIDE_FILE_BYTES = 2 * 2**20


@dataclass(frozen=True)
class RunCard:
    """What the app shows about a run before loading its weights."""

    name: str
    path: Path
    checkpoints: tuple[Path, ...]
    config: Config | None
    test_metrics: dict[str, float]
    validation_metrics: dict[str, float]
    epochs_done: int
    created: datetime | None
    problems: tuple[str, ...] = field(default=())
    split: dict[str, str] = field(default_factory=dict)  # patient -> "train", "val" or "test"
    history: tuple[dict[str, float], ...] = ()  # history.csv, one dict of numbers per epoch
    scored: str | None = None  # the checkpoint metrics.json scores (its "checkpoint")

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint to load by default: ``best.pt`` when present, else ``last.pt``
        (None when neither is a regular file)."""
        return self.checkpoints[0] if self.checkpoints else None

    @property
    def task(self) -> str | None:
        return self.config.task if self.config else None

    def validation_at(self, epoch: int) -> dict[str, float]:
        """The validation metrics ``history.csv`` recorded at ``epoch`` (empty: none)."""
        rows = [row for row in self.history if row.get("epoch") == epoch]
        return _validation_of(rows[-1]) if rows else {}

    def summary_rows(self, checkpoint: str | None = None, epoch: int | None = None) -> list[tuple[str, str]]:
        """(field, value) rows for the card, in display order.

        Args:
            checkpoint: the checkpoint shown (``best.pt``...): the test row then says whether
                ``metrics.json`` scores it.
            epoch: the epoch that checkpoint holds: the validation row is that epoch's (else
                the last epoch's).
        """
        rows = []
        if self.config is not None:
            cfg = self.config
            rows += [
                ("Task", cfg.task),
                ("Model", f"{cfg.model.arch} / {cfg.model.encoder}"),
                ("Optimizer", f"{cfg.optim.name}, lr {cfg.optim.lr:g}"),
                ("Data", f"{cfg.data.root} ({cfg.data.format}, {cfg.data.image_size} px)"),
                ("Epochs", f"{self.epochs_done} of {cfg.train.epochs}"),
            ]
        else:
            rows.append(("Epochs", str(self.epochs_done)))
        if checkpoint is not None:
            rows.append(("Checkpoint", checkpoint if epoch is None else f"{checkpoint}, epoch {epoch}"))
        validation = self.validation_at(epoch) if epoch is not None else self.validation_metrics
        if validation:
            when = f"epoch {epoch}" if epoch is not None else f"epoch {self.epochs_done}, the last"
            rows.append((f"Validation ({when})", _metrics_text(validation)))
        if self.test_metrics:
            if checkpoint is None or self.scored in (None, checkpoint):
                rows.append(("Test", _metrics_text(self.test_metrics)))
            else:
                rows.append(("Test", f"not scored for {checkpoint} (metrics.json scores {self.scored})"))
        date = self.created.strftime("%Y-%m-%d %H:%M") if self.created else "unknown"
        rows.append(("Date", date))
        return rows


def _format_number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{metric_label(k)} {_format_number(v)}" for k, v in metrics.items())


def _numbers(mapping: dict) -> dict[str, float]:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, bool):
            continue
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError, OverflowError):
            continue
    return out


def _card_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {name: metrics[name] for name in CARD_METRICS if name in metrics}


def _side_text(path: Path, problems: list[str]) -> str | None:
    """The text of a run's side file, or None (with a problem when it exists but is unusable)."""
    try:
        if not path.exists():
            return None
        if not is_regular_file(path):  # a FIFO would block the page: never opened
            problems.append(f"{path.name} is not a regular file")
            return None
        if path.stat().st_size > MAX_SIDE_FILE_BYTES:
            problems.append(f"{path.name} is over {MAX_SIDE_FILE_BYTES // 2**20} MB; not read")
            return None
        return path.read_text(encoding="utf-8")
    except OSError as err:
        problems.append(f"{path.name} cannot be read ({err.strerror or err})")
    except UnicodeDecodeError:
        problems.append(f"{path.name} is not UTF-8 text")
    return None


def _read_metrics(path: Path, problems: list[str]) -> tuple[dict[str, float], str | None]:
    """The card's metrics in ``metrics.json`` and the checkpoint they score (its
    ``"checkpoint"``, None when absent)."""
    text = _side_text(path, problems)
    if text is None:
        return {}, None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        problems.append(f"{path.name} is not valid JSON")
        return {}, None
    if not isinstance(raw, dict):
        problems.append(f"{path.name} is not a JSON object")
        return {}, None
    scored = raw.get("checkpoint")
    return _card_metrics(_numbers(raw)), scored if isinstance(scored, str) else None


def _read_history(path: Path, problems: list[str]) -> list[dict[str, float]]:
    text = _side_text(path, problems)
    if text is None:
        return []
    try:
        return parse_history(text, path)
    except MedsegError as err:
        problems.append(str(err).replace(str(path), path.name))
        return []


def _read_config(path: Path, problems: list[str]) -> Config | None:
    if _side_text(path, problems) is None:
        if not path.exists():
            problems.append(f"{path.name} is missing")
        return None
    try:
        return load_config(path)
    except MedsegError as err:
        problems.append(str(err))
    except (OSError, ValueError, RecursionError):  # load_config passes a few of these on
        problems.append(f"{path.name} is not a readable config")
    return None


def _created(checkpoints: tuple[Path, ...], problems: list[str]) -> datetime | None:
    """When the newest checkpoint was written (None when its date cannot be read)."""
    try:
        return datetime.fromtimestamp(max(p.stat().st_mtime for p in checkpoints))
    except (OSError, ValueError, OverflowError):
        problems.append("the checkpoint's date cannot be read")
        return None


def _read_split(path: Path, problems: list[str]) -> dict[str, str]:
    """Patient -> subset from the run's ``split.json`` (empty when the run has none)."""
    if _side_text(path, problems) is None:
        return {}
    # imported here: the medseg.data package imports torch and MONAI, which a card never needs
    # when the run has no split
    from medseg.data.splits import read_split_file

    try:
        split, _ = read_split_file(path)
    except MedsegError as err:
        problems.append(str(err).replace(str(path), path.name))
        return {}
    return {patient: subset for subset, patients in split.items() for patient in patients}


def _validation_of(row: dict[str, float]) -> dict[str, float]:
    """The card's metrics among a ``history.csv`` row's ``val_*`` columns, without the prefix."""
    return _card_metrics({k.removeprefix("val_"): v for k, v in row.items() if k.startswith("val_")})


def read_run(folder: str | Path, name: str | None = None) -> RunCard:
    """Describe one run folder. A ``best.pt`` or ``last.pt`` that is not a regular file, and
    unreadable side files, become ``problems``, not errors.

    Raises:
        MedsegError: when the folder holds neither ``best.pt`` nor ``last.pt``.
    """
    run = RunFolder(folder)
    folder = run.path
    present = [path for path in run.checkpoints if os.path.lexists(path)]
    if not present:
        raise MedsegError(f"{folder}: no {' or '.join(run.CHECKPOINT_NAMES)} in this run folder")
    checkpoints = tuple(path for path in present if is_regular_file(path))
    problems = [f"{path.name} is not a regular file" for path in present if path not in checkpoints]
    config = _read_config(run.config_file, problems)
    history = _read_history(run.history_file, problems)
    test_metrics, scored = _read_metrics(run.metrics_file, problems)
    split = _read_split(run.split_file, problems)
    created = _created(checkpoints, problems) if checkpoints else None
    return RunCard(
        name=name or folder.name,
        path=folder,
        checkpoints=checkpoints,
        config=config,
        test_metrics=test_metrics,
        validation_metrics=_validation_of(history[-1]) if history else {},
        epochs_done=len(history),
        created=created,
        problems=tuple(problems),
        split=split,
        history=tuple(history),
        scored=scored,
    )


def _run_folders(root: Path) -> set[Path]:
    """Folders under ``root`` (itself included, up to three levels) with a checkpoint name."""
    return {
        found.parent
        for pattern in RunFolder.CHECKPOINT_NAMES
        for depth in range(_MAX_DEPTH)
        for found in root.glob("/".join(["*"] * depth + [pattern]))
    }


def _newest_first(run: RunCard) -> tuple[float, str]:
    """Sort key: newest checkpoint first, then by name; runs without a date last."""
    return (-run.created.timestamp() if run.created else math.inf, run.name)


def find_runs(models_dir: str | Path) -> list[RunCard]:
    """All runs under ``models_dir`` (up to three levels deep), newest first; a run whose
    files cannot be read is listed with its ``problems``.

    Returns an empty list when the folder does not exist or cannot be listed.
    """
    root = Path(models_dir)
    try:
        folders = _run_folders(root) if root.is_dir() else set()
    except OSError:
        return []
    runs = []
    for folder in folders:
        relative = folder.relative_to(root).as_posix()
        name = relative if relative != "." else (folder.resolve().name or folder.as_posix())
        try:
            runs.append(read_run(folder, name=name))
        except MedsegError:  # the checkpoint went away since the folder was listed
            continue
    return sorted(runs, key=_newest_first)
