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
from medseg.compare.planning import (
    RunState,
    check_method_overrides,
    check_methods,
    check_seeds,
    plan_runs,
    run_state,
)
from medseg.compare.results import collect_rows, write_outputs
from medseg.compare.spec import RunSpec, load_spec, read_record, write_record
from medseg.config import Config
from medseg.data.lgg import list_patients
from medseg.data.splits import save_split, split_patients
from medseg.engine.run_folder import run_lock
from medseg.errors import DivergenceError, MedsegError
from medseg.runs import RunFolder, split_path
from medseg.tasks import get_task


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
        earlier = _earlier_seconds(spec.folder) if resume else 0.0
        write_record(spec, resumed=resume)
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
        write_record(spec, wall_time_s=wall_time, resumed=resume,
                     **({"diverged": diverged} if diverged else {}))
    return wall_time


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
    """Check the methods, seeds and per-method settings and lay out every run.

    Args:
        write_split: write the shared ``split.json`` when missing (planning, training);
            collecting leaves the folder as it is.

    Raises:
        ConfigError: on an unknown or duplicate method or seed, or a bad per-method setting.
    """
    methods = check_methods(methods)
    overrides = check_method_overrides(method_overrides or {}, methods)
    split = prepare_split(cfg, out_dir) if write_split else _split_path(cfg, out_dir)
    return plan_runs(cfg, methods, check_seeds(seeds), out_dir, split, overrides)


def plan_comparison(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: str | Path, *,
    method_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[RunSpec, RunState]]:
    """Lay out a comparison for a job scheduler: every run and its state; nothing trains.

    Writes ``out_dir/split.json`` (for LGG) and the record of every run not yet started, so
    that :func:`run_planned` can train any one run on any machine that sees ``out_dir``.

    Raises:
        ConfigError: as :func:`planned_runs`.
        MedsegError: when a run directory holds a different config, or ``out_dir`` is locked.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        specs = planned_runs(cfg, methods, seeds, out_dir, method_overrides)
        states = [run_state(spec) for spec in specs]
        for spec in specs:
            if not spec.folder.compare_record.exists():
                write_record(spec, resumed=False)
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
    method_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Write the tables and plots of a comparison whose runs all finished; nothing trains.

    Returns:
        One row per run, as :func:`run_comparison`.

    Raises:
        MedsegError: listing every unfinished run (not started, or interrupted) while any
            is missing, or when a run directory holds a different config.
    """
    out_dir = Path(out_dir)
    specs = planned_runs(cfg, methods, seeds, out_dir, method_overrides, write_split=False)
    states = [run_state(spec) for spec in specs]
    missing = [f"{spec.label} ({'interrupted' if state == 'resume' else 'not started'})"
               for spec, state in zip(specs, states, strict=True) if state != "done"]
    if missing:
        raise MedsegError(
            f"{out_dir}: {len(missing)} of {len(specs)} runs unfinished: {', '.join(missing)}; "
            "run them (medseg compare-run RUN_DIR, see --plan) and collect again"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        rows = collect_rows(specs, target=cfg.train.target_metric)
        write_outputs(rows, specs, cfg, out_dir, method_overrides)
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
) -> list[dict[str, Any]]:
    """Train and evaluate every method x seed, then write the tables and plots.

    Args:
        cfg: the shared config; ``optim.name``, ``seed`` and ``output.dir`` are set per run.
        methods: comparison methods (:data:`~medseg.compare.planning.METHOD_NAMES`).
        seeds: the seeds every method runs with.
        out_dir: the comparison folder (``runs/``, ``split.json``, ``results.*``, PNGs).
        method_overrides: per-method ``optim.*`` settings, e.g.
            ``{"adamw": ["optim.weight_decay=0.01"]}`` (AdamW without weight decay is Adam).
        gpus: CUDA device indices to spread runs over; ``None`` picks all visible ones when
            more than one, else runs in this process one after another.
        progress: called with one line per run event (e.g. ``print``).

    Returns:
        One row per run (see :mod:`medseg.compare.report`), in seed-major order.

    Raises:
        ConfigError: on an unknown or duplicate method or seed.
        MedsegError: when a run directory holds a different config, or a run fails.
    """
    progress = progress or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):  # one comparison per folder; each run also locks its own folder
        specs = planned_runs(cfg, methods, seeds, out_dir, method_overrides)
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
        gpus = visible_gpus(cfg) if gpus is None else list(gpus)
        if len(gpus) > 1:
            _run_on_gpus(pending, gpus, progress)
        else:
            _run_here(pending, progress)
        rows = collect_rows(specs, target=cfg.train.target_metric)
        write_outputs(rows, specs, cfg, out_dir, method_overrides)
    return rows
