"""Run every method x seed under identical settings and write the comparison's report.

Each run is a full :func:`medseg.engine.train` (train, pick ``best.pt`` on validation, score
it on test) in ``out_dir/runs/<method>/seed<k>``, laid out by
:func:`medseg.compare.planning.plan_runs`. For LGG the patient split is written once to
``out_dir/split.json`` (from the config's seed) and passed to every run as
``data.split_file``, so the split does not move with the seed. PCam uses its official splits.

Reruns are cheap: a run whose ``metrics.json`` exists and whose recorded config equals the
planned one is skipped, one with ``last.pt`` but no ``metrics.json`` is resumed, and a run
directory holding a different config stops the comparison (nothing is overwritten).

With several CUDA devices visible, runs are spread over them: one worker subprocess per
device (``python -m medseg.compare.worker`` with ``CUDA_VISIBLE_DEVICES=<i>``), the next
pending run starting as soon as a device frees up. Otherwise runs go one after another in
this process.

On a cluster, a job scheduler runs the runs instead: :func:`plan_comparison` writes every
run's record (nothing trains), :func:`run_planned` trains exactly one of them on whichever node
gets it (``medseg compare-run RUN_DIR``), and :func:`collect_comparison` writes the report
once every run finished.

Example:
    >>> cfg = load_config("configs/compare_deep_resnet.yaml")
    >>> rows = run_comparison(cfg, ["adam", "adam+znorm"], [0, 1, 2], "runs/compare")
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medseg import engine
from medseg.compare.grad_recorder import GradStatsRecorder
from medseg.compare.planning import RunState, check_comparison, plan_runs, run_state
from medseg.compare.report import check_measures
from medseg.compare.results import collect_rows, write_outputs
from medseg.compare.spec import (
    SPLIT_DIGEST,
    RunSpec,
    load_spec,
    read_record,
    write_record,
)
from medseg.config import Config
from medseg.data.lgg import list_patients
from medseg.data.splits import read_split_file, save_split, split_patients
from medseg.engine.run_folder import run_lock
from medseg.errors import ConfigError, DivergenceError, MedsegError
from medseg.runs import RunFolder, split_path
from medseg.tasks import get_task

#: the most CUDA devices one comparison spreads runs over, and one above the largest index:
#: more than any single machine holds (8 to 16 on the largest nodes)
MAX_GPUS = 64


def prepare_split(cfg: Config, out_dir: Path) -> str | None:
    """The split file every run shares, for tasks split by patient (LGG; PCam has official
    splits).

    An explicit ``data.split_file`` is used as is; otherwise ``out_dir/split.json`` is
    written once from ``cfg.seed`` and reused by later reruns.
    """
    path = _split_path(cfg, out_dir)
    if path is None or cfg.data.split_file or Path(path).exists():
        return path
    patients = [patient.name for patient in list_patients(cfg.data.root)]
    split = split_patients(patients, cfg.data.val_fraction, cfg.data.test_fraction, seed=cfg.seed)
    save_split(split, path, seed=cfg.seed)
    return path


def split_digest(split_file: str | Path | None) -> str | None:
    """The identity of a patient split: the SHA-256 of its canonical content, the train, val
    and test lists as training reads them (:func:`~medseg.data.splits.read_split_file`), in
    JSON with sorted keys and no spaces, so that the file's layout and its recorded seed do
    not count. None for no split file (the data's own splits).

    Raises:
        DataError: when the split file is missing or malformed.
    """
    if split_file is None:
        return None
    split, _ = read_split_file(split_file)
    canonical = json.dumps(split, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _split_path(cfg: Config, out_dir: Path) -> str | None:
    """Where the shared split is: ``data.split_file``, else the comparison folder's own
    (:func:`medseg.runs.split_path`) for tasks split by patient, else None (the data's own
    splits)."""
    if cfg.data.split_file or not get_task(cfg.task).patient_split:
        return cfg.data.split_file
    return str(split_path(out_dir))


def _earlier_seconds(run: RunFolder) -> float:
    """Training seconds of the epochs already in ``history.csv`` (before a resume)."""
    if not run.history_file.exists():
        return 0.0
    return sum(row.get("seconds", 0.0) for row in run.read_history())


def _split_at_start(spec: RunSpec, resume: bool) -> str | None:
    """The identity of the split ``spec`` trains on now (:func:`split_digest`).

    Raises:
        MedsegError: when ``resume`` and the run recorded another split when it started: one
            run would train on two splits.
    """
    digest = split_digest(spec.cfg.data.split_file)
    recorded = read_record(spec.run_dir).get(SPLIT_DIGEST) if resume and spec.folder.compare_record.exists() else None
    if recorded is not None and recorded != digest:
        raise MedsegError(
            f"{spec.cfg.data.split_file}: changed since {spec.label} started ({spec.run_dir}); "
            "resuming would train one run on two splits: restore the file, or remove that run "
            "folder to train it anew"
        )
    return digest


def check_same_split(specs: Sequence[RunSpec], split_file: str | None) -> None:
    """Check that every run trained on ``split_file`` as it is now: the split identity each
    recorded when it started (``split_sha256``) equals the file's. Records written before
    medseg recorded it hold none and are not checked; tasks with official splits have none.

    Raises:
        MedsegError: naming the split file and every run that recorded another split (its
            seeds were tested on other patients), or when the split file is missing or malformed.
    """
    recorded = {spec.label: read_record(spec.run_dir).get(SPLIT_DIGEST) for spec in specs}
    known = {label: digest for label, digest in recorded.items() if digest is not None}
    if not known:
        return
    current = split_digest(split_file)
    other = [label for label, digest in known.items() if digest != current]
    if other:
        raise MedsegError(
            f"{split_file}: {len(other)} of {len(specs)} runs trained on another version of this "
            f"split ({', '.join(other)}), so not every seed was tested on the same patients; "
            "restore the split they trained on, or remove those run folders and train them again"
        )


def execute_run(spec: RunSpec, resume: bool) -> float:
    """Train one run (recording gradient statistics when the config asks) and return its
    wall time in seconds, also written to ``compare_run.json``.

    A run that diverges (:class:`~medseg.errors.DivergenceError`: the engine's guard stopped
    it) is finished, not failed: its record says ``diverged`` with the guard's message, the
    comparison goes on, and the report lists it apart from every statistic.

    A resumed run's wall time adds the epoch seconds recorded before the interruption to the
    time of this call. The run folder's lock (:func:`medseg.engine.run_folder.run_lock`) is
    held from before the first write to after the last.

    Raises:
        MedsegError: when another process holds the run folder, or training fails.
    """
    grad_path = spec.folder.grad_stats_file
    with run_lock(spec.run_dir):
        split = _split_at_start(spec, resume)
        earlier = _earlier_seconds(spec.folder) if resume else 0.0
        write_record(spec, resumed=resume, **{SPLIT_DIGEST: split})
        if not resume:
            grad_path.unlink(missing_ok=True)
        callbacks = [GradStatsRecorder(grad_path)] if spec.cfg.train.log_grad_stats else []
        start = time.perf_counter()
        diverged = None
        try:
            engine.train(spec.cfg, resume=resume, callbacks=callbacks)
        except DivergenceError as err:
            diverged = str(err)
        wall_time = earlier + time.perf_counter() - start
        write_record(spec, wall_time_s=wall_time, resumed=resume, **{SPLIT_DIGEST: split},
                     **({"diverged": diverged} if diverged else {}))
    return wall_time


def check_gpus(gpus: Sequence[int]) -> list[int]:
    """Validate CUDA device indices: each from 0 to :data:`MAX_GPUS` - 1, each once.

    Raises:
        ConfigError: naming the offending index.
    """
    checked: dict[int, None] = {}
    for gpu in gpus:
        if not 0 <= gpu < MAX_GPUS:
            raise ConfigError(f"--gpus: device {gpu} is not an index from 0 to {MAX_GPUS - 1}")
        if gpu in checked:
            raise ConfigError(f"--gpus: device {gpu} is listed twice")
        checked[gpu] = None
    return list(checked)


def _worker_command(run_dir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "medseg.compare.worker", str(run_dir),
            *(["--resume"] if resume else [])]


def _run_on_gpus(
    pending: list[tuple[RunSpec, bool]], gpus: Sequence[int], progress: Callable[[str], None]
) -> None:
    """Spread runs over ``gpus``: one worker process per device at a time.

    Raises:
        MedsegError: naming every failed run and its log, after all runs ended.
    """
    queue = list(pending)
    active: dict[int, tuple[subprocess.Popen, RunSpec, float]] = {}
    failures = []
    while queue or active:
        for gpu in gpus:
            if gpu not in active and queue:
                spec, resume = queue.pop(0)
                if not spec.folder.compare_record.exists():  # the worker reads the run from it
                    write_record(spec, resumed=resume)
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
                with spec.folder.worker_log.open("a") as log:
                    process = subprocess.Popen(
                        _worker_command(spec.run_dir, resume), env=env, stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                progress(f"{spec.label}: started on GPU {gpu}")
                active[gpu] = (process, spec, time.perf_counter())
        time.sleep(1.0)
        for gpu, (process, spec, start) in list(active.items()):
            if process.poll() is None:
                continue
            del active[gpu]
            if process.returncode == 0:
                progress(f"{spec.label}: finished on GPU {gpu} in {time.perf_counter() - start:.1f} s")
            else:
                failures.append(f"{spec.label} (see {spec.folder.worker_log})")
    if failures:
        raise MedsegError(f"{len(failures)} run(s) failed: {'; '.join(failures)}")


def visible_gpus(cfg: Config) -> list[int]:
    """CUDA device indices to spread runs over: all visible ones when more than one."""
    if cfg.train.device not in ("auto", "cuda"):
        return []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return list(range(count)) if count > 1 else []


def devices_to_use(cfg: Config, chosen: Sequence[int] | None) -> list[int]:
    """The CUDA devices runs are spread over: ``chosen`` (checked by :func:`check_gpus`), or
    when None every visible one if more than one (:func:`visible_gpus`)."""
    return visible_gpus(cfg) if chosen is None else list(chosen)


def run_pending(pending: list[tuple[RunSpec, bool]], devices: Sequence[int],
                progress: Callable[[str], None]) -> None:
    """Train ``pending`` (run, resume) pairs: spread over ``devices``, one worker process per
    device at a time, when more than one; else one after another in this process.

    Raises:
        MedsegError: when a run fails (on devices: naming every failed run, after all ended).
    """
    if len(devices) > 1:
        _run_on_gpus(pending, devices, progress)
    else:
        _run_here(pending, progress)


def _report(spec: RunSpec, wall_time: float, progress: Callable[[str], None], prefix: str = "") -> None:
    diverged = read_record(spec.run_dir).get("diverged")
    outcome = f"diverged after {wall_time:.1f} s ({diverged})" if diverged else f"done in {wall_time:.1f} s"
    progress(f"{prefix}{spec.label}: {outcome}")


def _run_here(pending: list[tuple[RunSpec, bool]], progress: Callable[[str], None]) -> None:
    """Train the pending runs one after another in this process."""
    for index, (spec, resume) in enumerate(pending, start=1):
        prefix = f"[{index}/{len(pending)}] "
        progress(f"{prefix}{spec.label}: {'resuming' if resume else 'training'}")
        _report(spec, execute_run(spec, resume), progress, prefix)


def planned_runs(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: Path,
    method_overrides: Mapping[str, Sequence[str]] | None = None, *, write_split: bool = True,
) -> list[RunSpec]:
    """Lay out every run of methods, seeds and per-method settings checked by
    :func:`~medseg.compare.planning.check_comparison`.

    Args:
        write_split: write the shared ``split.json`` when missing (planning, training);
            collecting leaves the folder as it is.

    Raises:
        ConfigError: on a bad per-method setting or run config.
    """
    split = prepare_split(cfg, out_dir) if write_split else _split_path(cfg, out_dir)
    return plan_runs(cfg, methods, seeds, out_dir, split, method_overrides)


def plan_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path, *,
    method_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[RunSpec, RunState]]:
    """Lay out a comparison for a job scheduler: every run and its state; nothing trains.

    Writes ``out_dir/split.json`` (for LGG) and the record of every run not yet started, so
    that :func:`run_planned` can train any one run on any machine that sees ``out_dir``.

    Raises:
        ConfigError: as :func:`~medseg.compare.planning.check_comparison` (before anything is
            created) and :func:`planned_runs`.
        MedsegError: when a run directory holds a different config, or ``out_dir`` is locked.
    """
    methods, seeds, overrides = check_comparison(methods, seeds, method_overrides or {})
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        specs = planned_runs(cfg, methods, seeds, out_dir, overrides)
        states = [run_state(spec) for spec in specs]
        split = split_digest(specs[0].cfg.data.split_file)  # one split for every run
        for spec in specs:
            if not spec.folder.compare_record.exists():
                write_record(spec, resumed=False, **{SPLIT_DIGEST: split})
    return list(zip(specs, states, strict=True))


def run_planned(run_dir: str | Path, progress: Callable[[str], None] | None = None) -> RunState:
    """Train the planned run in ``run_dir`` (:func:`plan_comparison`) unless it finished:
    a new run starts, an interrupted one resumes. Returns the state it found.

    Raises:
        MedsegError: when ``run_dir`` holds no run record, another process holds the run, or
            training fails.
    """
    run_dir = Path(run_dir)
    record = RunFolder(run_dir).compare_record
    if not record.exists():
        raise MedsegError(
            f"{run_dir}: no {record.name}; plan the comparison first "
            "(medseg compare CONFIG ... --plan)"
        )
    spec = load_spec(run_dir)
    progress = progress or (lambda line: None)
    state = run_state(spec)
    if state == "done":
        progress(f"{spec.label}: finished earlier, nothing to do")
        return state
    progress(f"{spec.label}: {'resuming' if state == 'resume' else 'training'}")
    _report(spec, execute_run(spec, state == "resume"), progress)
    return state


def collect_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path, *,
    method_overrides: Mapping[str, Sequence[str]] | None = None, measures: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Write the tables and plots of a comparison whose runs all finished; nothing trains;
    ``measures`` as :func:`run_comparison`.

    Returns:
        One row per run, as :func:`run_comparison`.

    Raises:
        ConfigError: as :func:`~medseg.compare.planning.check_comparison` and
            :func:`~medseg.compare.report.check_measures`.
        MedsegError: listing every unfinished run (not started, or interrupted) while any
            is missing; when a run directory holds a different config; or when runs trained
            on another version of the split (:func:`check_same_split`).
    """
    methods, seeds, overrides = check_comparison(methods, seeds, method_overrides or {})
    measures = check_measures(measures, cfg.task)
    out_dir = Path(out_dir).expanduser()
    specs = planned_runs(cfg, methods, seeds, out_dir, overrides, write_split=False)
    states = [run_state(spec) for spec in specs]
    missing = [f"{spec.label} ({'interrupted' if state == 'resume' else 'not started'})"
               for spec, state in zip(specs, states, strict=True) if state != "done"]
    if missing:
        raise MedsegError(
            f"{out_dir}: {len(missing)} of {len(specs)} runs unfinished: {', '.join(missing)}; "
            "run them (medseg compare-run RUN_DIR, see --plan) and collect again"
        )
    check_same_split(specs, specs[0].cfg.data.split_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        rows = collect_rows(specs, target=cfg.train.target_metric)
        write_outputs(rows, specs, cfg, out_dir, overrides, measures)
    return rows


def run_comparison(
    cfg: Config,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    method_overrides: Mapping[str, Sequence[str]] | None = None,
    gpus: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
    measures: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Train and evaluate every method x seed, then write the tables and plots.

    Args:
        cfg: the shared config; ``optim.name``, ``seed`` and ``output.dir`` are set per run.
        methods: comparison methods (:data:`~medseg.compare.planning.METHOD_NAMES`).
        seeds: the seeds every method runs with.
        out_dir: the comparison folder (``runs/``, ``split.json``, ``results.*``, PNGs).
        method_overrides: per-method ``optim.*`` settings, e.g.
            ``{"adamw": ["optim.weight_decay=0.01"]}`` (AdamW without weight decay is Adam).
        gpus: CUDA device indices to spread runs over (:func:`check_gpus`); ``None`` picks
            all visible ones when more than one, else runs in this process one after another.
        progress: called with one line per run event (e.g. ``print``).
        measures: per-patient measures of the test split
            (:func:`medseg.metrics.measures.measure_names`, e.g. ``hd95_px``) that the report
            also compares; none: the task's headline metrics only.

    Returns:
        One row per run (see :mod:`medseg.compare.report`), in seed-major order.

    Raises:
        ConfigError: as :func:`~medseg.compare.planning.check_comparison`,
            :func:`check_gpus` and :func:`~medseg.compare.report.check_measures`, before
            anything is created.
        MedsegError: when a run directory holds a different config, a run fails, or finished
            runs trained on another version of the split (:func:`check_same_split`).
    """
    progress = progress or (lambda line: None)
    methods, seeds, overrides = check_comparison(methods, seeds, method_overrides or {})
    chosen = None if gpus is None else check_gpus(gpus)
    measures = check_measures(measures, cfg.task)
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):  # one comparison per folder; each run also locks its own folder
        specs = planned_runs(cfg, methods, seeds, out_dir, overrides)
        for spec in [spec for spec in specs if spec.seed == specs[0].seed]:
            if spec.method.startswith("adamw") and spec.cfg.optim.weight_decay == 0:
                progress(f"note: {spec.method} runs with optim.weight_decay=0, which makes it "
                         f"Adam; set it with --method-set {spec.method}:optim.weight_decay=0.01")
        pending = []
        for spec in specs:
            state = run_state(spec)
            if state == "done":
                progress(f"{spec.label}: finished earlier, skipped")
            else:
                pending.append((spec, state == "resume"))
        progress(f"{len(specs)} runs: {len(specs) - len(pending)} finished earlier, "
                 f"{sum(resume for _, resume in pending)} to resume, "
                 f"{sum(not resume for _, resume in pending)} to train")
        run_pending(pending, devices_to_use(cfg, chosen), progress)
        check_same_split(specs, specs[0].cfg.data.split_file)
        rows = collect_rows(specs, target=cfg.train.target_metric)
        write_outputs(rows, specs, cfg, out_dir, overrides, measures)
    return rows
