"""Lay out, train and collect a cross-validation, on comparison's run machinery.

Each fold is a comparison run (:class:`medseg.compare.spec.RunSpec`, method ``fold_<k>``):
its folder ``fold_<k>`` holds ``compare_run.json`` and its own ``split.json`` (train on the
other folds, validate on fold k, test on the held-out patients), and it trains, resumes or
is left alone exactly as a comparison run is (:func:`medseg.compare.execution.execute_run`,
:func:`medseg.compare.planning.run_state`): a finished fold is never retrained, a killed one
resumes like ``train --resume``. On a cluster, :func:`plan_cv` writes everything and trains
nothing; ``medseg compare-run <cv>/fold_<k>`` trains one fold on any machine that sees the
folder (:func:`medseg.compare.execution.run_planned`); :func:`collect_cv` scores once every
fold finished.

The folder's ``config.yaml`` and ``folds.json`` are written once, under the CV folder's lock;
a later call with another config, fold count or seed is refused, never overwrites them.

Example:
    >>> cfg = load_config("configs/demo_lgg.yaml")
    >>> results = run_cv(cfg, 5, "models/cv_demo_lgg")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from medseg.compare.execution import execute_run, split_digest
from medseg.compare.planning import RunState, first_difference, run_state
from medseg.compare.spec import SPLIT_DIGEST, RunSpec, read_record, write_record
from medseg.config import Config, config_from_dict, save_config
from medseg.cv.choice import choose_postprocessing
from medseg.cv.report import write_results
from medseg.cv.scoring import score_cv
from medseg.data.folds import Folds, make_folds, read_folds, save_folds
from medseg.data.lgg import list_patients
from medseg.data.splits import read_split_file, save_split
from medseg.engine.run_folder import run_lock
from medseg.errors import ConfigError, MedsegError
from medseg.paths import regular_file
from medseg.postprocessing import save_postprocessing
from medseg.runs import CvFolder
from medseg.tasks import get_task

Progress = Callable[[str], None]


def _silent(line: str) -> None:
    """A progress callback that prints nothing."""


def check_task(cfg: Config) -> None:
    """Refuse a task with official splits (PCam): cross-validation folds split patients.

    Raises:
        ConfigError: naming the data format.
    """
    if not get_task(cfg.task).patient_split:
        raise ConfigError(f"data.format {cfg.data.format}: cross-validation splits patients; "
                          f"{cfg.data.format} has official train/val/test splits (use medseg train)")


def fold_spec(cfg: Config, cv: CvFolder, index: int) -> RunSpec:
    """Fold ``index``'s run: ``cfg`` training in ``fold_<index>`` on that fold's split."""
    raw = cfg.to_dict()
    folder = cv.fold(index)
    raw["data"]["split_file"] = str(folder.split_file)
    raw["output"].update(run_name=folder.path.name, dir=str(folder.path))
    return RunSpec(folder.path.name, cfg.seed, config_from_dict(raw))


def _saved_config(cv: CvFolder) -> dict[str, Any]:
    try:
        return config_from_dict(yaml.safe_load(regular_file(cv.config_file).read_text(encoding="utf-8"))).to_dict()
    except (OSError, yaml.YAMLError, MedsegError, TypeError, ValueError) as err:
        raise MedsegError(f"{cv.config_file}: unreadable cross-validation config ({err.__class__.__name__}); "
                          "use another --out") from None


def _check_same(cfg: Config, k: int, cv: CvFolder) -> Folds:
    """The folds already in ``cv``, after checking that ``cfg`` and ``k`` made them.

    Raises:
        MedsegError: naming the folder and the first difference.
    """
    folds = read_folds(cv.folds_file)
    difference = (first_difference(_saved_config(cv), cfg.to_dict())
                  or (f"folds: {folds.k} != {k}" if folds.k != k else None))
    if difference:
        raise MedsegError(f"{cv.path}: holds a cross-validation of another setup ({difference}); "
                          "use another --out or remove that folder")
    return folds


def prepare_cv(cfg: Config, k: int, out_dir: str | Path) -> tuple[Folds, list[RunSpec]]:
    """Write the folder's config, folds and each fold's split and run record where missing
    (nothing trains); return the folds and the fold runs.

    Raises:
        ConfigError: for a task with official splits (:func:`check_task`).
        MedsegError: for a bad fold count (:func:`~medseg.data.folds.make_folds`), a folder
            holding another setup or a fold folder of another config, or a locked folder.
    """
    check_task(cfg)
    cv = CvFolder(Path(out_dir).expanduser())
    with run_lock(cv.path):
        if cv.folds_file.exists():
            folds = _check_same(cfg, k, cv)
        else:
            patients = [patient.name for patient in list_patients(cfg.data.root)]
            folds = make_folds(patients, cfg.data.test_fraction, k, cfg.seed)
            save_config(cfg, cv.config_file)
            save_folds(folds, cv.folds_file)  # last: its presence marks a complete layout
        specs = [fold_spec(cfg, cv, index) for index in range(folds.k)]
        for index, spec in enumerate(specs):
            run_state(spec)  # refuses a fold folder of another config before writing
            if not spec.folder.split_file.exists():
                spec.run_dir.mkdir(parents=True, exist_ok=True)
                save_split(folds.split(index), spec.folder.split_file, seed=folds.seed)
            _check_split(spec, folds, index)
            if not spec.folder.compare_record.exists():
                write_record(spec, resumed=False, **{SPLIT_DIGEST: split_digest(spec.folder.split_file)})
    return folds, specs


def _check_split(spec: RunSpec, folds: Folds, index: int) -> None:
    """Refuse a fold whose ``split.json`` is not its split in ``folds.json``.

    Raises:
        MedsegError: naming the split file (or DataError, when it is unreadable).
    """
    split, _ = read_split_file(spec.folder.split_file)
    if split != folds.split(index):
        raise MedsegError(f"{spec.folder.split_file}: not fold {index}'s split in folds.json; "
                          "remove that fold folder to train it anew")


def plan_cv(cfg: Config, k: int, out_dir: str | Path) -> list[tuple[RunSpec, RunState]]:
    """:func:`prepare_cv`, and each fold's state ("done", "resume", "new"); nothing trains."""
    _, specs = prepare_cv(cfg, k, out_dir)
    return [(spec, run_state(spec)) for spec in specs]


def _unfinished(specs: list[RunSpec]) -> list[str]:
    """Each fold that is not a finished member: not started, interrupted, or diverged (the
    engine's guard stopped it; comparison counts it as done, but it has no final epoch)."""
    missing = []
    for spec in specs:
        state = run_state(spec)
        if state != "done":
            missing.append(f"{spec.method} ({'interrupted' if state == 'resume' else 'not started'})")
        elif read_record(spec.run_dir).get("diverged"):
            missing.append(f"{spec.method} (diverged: remove its folder and train it with other settings)")
    return missing


def collect_cv(cfg: Config, k: int, out_dir: str | Path, *, device: str = "auto",
               progress: Progress = _silent) -> dict[str, Any]:
    """Score a cross-validation whose folds all finished, choose its postprocessing on the
    out-of-fold predictions (``postprocessing.json``) and write its results
    (:func:`medseg.cv.scoring.score_cv`, :func:`medseg.cv.choice.choose_postprocessing`,
    :func:`medseg.cv.report.write_results`); nothing trains.

    Raises:
        MedsegError: when the folder holds no cross-validation or another setup, or listing
            every unfinished or diverged fold.
    """
    check_task(cfg)
    cv = CvFolder(Path(out_dir).expanduser())
    if not cv.folds_file.exists():
        raise MedsegError(f"{cv.path}: no {cv.FOLDS_NAME}; plan or run the cross-validation first")
    folds = _check_same(cfg, k, cv)
    specs = [fold_spec(cfg, cv, index) for index in range(folds.k)]
    missing = _unfinished(specs)
    for index, spec in enumerate(specs):
        if spec.folder.split_file.exists():
            _check_split(spec, folds, index)
    if missing:
        raise MedsegError(f"{cv.path}: {len(missing)} of {len(specs)} folds unfinished: "
                          f"{', '.join(missing)}; run them (medseg compare-run FOLD_DIR, see --plan) "
                          "and collect again")
    with run_lock(cv.path):
        scores = score_cv(cv, folds, [spec.cfg for spec in specs], device=device, progress=progress)
        step, evidence = choose_postprocessing(scores.oof_meters, raw_rows=scores.oof_rows)
        save_postprocessing(cv.postprocessing_file, step, evidence)
        progress(f"postprocessing chosen out of fold: {step.describe()}")
        return write_results(cv, folds, scores, step, evidence)


def run_cv(cfg: Config, k: int, out_dir: str | Path, *, device: str = "auto",
           progress: Progress = _silent) -> dict[str, Any]:
    """Train every unfinished fold here, one after another, then :func:`collect_cv`.

    Raises:
        As :func:`prepare_cv` and :func:`collect_cv`; MedsegError when a fold fails.
    """
    cv = CvFolder(Path(out_dir).expanduser())
    with run_lock(cv.path):  # one cross-validation per folder; each fold also locks its own
        _, specs = prepare_cv(cfg, k, cv.path)
        for spec in specs:
            state = run_state(spec)
            if state == "done":
                progress(f"{spec.method}: finished earlier, skipped")
                continue
            progress(f"{spec.method}: {'resuming' if state == 'resume' else 'training'}")
            seconds = execute_run(spec, state == "resume")
            progress(f"{spec.method}: done in {seconds:.1f} s")
        return collect_cv(cfg, k, cv.path, device=device, progress=progress)
