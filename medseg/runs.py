"""A training run's folder as a type: where every file is, its history and its best epoch.

``medseg train`` writes one folder per run (``output.dir/output.run_name``); ``evaluate``,
``compare`` and the app read it. All of them find every file through :class:`RunFolder`,
so each name below is spelled once::

    models/demo_lgg/
        config.yaml           the run's config (written at the start, again on a resume)
        split.json            the patient split it trains on (tasks split by patient)
        last.pt               the last finished epoch, with all a resume needs (the commit point)
        best.pt               the best epoch by :func:`best_epoch` (a copy of that epoch's last.pt)
        history.csv           one row per finished epoch (:meth:`RunFolder.read_history`)
        metrics.json          best.pt scored on the test split, once the run ends
        events.out.tfevents.* TensorBoard's logs
        .medseg.lock          the writing process (:mod:`medseg.locks`)
        app_cache/            the app's scores of the run's checkpoints
        compare_run.json, grad_stats.jsonl, compare_train.log: a run of ``medseg compare``

**The best epoch** is the one with the highest validation selection metric; a tie keeps the
earlier epoch; NaN (no score) never beats a number, and a number always beats NaN. The first
epoch is the best of one, so a run whose every score is NaN keeps epoch 1 as ``best.pt``
(:func:`improves`, used by the trainer as epochs end and by the comparison on ``history.csv``).

This module imports nothing heavy (no torch, no MONAI): the app and the comparison report
read runs through it.

Example:
    >>> run = RunFolder("models/demo_lgg")
    >>> run.best_checkpoint
    PosixPath('models/demo_lgg/best.pt')
    >>> run.best_epoch("val_dice")                                       # doctest: +SKIP
    (7, 0.861)
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from medseg.errors import MedsegError
from medseg.files import TEMP_NAME
from medseg.locks import LOCK_NAME
from medseg.paths import regular_file

#: the file in which a folder keeps a patient split (see :func:`split_path`)
SPLIT_NAME = "split.json"


def split_path(folder: str | Path) -> Path:
    """Where ``folder`` keeps its patient split: ``split.json`` in it. A run folder keeps the
    split it trains on there (``evaluate`` reads it beside the checkpoint), a comparison
    folder the one split all its runs share."""
    return Path(folder) / SPLIT_NAME


def improves(score: float, best: float | None) -> bool:
    """Whether an epoch scoring ``score`` replaces the best epoch so far, which scored
    ``best`` (None: there is none yet). Higher is better; a tie keeps the earlier epoch; NaN
    never beats a number and a number always beats NaN.

    Example:
        >>> improves(0.5, None), improves(0.5, 0.5), improves(math.nan, 0.1), improves(0.1, math.nan)
        (True, False, False, True)
    """
    if best is None:
        return True
    if math.isnan(score):
        return False
    return math.isnan(best) or score > best


def best_epoch(history: Sequence[Mapping[str, float]], key: str) -> tuple[int, float] | None:
    """The best epoch of ``history`` by its ``key`` column (:func:`improves`; a row without
    ``key`` counts as NaN) and its score; None for an empty history.

    Example:
        >>> best_epoch([{"epoch": 1, "val_dice": 0.4}, {"epoch": 2, "val_dice": 0.6},
        ...             {"epoch": 3, "val_dice": 0.6}], "val_dice")
        (2, 0.6)
    """
    best: tuple[int, float] | None = None
    for row in history:
        score = row.get(key, math.nan)
        if improves(score, None if best is None else best[1]):
            best = (int(row["epoch"]), score)
    return best


def parse_history(text: str, source: Path) -> list[dict[str, float]]:
    """The rows of a ``history.csv`` text as numbers, one dict per epoch; an empty cell (a
    column the epoch did not record) is left out. ``nan`` and ``inf`` are numbers, except in
    the ``epoch`` column: every row holds its epoch, a whole number >= 1.

    Raises:
        MedsegError: naming ``source``, the row and the column, when a cell is not a number,
            the header has no ``epoch`` column or a row no epoch, or the text is not CSV with
            a header.
    """
    rows: list[dict[str, float]] = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is not None and "epoch" not in reader.fieldnames:
            raise MedsegError(f"{source}: cannot read the run history: no epoch column")
        for number, row in enumerate(reader, start=1):
            values = {}
            for column, value in row.items():
                if column is None:
                    raise MedsegError(f"{source}: cannot read the run history: row {number} has "
                                      "more cells than the header has columns")
                if value in ("", None):
                    continue
                try:
                    values[column] = float(value)
                except ValueError:
                    raise MedsegError(f"{source}: cannot read the run history: row {number} "
                                      f"holds {value!r} in {column}, not a number") from None
            epoch = values.get("epoch", math.nan)
            if not (math.isfinite(epoch) and epoch.is_integer() and epoch >= 1):
                raise MedsegError(f"{source}: cannot read the run history: row {number} holds "
                                  f"{row['epoch']!r} in epoch, not an epoch number")
            rows.append(values)
    except csv.Error as err:
        raise MedsegError(f"{source}: cannot read the run history: not CSV ({err})") from None
    return rows


@dataclass(frozen=True)
class RunFolder:
    """One run's folder (it need not exist yet): the path of each of its files, and readers
    of its history and best epoch.

    Args:
        path: the folder (``cfg.run_dir`` of the run's config).
    """

    CONFIG_NAME: ClassVar[str] = "config.yaml"
    LAST_NAME: ClassVar[str] = "last.pt"
    BEST_NAME: ClassVar[str] = "best.pt"
    HISTORY_NAME: ClassVar[str] = "history.csv"
    METRICS_NAME: ClassVar[str] = "metrics.json"
    LOCK_NAME: ClassVar[str] = LOCK_NAME
    APP_CACHE_NAME: ClassVar[str] = "app_cache"
    COMPARE_RECORD_NAME: ClassVar[str] = "compare_run.json"
    GRAD_STATS_NAME: ClassVar[str] = "grad_stats.jsonl"
    WORKER_LOG_NAME: ClassVar[str] = "compare_train.log"
    TENSORBOARD_PATTERN: ClassVar[str] = "events.out.tfevents.*"
    #: the checkpoints, in the order a reader picks one: best.pt, else last.pt
    CHECKPOINT_NAMES: ClassVar[tuple[str, str]] = (BEST_NAME, LAST_NAME)
    #: what a run writes once an epoch is done: a fresh start refuses a folder holding any
    RESULT_NAMES: ClassVar[tuple[str, ...]] = (LAST_NAME, BEST_NAME, HISTORY_NAME, METRICS_NAME)
    #: every name a run folder's entries may have (besides TensorBoard's events and the
    #: temporary files of medseg's writes: :meth:`is_run_entry`)
    ENTRY_NAMES: ClassVar[frozenset[str]] = frozenset({
        CONFIG_NAME, SPLIT_NAME, *RESULT_NAMES, LOCK_NAME, APP_CACHE_NAME, COMPARE_RECORD_NAME,
        GRAD_STATS_NAME, WORKER_LOG_NAME,
    })

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunFolder:
        """The run folder a checkpoint was written in: its parent folder."""
        return cls(Path(checkpoint).parent)

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG_NAME

    @property
    def split_file(self) -> Path:
        """The patient split the run trains on (:func:`split_path`)."""
        return split_path(self.path)

    @property
    def last_checkpoint(self) -> Path:
        return self.path / self.LAST_NAME

    @property
    def best_checkpoint(self) -> Path:
        return self.path / self.BEST_NAME

    @property
    def checkpoints(self) -> tuple[Path, Path]:
        """``best.pt`` and ``last.pt``, in the order a reader picks one."""
        return self.best_checkpoint, self.last_checkpoint

    @property
    def history_file(self) -> Path:
        return self.path / self.HISTORY_NAME

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS_NAME

    @property
    def lock_file(self) -> Path:
        return self.path / self.LOCK_NAME

    @property
    def app_cache(self) -> Path:
        """The folder of the app's cached scores."""
        return self.path / self.APP_CACHE_NAME

    @property
    def compare_record(self) -> Path:
        """The record of a comparison's run (method, seed, config, wall time)."""
        return self.path / self.COMPARE_RECORD_NAME

    @property
    def grad_stats_file(self) -> Path:
        return self.path / self.GRAD_STATS_NAME

    @property
    def worker_log(self) -> Path:
        """The output of a comparison's worker process that trained the run."""
        return self.path / self.WORKER_LOG_NAME

    @property
    def result_files(self) -> tuple[Path, ...]:
        """What a run writes once an epoch is done (a fresh start refuses a folder holding any)."""
        return tuple(self.path / name for name in self.RESULT_NAMES)

    @classmethod
    def is_run_entry(cls, name: str) -> bool:
        """True when ``name`` is one a run folder's entry may have: one of
        :data:`ENTRY_NAMES`, TensorBoard's events, or a temporary file of a write of one of
        those (:data:`medseg.files.TEMP_NAME`).

        Example:
            >>> RunFolder.is_run_entry("last.pt"), RunFolder.is_run_entry(".tmp-0123456789ab-last.pt")
            (True, True)
            >>> RunFolder.is_run_entry("notes.txt"), RunFolder.is_run_entry(".tmp-mine-last.pt")
            (False, False)
        """
        temp = TEMP_NAME.fullmatch(name)
        name = temp.group("target") if temp else name
        return name in cls.ENTRY_NAMES or fnmatch.fnmatchcase(name, cls.TENSORBOARD_PATTERN)

    @property
    def tensorboard_dir(self) -> Path:
        """Where TensorBoard's event files go: the run folder itself."""
        return self.path

    def tensorboard_events(self) -> list[Path]:
        """TensorBoard's event files, by name."""
        return sorted(self.tensorboard_dir.glob(self.TENSORBOARD_PATTERN))

    def read_history(self) -> list[dict[str, float]]:
        """``history.csv`` as numbers, one dict per epoch (:func:`parse_history`).

        Raises:
            MedsegError: when the file is missing, not a regular file (never opened: a FIFO
                would block) or unreadable, or holds a cell that is not a number.
        """
        return parse_history(_read_text(self.history_file, "the run history"), self.history_file)

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json``: the test scores of the run's best epoch, as a JSON object.

        Raises:
            MedsegError: when the file is missing, not a regular file, unreadable, or not a
                JSON object.
        """
        text = _read_text(self.metrics_file, "the test metrics")
        try:
            metrics = json.loads(text)
        except (ValueError, RecursionError):
            raise MedsegError(f"{self.metrics_file}: cannot read the test metrics (not JSON)") from None
        if not isinstance(metrics, dict):
            raise MedsegError(f"{self.metrics_file}: cannot read the test metrics (not a JSON object)")
        return metrics

    def best_epoch(self, key: str) -> tuple[int, float] | None:
        """The best epoch in ``history.csv`` by column ``key`` (:func:`best_epoch`) and its
        score; None when the history has no row.

        Raises:
            MedsegError: as :meth:`read_history`.
        """
        return best_epoch(self.read_history(), key)


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a run's file, checked to be a regular file before it is opened.

    Raises:
        MedsegError: naming ``path`` and ``what`` it should hold.
    """
    try:
        return regular_file(path).read_text(encoding="utf-8")
    except MedsegError as err:  # missing, or not a regular file
        raise MedsegError(f"{path}: cannot read {what} ({str(err).removeprefix(f'{path}: ')})") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise MedsegError(f"{path}: cannot read {what} ({reason})") from None


@dataclass(frozen=True)
class CvFolder:
    """One cross-validation's folder (``medseg cv``; it need not exist yet): the path of each
    of its files, one :class:`RunFolder` per fold::

        models/cv_demo_lgg/
            config.yaml          the config every fold trains with (its own split aside)
            folds.json           the seed, the held-out test patients and each fold's patients
            fold_0/ .. fold_K-1/ one run folder per fold: its split.json trains on the other
                                 folds, validates on this fold, tests on the test patients
            cv_results.json      out-of-fold and test scores (cv_results.md: the same, to read)
            postprocessing.json  the postprocessing chosen on the out-of-fold predictions,
                                 with its evidence (:class:`medseg.postprocessing.Postprocessing`)
            .medseg.lock         the writing process (:mod:`medseg.locks`)

    A fold's member of the ensemble, and its out-of-fold predictor, is its ``last.pt`` (the
    final epoch, nnU-Net's ``checkpoint_final``): its ``best.pt`` was chosen on the very
    patients it predicts out of fold, which would flatter the cross-validation.

    Args:
        path: the folder.

    Example:
        >>> cv = CvFolder("models/cv_demo_lgg")
        >>> cv.fold(2).path, cv.member_checkpoint(2)
        (PosixPath('models/cv_demo_lgg/fold_2'), PosixPath('models/cv_demo_lgg/fold_2/last.pt'))
    """

    CONFIG_NAME: ClassVar[str] = RunFolder.CONFIG_NAME
    FOLDS_NAME: ClassVar[str] = "folds.json"
    RESULTS_NAME: ClassVar[str] = "cv_results.json"
    REPORT_NAME: ClassVar[str] = "cv_results.md"
    POSTPROCESSING_NAME: ClassVar[str] = "postprocessing.json"
    LOCK_NAME: ClassVar[str] = LOCK_NAME
    FOLD_PREFIX: ClassVar[str] = "fold_"
    #: the checkpoint of a fold that joins the ensemble (see the class docstring)
    MEMBER_NAME: ClassVar[str] = RunFolder.LAST_NAME

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def is_cv_folder(cls, path: str | Path) -> bool:
        """True when ``path`` is a folder holding a ``folds.json`` (a cross-validation's)."""
        return (Path(path) / cls.FOLDS_NAME).is_file()

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG_NAME

    @property
    def folds_file(self) -> Path:
        return self.path / self.FOLDS_NAME

    @property
    def results_file(self) -> Path:
        return self.path / self.RESULTS_NAME

    @property
    def report_file(self) -> Path:
        return self.path / self.REPORT_NAME

    @property
    def postprocessing_file(self) -> Path:
        return self.path / self.POSTPROCESSING_NAME

    @property
    def lock_file(self) -> Path:
        return self.path / self.LOCK_NAME

    def fold(self, index: int) -> RunFolder:
        """The run folder of fold ``index`` (0-based)."""
        return RunFolder(self.path / f"{self.FOLD_PREFIX}{index}")

    def member_checkpoint(self, index: int) -> Path:
        """The checkpoint of fold ``index`` that predicts out of fold and joins the ensemble."""
        return self.fold(index).path / self.MEMBER_NAME
