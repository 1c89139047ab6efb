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

:func:`run_tuned_comparison` runs all three in this process, one run after another. On a
job scheduler, :func:`plan_tuned_comparison` lays out the open trials' runs (phase 1) and,
once every trial finished, the evaluation runs (phase 2); ``medseg compare-run RUN_DIR``
trains each run on any machine that sees ``out_dir``; :func:`collect_tuned_comparison`
writes the report. The rule that keeps the studies consistent across machines: only the
planner and the collector write them, each holding ``out_dir``'s lock, recording a trial
once all its runs finished (read from the run folders); a run never touches a study. A
trial whose run failed is not recorded and its command is printed again; a diverged run
makes its trial finished and failed. The studies live in the folder's journal, or in any
database given as ``storage_url`` (studies named ``<folder name>/<method>`` there).

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
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from medseg.compare.execution import (
    check_gpus,
    check_same_split,
    devices_to_use,
    execute_run,
    prepare_split,
    run_pending,
    split_digest,
)
from medseg.compare.planning import RunState, check_comparison, plan_runs, run_state
from medseg.compare.report import check_measures
from medseg.compare.results import (
    DEFAULT_TARGET_FRACTION,
    collect_rows,
    epochs_to_target,
    run_row,
    write_outputs,
)
from medseg.compare.spec import BASELINE, SPLIT_DIGEST, RunSpec, write_record
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
from medseg.errors import ConfigError, MedsegError
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


def study_storage(out_dir: Path, url: str | None = None) -> BaseStorage:
    """The Optuna storage of a comparison's tuning: the journal file
    ``out_dir/tuning/study.journal``, or the database at ``url`` (any URL Optuna's
    :class:`~optuna.storages.RDBStorage` takes: ``sqlite:///tuning.db``,
    ``postgresql://user@host/db``).

    Raises:
        ConfigError: when the database cannot be opened (a malformed URL, a missing driver,
            a server that does not answer).
    """
    if url is None:
        path = out_dir / TUNING_DIR / STUDY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # SQLAlchemy's and the drivers' errors have no common base
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"--storage {url[:80]}: cannot open the database: "
                          f"{first_line[:160]}") from None


def study_name(method: str, out_dir: Path, url: str | None = None) -> str:
    """The name of ``method``'s study: the method in the folder's own journal; in a database
    shared by several comparisons, ``<comparison folder name>/<method>``."""
    return method if url is None else f"{out_dir.name}/{method}"


def open_study(storage: BaseStorage, name: str) -> optuna.Study:
    """The study ``name`` (:func:`study_name`; created on first use): maximize the
    validation score."""
    return optuna.create_study(storage=storage, study_name=name, direction="maximize",
                               load_if_exists=True)


@dataclasses.dataclass(frozen=True)
class Tuning:
    """One tuned comparison's fixed parts: its config, methods and their ``--method-set``
    values, evaluation seeds, budget and trial points, folder, shared split and storage."""

    cfg: Config
    methods: list[str]
    seeds: list[int]
    overrides: dict[str, list[str]]
    settings: TuneSettings
    points: list[dict[str, float]]
    out_dir: Path
    split_file: str | None
    storage: BaseStorage
    storage_url: str | None

    def study(self, method: str) -> optuna.Study:
        return open_study(self.storage, study_name(method, self.out_dir, self.storage_url))

    def journal(self) -> str:
        """Where the studies are, for messages."""
        return self.storage_url or str(self.out_dir / TUNING_DIR / STUDY_FILE)

    def open_trials(self, method: str) -> list[tuple[int, dict[str, float], list[RunSpec]]]:
        """The trials of ``method`` that its study does not hold as finished: number, point
        and runs.

        Raises:
            MedsegError: when the study holds a trial at other settings than its point (the
                tuning section changed: use another --out).
        """
        done = finished_trials(self.study(method))
        trials = []
        for number, point in enumerate(self.points):
            if number in done:
                if done[number].params != point:
                    raise MedsegError(
                        f"{self.journal()}: {method} trial {number} ran at {done[number].params}, "
                        f"not at {point}: the tune section changed; use another --out")
                continue
            trials.append((number, point, trial_specs(
                self.cfg, method, number, point, self.settings, self.out_dir, self.split_file,
                self.overrides.get(method, ()))))
        return trials


def _check_tuning(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
    settings: TuneSettings, method_overrides: Mapping[str, Sequence[str]] | None,
    measures: Sequence[str],
) -> tuple[list[str], list[int], dict[str, list[str]], list[str], Path]:
    """Everything every entry point checks before it creates anything."""
    methods, seeds, overrides = check_comparison(methods, seeds, method_overrides or {})
    check_disjoint_seeds(settings, seeds)
    check_space(cfg, settings)
    return methods, seeds, overrides, check_measures(measures, cfg.task), Path(out_dir).expanduser()


def _tuning(cfg: Config, methods: list[str], seeds: list[int], overrides: dict[str, list[str]],
            settings: TuneSettings, out_dir: Path, storage_url: str | None) -> Tuning:
    """The :class:`Tuning` of a checked comparison; writes the shared split when missing and
    opens the storage (call it holding the folder's lock)."""
    return Tuning(cfg, methods, seeds, overrides, settings, trial_points(settings), out_dir,
                  prepare_split(cfg, out_dir), study_storage(out_dir, storage_url), storage_url)


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


def record_trial(study: optuna.Study, number: int, point: Mapping[str, float],
                 settings: TuneSettings, specs: Sequence[RunSpec]) -> float | None:
    """Record a trial whose runs all finished: complete with its score (the mean of the runs'
    best validation scores), or failed for good when a run diverged or a score is missing.
    Returns the score (None for a failed trial)."""
    rows = [run_row(spec) for spec in specs]
    diverged = [row["note"] for row in rows if row["status"] == "diverged"]
    if diverged:
        _record(study, number, point, settings, specs, value=None,
                failure=f"diverged: {diverged[0][:200]}")
        return None
    value = sum(row["best_val_metric"] for row in rows) / len(rows)
    if not math.isfinite(value):
        _record(study, number, point, settings, specs, value=None, failure="no validation score")
        return None
    _record(study, number, point, settings, specs, value=value, failure=None)
    return value


def run_trials(tuning: Tuning, method: str, progress: Callable[[str], None] = lambda line: None) -> None:
    """Train every trial of ``method`` that its study does not hold as finished, and record it.

    Raises:
        MedsegError: as :meth:`Tuning.open_trials`, or when training fails (the trial is
            recorded as failed first).
    """
    study = tuning.study(method)
    for number, point, specs in tuning.open_trials(method):
        label = f"{method} trial {number + 1}/{len(tuning.points)}"
        for spec in specs:
            state = run_state(spec)
            if state == "done":
                continue
            progress(f"{label} ({', '.join(setting_items(point))}) seed {spec.seed}: "
                     f"{'resuming' if state == 'resume' else 'training'}")
            try:
                execute_run(spec, state == "resume")
            except Exception as err:
                _record(study, number, point, tuning.settings, specs, value=None,
                        failure=f"{RETRIED}{str(err)[:200]}")
                raise
        value = record_trial(study, number, point, tuning.settings, specs)
        progress(f"{label}: " + ("failed (diverged or no validation score)" if value is None
                                 else f"validation {value:.4f}"))


def record_finished_trials(tuning: Tuning) -> list[tuple[RunSpec, RunState]]:
    """The scheduler path: record every open trial whose runs all finished (nothing trains);
    return the runs of the trials still open, with their states."""
    unfinished: list[tuple[RunSpec, RunState]] = []
    for method in tuning.methods:
        study = tuning.study(method)
        for number, point, specs in tuning.open_trials(method):
            states = [run_state(spec) for spec in specs]
            if all(state == "done" for state in states):
                record_trial(study, number, point, tuning.settings, specs)
            else:
                unfinished += [(spec, state) for spec, state in zip(specs, states, strict=True)
                               if state != "done"]
    return unfinished


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


@dataclasses.dataclass(frozen=True)
class Choice:
    """Every method's finished trials and chosen trial, the target and where it came from,
    the reference method, and the evaluation runs at the chosen settings."""

    trials: dict[str, list[TrialResult]]
    chosen: dict[str, TrialResult]
    target: float
    target_source: str
    reference: str
    tuned: dict[str, list[str]]
    specs: list[RunSpec]


def choose(tuning: Tuning) -> Choice:
    """Fix the target, pick each method's best trial and lay out its evaluation runs
    (every trial finished).

    Raises:
        MedsegError: when every trial of a method failed, or no target can be fixed.
    """
    task = get_task(tuning.cfg.task)
    val_key = f"val_{task.selection_metric}"
    methods = tuning.methods
    reference = BASELINE if BASELINE in methods else methods[0]
    target, source = fixed_target(
        tuning.cfg, reference, trial_results(tuning.study(reference), val_key, None))
    trials = {method: trial_results(tuning.study(method), val_key, target) for method in methods}
    chosen = {}
    for method in methods:
        best = best_trial(trials[method])
        if best is None:
            raise MedsegError(f"every tuning trial of {method} failed; see "
                              f"{tuning.out_dir / TUNING_DIR} (widen or move tune.space)")
        chosen[method] = best
    tuned = {method: [*tuning.overrides.get(method, ()), *setting_items(chosen[method].params)]
             for method in methods}
    specs = plan_runs(tuning.cfg, methods, tuning.seeds, tuning.out_dir, tuning.split_file, tuned)
    return Choice(trials, chosen, target, source, reference, tuned, specs)


def _write_report(tuning: Tuning, choice: Choice, measures: Sequence[str]) -> list[dict[str, Any]]:
    """``results.*``, the plots and the tuning section, from the finished evaluation runs."""
    cfg, task = tuning.cfg, get_task(tuning.cfg.task)
    check_same_split(choice.specs, tuning.split_file)
    target_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, target_metric=choice.target))
    rows = collect_rows(choice.specs, target=choice.target)
    write_outputs(rows, choice.specs, target_cfg, tuning.out_dir, choice.tuned, measures)
    write_tuning_outputs(tuning.out_dir, TuningOutcome(
        settings=tuning.settings, trials=choice.trials, chosen=choice.chosen, target=choice.target,
        target_source=choice.target_source, reference=choice.reference,
        metric_label=f"validation {task.label(task.selection_metric)}", epochs=cfg.train.epochs))
    return rows


def run_trials_on_devices(tuning: Tuning, devices: Sequence[int], progress: Callable[[str], None]) -> None:
    """Train the runs of every open trial of every method spread over ``devices`` (the trial
    points are fixed in advance, so no trial waits for another), then record each trial whose
    runs all finished. A trial with a failed run is recorded as failed and tried again by the
    next rerun, as :func:`run_trials` does.

    Raises:
        MedsegError: naming every failed run, after all ended and the trials were recorded.
    """
    pending = [(spec, state == "resume") for spec, state in record_finished_trials(tuning)]
    progress(f"{len(pending)} tuning runs to train on devices {', '.join(map(str, devices))}")
    try:
        run_pending(pending, devices, progress)
    except MedsegError as err:
        record_finished_trials(tuning)
        for method in tuning.methods:
            for number, point, specs in tuning.open_trials(method):
                _record(tuning.study(method), number, point, tuning.settings, specs, value=None,
                        failure=f"{RETRIED}{str(err)[:200]}")
        raise
    record_finished_trials(tuning)


def _run_pending(specs: Sequence[RunSpec], devices: Sequence[int], progress: Callable[[str], None]) -> None:
    states = [run_state(spec) for spec in specs]
    pending = [(spec, state == "resume") for spec, state in zip(specs, states, strict=True) if state != "done"]
    progress(f"{len(specs)} evaluation runs: {len(specs) - len(pending)} finished earlier, "
             f"{len(pending)} to run")
    run_pending(pending, devices, progress)


def run_tuned_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
    settings: TuneSettings, *, method_overrides: Mapping[str, Sequence[str]] | None = None,
    progress: Callable[[str], None] | None = None, measures: Sequence[str] = (),
    storage_url: str | None = None, gpus: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Tune every method at the same trial points, rerun each one's best settings over
    ``seeds`` and write the report (``results.*``, plots, ``tuning.csv`` and the tuning
    section with its plots). ``storage_url``: keep the studies in that database
    (:func:`study_storage`) instead of the folder's journal. ``gpus``: as
    :func:`medseg.compare.run_comparison`; on several devices the trial runs of every method
    are spread over them (:func:`run_trials_on_devices`), then the evaluation runs.

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
    methods, seeds, overrides, measures, out_dir = _check_tuning(
        cfg, methods, seeds, out_dir, settings, method_overrides, measures)
    devices = devices_to_use(cfg, None if gpus is None else check_gpus(gpus))
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        tuning = _tuning(cfg, methods, seeds, overrides, settings, out_dir, storage_url)
        if len(devices) > 1:
            run_trials_on_devices(tuning, devices, progress)
        else:
            for method in methods:
                run_trials(tuning, method, progress)
        choice = choose(tuning)
        _run_pending(choice.specs, devices, progress)
        return _write_report(tuning, choice, measures)


#: the phases of a tuned comparison on a job scheduler
TRIALS, EVALUATION = "trials", "evaluation"


def plan_tuned_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
    settings: TuneSettings, *, method_overrides: Mapping[str, Sequence[str]] | None = None,
    storage_url: str | None = None,
) -> tuple[str, list[tuple[RunSpec, RunState]]]:
    """Lay out a tuned comparison for a job scheduler; nothing trains.

    Records in the studies every trial whose runs all finished since the last call. While a
    trial is open, returns :data:`TRIALS` and the unfinished runs of the open trials; once
    every trial is recorded, fixes the target, chooses each method's settings and returns
    :data:`EVALUATION` and every evaluation run with its state. Either way the record of
    every returned run is written, so ``medseg compare-run RUN_DIR`` trains it on any machine
    that sees ``out_dir``. Only this function and :func:`collect_tuned_comparison` write the
    studies, holding the folder's lock: the runs themselves never touch them.

    Raises:
        ConfigError: as :func:`run_tuned_comparison`, before anything is created.
        MedsegError: as :meth:`Tuning.open_trials` and :func:`choose`; when a run folder
            holds another config or the folder is in use.
    """
    methods, seeds, overrides, _, out_dir = _check_tuning(
        cfg, methods, seeds, out_dir, settings, method_overrides, ())
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        tuning = _tuning(cfg, methods, seeds, overrides, settings, out_dir, storage_url)
        unfinished = record_finished_trials(tuning)
        phase = TRIALS
        if not unfinished:
            phase = EVALUATION
            unfinished = [(spec, run_state(spec)) for spec in choose(tuning).specs]
        split = split_digest(tuning.split_file)
        for spec, _ in unfinished:
            if not spec.folder.compare_record.exists():
                write_record(spec, resumed=False, **{SPLIT_DIGEST: split})
    return phase, unfinished


def collect_tuned_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
    settings: TuneSettings, *, method_overrides: Mapping[str, Sequence[str]] | None = None,
    measures: Sequence[str] = (), storage_url: str | None = None,
) -> list[dict[str, Any]]:
    """Record the finished trials and write the report of a tuned comparison whose trials
    and evaluation runs all finished (:func:`plan_tuned_comparison`); nothing trains.

    Raises:
        ConfigError: as :func:`run_tuned_comparison`.
        MedsegError: listing the unfinished runs of the phase not yet done (tuning trials,
            else evaluation runs); as :func:`choose`; when the folder is in use.
    """
    methods, seeds, overrides, measures, out_dir = _check_tuning(
        cfg, methods, seeds, out_dir, settings, method_overrides, measures)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        tuning = _tuning(cfg, methods, seeds, overrides, settings, out_dir, storage_url)
        unfinished, phase = record_finished_trials(tuning), "tuning runs"
        choice = None
        if not unfinished:
            choice, phase = choose(tuning), "evaluation runs"
            unfinished = [(spec, state) for spec in choice.specs
                          if (state := run_state(spec)) != "done"]
        if unfinished or choice is None:
            names = [f"{spec.label} ({'interrupted' if state == 'resume' else 'not started'})"
                     for spec, state in unfinished]
            raise MedsegError(
                f"{out_dir}: {len(names)} {phase} unfinished: {', '.join(names[:10])}"
                f"{', ...' if len(names) > 10 else ''}; run them (--tune --plan prints their "
                "commands) and collect again")
        return _write_report(tuning, choice, measures)
