"""``medseg compare --tune``: tune every method at the same trial points, then compare the
chosen settings over the evaluation seeds.

Three steps, in the comparison folder ``out_dir``:

1. **Trials.** For each method and each point of :func:`~medseg.compare.tuning.trial_points`
   (the same points for every method), one training run per tuning seed through compare's
   run machinery, in ``out_dir/tuning/trial<k>/runs/<method>/seed<s>`` (skip a finished
   run, resume an interrupted one, refuse a folder of another config). Each finished trial
   is recorded in the method's Optuna study (``study_name`` = the method) in the journal
   file ``out_dir/tuning/study.journal``: its settings, its score (the mean over the tuning
   seeds of each run's best validation score by the task's selection metric) and its run
   folders. A rerun skips every trial the study holds as finished, so none is trained or
   counted twice; a trial whose training raised is recorded as failed and tried again
   (resumed) by the next rerun; a trial with a diverged run is finished and failed.
2. **Choice and target.** The target for time-to-target is ``train.target_metric`` when set,
   else 90% of the tuned reference method's best trial score (``adam``, or the first method;
   AlgoPerf fixes targets from a tuned reference, never from the contenders). Each method's
   best trial (:func:`~medseg.compare.tuning.best_trial`: highest score, ties to fewer epochs
   to the target, then the earlier trial) gives its settings.
3. **Evaluation.** Every method reruns at its chosen settings over the evaluation seeds in
   ``out_dir/runs/<method>/seed<k>`` and the report is written as for an untuned comparison
   (:func:`medseg.compare.results.write_outputs`), followed by the tuning section
   (:mod:`medseg.compare.tuning_report`).

Runs go one after another in this process.

Example:
    >>> rows = run_tuned_comparison(cfg, ["adam", "adam+znorm"], [0, 1, 2], "runs/tuned",
    ...                             tune_settings({"trials": 8}))      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from medseg.compare.execution import check_same_split, execute_run, prepare_split
from medseg.compare.planning import check_comparison, plan_runs, run_state
from medseg.compare.report import check_measures
from medseg.compare.results import (
    DEFAULT_TARGET_FRACTION,
    collect_rows,
    epochs_to_target,
    run_row,
    write_outputs,
)
from medseg.compare.spec import BASELINE, RunSpec
from medseg.compare.tuning import (
    TrialResult,
    TuneSettings,
    best_trial,
    check_disjoint_seeds,
    check_space,
    setting_items,
    trial_points,
)
from medseg.compare.tuning_report import TuningOutcome, write_tuning_outputs
from medseg.config import Config
from medseg.engine.run_folder import run_lock
from medseg.errors import MedsegError
from medseg.runs import RunFolder
from medseg.tasks import get_task

#: the tuning's folder inside the comparison folder
TUNING_DIR = "tuning"
#: the Optuna journal holding every method's study
STUDY_FILE = "study.journal"
#: a recorded trial's user attributes: its point's index, its run folders, why it failed
POINT, RUN_DIRS, FAILURE = "point", "run_dirs", "failure"
#: how a failure whose training raised begins: the next rerun tries that trial again
RETRIED = "error: "


def study_storage(out_dir: Path) -> JournalStorage:
    """The Optuna storage of a comparison's tuning: ``out_dir/tuning/study.journal``."""
    path = out_dir / TUNING_DIR / STUDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_study(storage: JournalStorage, method: str) -> optuna.Study:
    """The study of ``method`` (created on first use): maximize the validation score."""
    return optuna.create_study(storage=storage, study_name=method, direction="maximize",
                               load_if_exists=True)


def trial_specs(
    cfg: Config, method: str, number: int, point: Mapping[str, float], settings: TuneSettings,
    out_dir: Path, split_file: str | None, overrides: Sequence[str] = (),
) -> list[RunSpec]:
    """The runs of trial ``number`` of ``method``: one per tuning seed, at ``point``."""
    trial_dir = out_dir / TUNING_DIR / f"trial{number:03d}"
    items = {method: [*overrides, *setting_items(point)]}
    return plan_runs(cfg, [method], settings.seeds, trial_dir, split_file, items)


def finished_trials(study: optuna.Study) -> dict[int, FrozenTrial]:
    """The study's finished trials by point: complete, or failed for good (a run diverged,
    or no validation score); a trial whose training raised (:data:`RETRIED`) is not finished.
    The last record of a point wins."""
    finished = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if not str(trial.user_attrs.get(FAILURE, "")).startswith(RETRIED):
            finished[int(trial.user_attrs[POINT])] = trial
    return finished


def _record(study: optuna.Study, number: int, point: Mapping[str, float], settings: TuneSettings,
            specs: Sequence[RunSpec], *, value: float | None, failure: str | None) -> None:
    attrs: dict[str, Any] = {POINT: number, RUN_DIRS: [str(spec.run_dir) for spec in specs]}
    if failure:
        attrs[FAILURE] = failure
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL if failure else TrialState.COMPLETE, value=value,
        params=dict(point), distributions=settings.distributions(), user_attrs=attrs))


def run_trials(
    cfg: Config, method: str, settings: TuneSettings, points: Sequence[Mapping[str, float]],
    out_dir: Path, split_file: str | None, storage: JournalStorage, overrides: Sequence[str] = (),
    progress: Callable[[str], None] = lambda line: None,
) -> None:
    """Train every trial of ``method`` that its study does not hold as finished, and record it.

    Raises:
        MedsegError: when the study holds a trial at other settings than its point (the
            tuning section changed: use another --out), or training fails (the trial is
            recorded as failed first).
    """
    study = open_study(storage, method)
    done = finished_trials(study)
    for number, point in enumerate(points):
        label = f"{method} trial {number + 1}/{len(points)}"
        if number in done:
            if done[number].params != dict(point):
                raise MedsegError(
                    f"{out_dir / TUNING_DIR / STUDY_FILE}: {method} trial {number} ran at "
                    f"{done[number].params}, not at {dict(point)}: the tune section changed; "
                    "use another --out")
            continue
        specs = trial_specs(cfg, method, number, point, settings, out_dir, split_file, overrides)
        for spec in specs:
            state = run_state(spec)
            if state == "done":
                continue
            progress(f"{label} ({', '.join(setting_items(point))}) seed {spec.seed}: "
                     f"{'resuming' if state == 'resume' else 'training'}")
            try:
                execute_run(spec, state == "resume")
            except Exception as err:
                _record(study, number, point, settings, specs, value=None,
                        failure=f"{RETRIED}{str(err)[:200]}")
                raise
        rows = [run_row(spec) for spec in specs]
        diverged = [row["note"] for row in rows if row["status"] == "diverged"]
        if diverged:
            _record(study, number, point, settings, specs, value=None,
                    failure=f"diverged: {diverged[0][:200]}")
            progress(f"{label}: diverged")
            continue
        value = sum(row["best_val_metric"] for row in rows) / len(rows)
        if math.isfinite(value):
            _record(study, number, point, settings, specs, value=value, failure=None)
        else:
            _record(study, number, point, settings, specs, value=None, failure="no validation score")
        progress(f"{label}: validation {value:.4f}")


def trial_results(study: optuna.Study, val_key: str, target: float | None) -> list[TrialResult]:
    """The study's finished trials as :class:`~medseg.compare.tuning.TrialResult` (NaN score
    for a failed one), with epochs to ``target`` read from their runs' histories."""
    results = []
    for number, trial in sorted(finished_trials(study).items()):
        value = float(trial.value) if trial.state == TrialState.COMPLETE and trial.value is not None else math.nan
        epochs = math.nan
        if target is not None and math.isfinite(value):
            counts = []
            for run_dir in trial.user_attrs[RUN_DIRS]:
                history = RunFolder(Path(run_dir)).read_history()
                reached = epochs_to_target(history, val_key, target)
                counts.append(reached if reached is not None else len(history) + 1)
            epochs = sum(counts) / len(counts)
        results.append(TrialResult(number, dict(trial.params), value, epochs))
    return results


def fixed_target(cfg: Config, reference: str, reference_trials: Sequence[TrialResult]) -> tuple[float, str]:
    """The time-to-target bar and where it comes from: ``train.target_metric``, else
    :data:`~medseg.compare.results.DEFAULT_TARGET_FRACTION` of the reference's best trial.

    Raises:
        MedsegError: when the target is not set and no trial of the reference has a score.
    """
    if cfg.train.target_metric is not None:
        return cfg.train.target_metric, "the config's train.target_metric"
    best = best_trial(reference_trials)
    if best is None:
        raise MedsegError(f"every tuning trial of {reference} failed: no target for time-to-target "
                          "(set train.target_metric, or widen tune.space)")
    return (DEFAULT_TARGET_FRACTION * best.value,
            f"{DEFAULT_TARGET_FRACTION:.0%} of the tuned reference `{reference}`'s best trial "
            f"score {best.value:.4f} (fixed before the evaluation runs)")


def _run_pending(specs: Sequence[RunSpec], progress: Callable[[str], None]) -> None:
    states = [run_state(spec) for spec in specs]
    pending = [(spec, state) for spec, state in zip(specs, states, strict=True) if state != "done"]
    progress(f"{len(specs)} evaluation runs: {len(specs) - len(pending)} finished earlier, "
             f"{len(pending)} to run")
    for index, (spec, state) in enumerate(pending, start=1):
        progress(f"[{index}/{len(pending)}] {spec.label}: {'resuming' if state == 'resume' else 'training'}")
        execute_run(spec, state == "resume")


def run_tuned_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
    settings: TuneSettings, *, method_overrides: Mapping[str, Sequence[str]] | None = None,
    progress: Callable[[str], None] | None = None, measures: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Tune every method at the same trial points, rerun each one's best settings over
    ``seeds`` and write the report (``results.*``, plots, ``tuning.csv`` and the tuning
    section with its plots).

    Returns:
        One row per evaluation run, as :func:`medseg.compare.run_comparison`.

    Raises:
        ConfigError: as :func:`~medseg.compare.planning.check_comparison`, when a tuning seed
            is an evaluation seed, or a tuned key is not a setting that takes its range; all
            before anything is created.
        MedsegError: as :func:`run_trials`; when every trial of a method failed; when a run
            folder holds another config or the folder is in use.
    """
    progress = progress or (lambda line: None)
    methods, seeds, overrides = check_comparison(methods, seeds, method_overrides or {})
    check_disjoint_seeds(settings, seeds)
    check_space(cfg, settings)
    measures = check_measures(measures, cfg.task)
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.task)
    val_key = f"val_{task.selection_metric}"
    with run_lock(out_dir):
        split = prepare_split(cfg, out_dir)
        points = trial_points(settings)
        storage = study_storage(out_dir)
        for method in methods:
            run_trials(cfg, method, settings, points, out_dir, split, storage,
                       overrides.get(method, ()), progress)
        reference = BASELINE if BASELINE in methods else methods[0]
        target, source = fixed_target(
            cfg, reference, trial_results(open_study(storage, reference), val_key, None))
        trials = {method: trial_results(open_study(storage, method), val_key, target)
                  for method in methods}
        chosen = {}
        for method in methods:
            best = best_trial(trials[method])
            if best is None:
                raise MedsegError(f"every tuning trial of {method} failed; see "
                                  f"{out_dir / TUNING_DIR} (widen or move tune.space)")
            chosen[method] = best
        tuned = {method: [*overrides.get(method, ()), *setting_items(chosen[method].params)]
                 for method in methods}
        specs = plan_runs(cfg, methods, seeds, out_dir, split, tuned)
        _run_pending(specs, progress)
        check_same_split(specs, split)
        target_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, target_metric=target))
        rows = collect_rows(specs, target=target)
        write_outputs(rows, specs, target_cfg, out_dir, tuned, measures)
        write_tuning_outputs(out_dir, TuningOutcome(
            settings=settings, trials=trials, chosen=chosen, target=target,
            target_source=source, reference=reference,
            metric_label=f"validation {task.label(task.selection_metric)}", epochs=cfg.train.epochs))
    return rows
