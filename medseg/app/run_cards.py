"""Training runs found under a models folder, described from their files (no torch needed).

A run is a folder holding ``best.pt`` and/or ``last.pt`` (see ``models/README.md``); its card
is read from ``config.yaml``, ``metrics.json``, ``history.csv`` and, for runs split by patient,
``split.json``, each found through :class:`medseg.runs.RunFolder`. Only regular files count
as checkpoints; a side file that is missing, not a regular file, over
:data:`MAX_SIDE_FILE_BYTES`, not UTF-8 or malformed becomes one of the card's ``problems``,
never an error, so one odd run folder cannot take the page down.

Beside training runs, the models folder may hold what the app also opens as one model each
(:mod:`medseg.app.review_models`): exports written by ``medseg export`` (a folder with
``export.json``: ONNX, TorchScript or a MONAI bundle; or a bare ``.onnx`` file) and
cross-validation folders (``folds.json``: the ensemble of their folds). Their cards
(:func:`read_export`, :func:`read_cv`) state what the export record or the CV folder says
(``facts``); a record that cannot be read becomes a ``problem`` and the card has no model.

Example:
    >>> runs = find_runs("models")
    >>> runs[0].name, runs[0].checkpoint
    ('demo_lgg', PosixPath('models/demo_lgg/best.pt'))
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from medseg.config import Config, load_config
from medseg.demo.marker import read_demo_marker
from medseg.errors import MedsegError
from medseg.export.layout import MODEL_FILES
from medseg.paths import is_regular_file
from medseg.postprocessing import Postprocessing, load_postprocessing
from medseg.predict.exported import EXPORT_RECORD, read_record
from medseg.runs import SPLIT_NAME, CvFolder, RunFolder, parse_history
from medseg.tasks import SEGMENTATION, TASKS, metric_label

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
    #: what the card is (medseg.app.review_models.KINDS): "run", "onnx", "torchscript", "bundle", "cv"
    kind: str = "run"
    #: (field, value) rows an export record or a CV folder states
    facts: tuple[tuple[str, str], ...] = ()
    #: the task an export states (a run's and a CV folder's come from their config)
    declared_task: str | None = None
    #: the weights were trained on medseg's demo data, whose lesions are synthetic
    synthetic: bool = False

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint to load by default: ``best.pt`` when present, else ``last.pt``
        (None when neither is a regular file)."""
        return self.checkpoints[0] if self.checkpoints else None

    @property
    def task(self) -> str | None:
        return self.config.task if self.config else self.declared_task

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
        if self.kind != "run":
            return [*self.facts, *self._config_rows(), ("Date", self._date())]
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
        rows.append(("Date", self._date()))
        return rows

    def _date(self) -> str:
        return self.created.strftime("%Y-%m-%d %H:%M") if self.created else "unknown"

    def _config_rows(self) -> list[tuple[str, str]]:
        """The task, model and data of the config (an export's: its source run's or CV folder's)."""
        if self.config is None:
            return []
        cfg = self.config
        return [("Task", cfg.task), ("Model", f"{cfg.model.arch} / {cfg.model.encoder}"),
                ("Data", f"{cfg.data.root} ({cfg.data.format}, {cfg.data.image_size} px)")]


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


def _found(root: Path, pattern: str) -> set[Path]:
    """Files named ``pattern`` under ``root`` (itself included, up to three levels)."""
    return {found for depth in range(_MAX_DEPTH) for found in root.glob("/".join(["*"] * depth + [pattern]))}


def _run_folders(root: Path) -> set[Path]:
    """Folders under ``root`` (itself included, up to three levels) with a checkpoint name."""
    return {found.parent for pattern in RunFolder.CHECKPOINT_NAMES for found in _found(root, pattern)}


def _model_places(root: Path) -> dict[Path, str]:
    """Every place under ``root`` the app opens as one model, with its reader's kind: run
    folders ("run"), export folders ("export"), bare ``.onnx`` files ("onnx") and CV folders
    ("cv")."""
    places = {folder: "run" for folder in _run_folders(root)}
    exports = {found.parent for found in _found(root, EXPORT_RECORD)}
    places.update({folder: "export" for folder in exports})
    places.update({found: "onnx" for found in _found(root, "*.onnx") if found.parent not in exports})
    places.update({found.parent: "cv" for found in _found(root, CvFolder.FOLDS_NAME)})
    return places


def _newest_first(run: RunCard) -> tuple[float, str]:
    """Sort key: newest checkpoint first, then by name; runs without a date last."""
    return (-run.created.timestamp() if run.created else math.inf, run.name)


def find_runs(models_dir: str | Path) -> list[RunCard]:
    """All runs, exports and CV folders under ``models_dir`` (up to three levels deep),
    newest first; one whose files cannot be read is listed with its ``problems``.

    Returns an empty list when the folder does not exist or cannot be listed.
    """
    root = Path(models_dir)
    try:
        places = _model_places(root) if root.is_dir() else {}
    except OSError:
        return []
    readers = {"run": read_run, "export": read_export, "onnx": read_export, "cv": read_cv}
    runs = []
    for place, kind in places.items():
        relative = place.relative_to(root).as_posix()
        name = relative if relative != "." else (place.resolve().name or place.as_posix())
        try:
            runs.append(readers[kind](place, name=name))
        except MedsegError:  # the checkpoint went away since the folder was listed
            continue
    return sorted(runs, key=_newest_first)


# ---------------------------------------------------------------- exports and CV folders


EXPORT_TITLES = {"onnx": "ONNX (ONNX Runtime)", "torchscript": "TorchScript", "bundle": "MONAI bundle"}


def read_export(place: str | Path, name: str | None = None) -> RunCard:
    """Describe an export: a folder written by ``medseg export`` (its record ``export.json``)
    or a bare ``.onnx`` file. The record's facts (format, source, ensemble members, threshold,
    training size, parity) become the card's ``facts``; its source run's (or CV folder's)
    config and split are read when they are still there. An unreadable record is a problem
    and the card has no model."""
    place = Path(place)
    problems: list[str] = []
    if place.is_file():
        return RunCard(name=name or place.name, path=place.parent, checkpoints=(place,), config=None,
                       test_metrics={}, validation_metrics={}, epochs_done=0,
                       created=_created((place,), problems), problems=tuple(problems), kind="onnx",
                       declared_task=SEGMENTATION.name,
                       facts=(("Export", "ONNX file without an export record (not checked against one)"),))
    try:
        record = read_record(place) or {}
        fmt = str(record.get("format"))
        if fmt not in MODEL_FILES:
            raise MedsegError(f"{EXPORT_RECORD}: unknown format {fmt!r}")
    except MedsegError as err:
        return RunCard(name=name or place.name, path=place, checkpoints=(), config=None,
                       test_metrics={}, validation_metrics={}, epochs_done=0, created=None,
                       problems=(str(err),), kind="onnx")
    model = place / MODEL_FILES[fmt]
    checkpoints = (model,) if is_regular_file(model) else ()
    if not checkpoints:
        problems.append(f"{MODEL_FILES[fmt]} is missing or not a regular file")
    config, split = _export_source(record, problems)
    return RunCard(
        name=name or place.name, path=place, checkpoints=checkpoints, config=config,
        test_metrics={}, validation_metrics={}, epochs_done=0,
        created=_created((place / EXPORT_RECORD,), problems), problems=tuple(problems), split=split,
        kind=fmt, facts=tuple(_export_facts(record, fmt)), declared_task=str(record.get("task")),
        synthetic=_is_synthetic(config),
    )


def _export_source(record: dict, problems: list[str]) -> tuple[Config | None, dict[str, str]]:
    """The config and split of the run (or CV folder) an export came from, when still there."""
    source = Path(str(record.get("checkpoint")))
    if CvFolder.is_cv_folder(source):
        return _read_config(CvFolder(source).config_file, problems), _cv_split(CvFolder(source), problems)
    run = RunFolder.of_checkpoint(source)
    if not run.config_file.exists():
        return None, {}
    return _read_config(run.config_file, problems), _read_split(run.split_file, problems)


def _export_facts(record: dict, fmt: str) -> list[tuple[str, str]]:
    """What an export record states, as card rows."""
    facts = [("Export", f"{EXPORT_TITLES[fmt]}, by medseg {record.get('version')}")]
    members = record.get("members")
    if isinstance(members, list):
        facts.append(("Ensemble", f"mean of {len(members)} folds' probabilities, from {record.get('checkpoint')}"))
        step = record.get("postprocessing")
        if isinstance(step, dict):
            facts.append(("Postprocessing", _step_text(step) + " (recorded; not inside the model)"))
    else:
        facts.append(("Source", f"{record.get('checkpoint')}, epoch {record.get('epoch')}"))
    facts.append(("Threshold", str(record.get("threshold"))))
    facts.append(("Training size", f"{record.get('image_size')} px"))
    parity = record.get("parity")
    if isinstance(parity, dict):
        try:
            facts.append(("Parity", f"{parity['engine']} vs PyTorch eager: max |Δp| "
                                    f"{float(parity['max_abs_diff']):.1e} (limit {float(parity['limit']):.0e})"))
        except (KeyError, TypeError, ValueError):
            facts.append(("Parity", "not readable in the record"))
    return facts


def _step_text(step: dict) -> str:
    try:
        return Postprocessing.from_dict(step).describe()
    except ValueError:
        return "not readable"


def _is_synthetic(config: Config | None) -> bool:
    """Whether ``config``'s data folder is medseg's demo data (synthetic lesions)."""
    if config is None:
        return False
    try:
        return read_demo_marker(config.data.root) is not None
    except MedsegError:
        return False


def _cv_members(cv: CvFolder, problems: list[str]) -> tuple[Path, ...]:
    """Each fold's member checkpoint, in fold order (none when a fold lacks its own)."""
    pattern = re.compile(re.escape(CvFolder.FOLD_PREFIX) + r"(\d+)")
    folds = sorted(int(m.group(1)) for entry in cv.path.iterdir() if (m := pattern.fullmatch(entry.name)))
    members = [cv.member_checkpoint(k) for k in range(max(folds) + 1 if folds else 0)]
    missing = [member for member in members if not is_regular_file(member)]
    if not members:
        problems.append("no fold folder yet")
    for member in missing:
        problems.append(f"{member.parent.name} has no {member.name} yet")
    return () if missing else tuple(members)


def _cv_split(cv: CvFolder, problems: list[str]) -> dict[str, str]:
    """Patient -> "test" (held out from every fold) or "train" (trained on by the other
    folds' members), from the folds' split.json files."""
    split: dict[str, str] = {}
    for fold_split in sorted(cv.path.glob(f"{CvFolder.FOLD_PREFIX}*/{SPLIT_NAME}")):
        for patient, subset in _read_split(fold_split, problems).items():
            if split.get(patient) != "test":
                split[patient] = "test" if subset == "test" else "train"
    return split


def read_cv(folder: str | Path, name: str | None = None) -> RunCard:
    """Describe a cross-validation folder as one model: the ensemble of its folds' member
    checkpoints (:meth:`medseg.runs.CvFolder.member_checkpoint`), its config, its patients
    (test: held out; train: the folds'), and the postprocessing it chose."""
    cv = CvFolder(folder)
    problems: list[str] = []
    members = _cv_members(cv, problems)
    step = "none recorded"
    if cv.postprocessing_file.exists():

        try:
            step = load_postprocessing(cv.postprocessing_file).describe() + f" ({cv.POSTPROCESSING_NAME})"
        except MedsegError as err:
            problems.append(str(err))
    config = _read_config(cv.config_file, problems)
    return RunCard(
        name=name or cv.path.name, path=cv.path, checkpoints=members, config=config,
        test_metrics={}, validation_metrics={}, epochs_done=0,
        created=_created(members, problems) if members else None, problems=tuple(problems),
        split=_cv_split(cv, problems), kind="cv", synthetic=_is_synthetic(config),
        facts=(("Ensemble", f"mean of {len(members)} folds' probabilities ({cv.MEMBER_NAME} of each)"),
               ("Postprocessing", step)),
    )
