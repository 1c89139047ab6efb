"""Training runs found under a models folder, described from their files (no torch needed).

A run is a folder holding ``best.pt`` and/or ``last.pt`` (see ``models/README.md``); its card
is read from ``config.yaml``, ``metrics.json`` and ``history.csv``.

Example:
    >>> runs = find_runs("models")
    >>> runs[0].name, runs[0].checkpoint
    ('demo_lgg', PosixPath('models/demo_lgg/best.pt'))
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from medseg.config import Config, load_config
from medseg.errors import MedsegError
from medseg.tasks import TASKS, metric_label

CHECKPOINT_NAMES = ("best.pt", "last.pt")
#: metrics shown on a card, in the tasks' display order (counts and timings stay in the files)
CARD_METRICS = tuple(key for task in TASKS.values() for key in task.metric_keys)
_MAX_DEPTH = 3  # models/<group>/<run>/best.pt is found; deeper trees are not searched


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
    created: datetime
    problems: tuple[str, ...] = field(default=())

    @property
    def checkpoint(self) -> Path:
        """The checkpoint to load by default: ``best.pt`` when present, else ``last.pt``."""
        return self.checkpoints[0]

    @property
    def task(self) -> str | None:
        return self.config.task if self.config else None

    def summary_rows(self) -> list[tuple[str, str]]:
        """(field, value) rows for the card, in display order."""
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
        for label, metrics in (("Validation", self.validation_metrics), ("Test", self.test_metrics)):
            if metrics:
                rows.append((label, ", ".join(
                    f"{metric_label(k)} {_format_number(v)}" for k, v in metrics.items())))
        rows.append(("Date", self.created.strftime("%Y-%m-%d %H:%M")))
        return rows


def _format_number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _numbers(mapping: dict) -> dict[str, float]:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, bool):
            continue
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _card_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {name: metrics[name] for name in CARD_METRICS if name in metrics}


def _read_metrics(path: Path, problems: list[str]) -> dict[str, float]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        problems.append(f"{path.name} is not valid JSON")
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{path.name} is not a JSON object")
        return {}
    return _card_metrics(_numbers(raw))


def _read_history(path: Path, problems: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        problems.append(f"{path.name} is not a readable CSV file")
        return []


def _validation_metrics(history: list[dict[str, str]]) -> dict[str, float]:
    """The last epoch's ``val_*`` columns, without the prefix."""
    if not history:
        return {}
    last = _numbers(history[-1])
    return _card_metrics({k.removeprefix("val_"): v for k, v in last.items() if k.startswith("val_")})


def read_run(folder: str | Path, name: str | None = None) -> RunCard:
    """Describe one run folder. Unreadable side files become ``problems``, not errors.

    Raises:
        MedsegError: when the folder holds neither ``best.pt`` nor ``last.pt``.
    """
    folder = Path(folder)
    checkpoints = tuple(folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file())
    if not checkpoints:
        raise MedsegError(f"{folder}: no best.pt or last.pt in this run folder")
    problems: list[str] = []
    config = None
    if (folder / "config.yaml").is_file():
        try:
            config = load_config(folder / "config.yaml")
        except MedsegError as err:
            problems.append(str(err))
    else:
        problems.append("config.yaml is missing")
    history = _read_history(folder / "history.csv", problems)
    created = datetime.fromtimestamp(max(p.stat().st_mtime for p in checkpoints))
    return RunCard(
        name=name or folder.name,
        path=folder,
        checkpoints=checkpoints,
        config=config,
        test_metrics=_read_metrics(folder / "metrics.json", problems),
        validation_metrics=_validation_metrics(history),
        epochs_done=len(history),
        created=created,
        problems=tuple(problems),
    )


def find_runs(models_dir: str | Path) -> list[RunCard]:
    """All runs under ``models_dir`` (up to three levels deep), newest first.

    Returns an empty list when the folder does not exist.
    """
    root = Path(models_dir)
    if not root.is_dir():
        return []
    folders = {
        ckpt.parent
        for pattern in CHECKPOINT_NAMES
        for depth in range(_MAX_DEPTH)
        for ckpt in root.glob("/".join(["*"] * depth + [pattern]))
    }
    runs = []
    for folder in folders:
        relative = folder.relative_to(root).as_posix()
        runs.append(read_run(folder, name=folder.resolve().name if relative == "." else relative))
    return sorted(runs, key=lambda run: (-run.created.timestamp(), run.name))
