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
from medseg.compare.grad_stats import GRAD_STATS_FILE
from medseg.compare.planning import (
    check_method_overrides,
    check_methods,
    check_seeds,
    plan_runs,
    run_state,
)
from medseg.compare.results import collect_rows, read_history, write_outputs
from medseg.compare.spec import RunSpec, read_record, write_record
from medseg.config import Config
from medseg.data import list_patients, save_split, split_patients
from medseg.engine.run_folder import run_lock
from medseg.errors import DivergenceError, MedsegError
from medseg.tasks import get_task

#: the output of a worker process, in its run directory
WORKER_LOG = "compare_train.log"


def prepare_split(cfg: Config, out_dir: Path) -> str | None:
    """The split file every run shares, for tasks split by patient (LGG; PCam has official
    splits).

    An explicit ``data.split_file`` is used as is; otherwise ``out_dir/split.json`` is
    written once from ``cfg.seed`` and reused by later reruns.
    """
    if not get_task(cfg.task).patient_split or cfg.data.split_file:
        return cfg.data.split_file
    path = out_dir / "split.json"
    if not path.exists():
        patients = [patient.name for patient in list_patients(cfg.data.root)]
        split = split_patients(
            patients, cfg.data.val_fraction, cfg.data.test_fraction, seed=cfg.seed
        )
        save_split(split, path, seed=cfg.seed)
    return str(path)


def _earlier_seconds(run_dir: Path) -> float:
    """Training seconds of the epochs already in ``history.csv`` (before a resume)."""
    path = run_dir / "history.csv"
    return sum(row.get("seconds", 0.0) for row in read_history(path)) if path.exists() else 0.0


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
    grad_path = spec.run_dir / GRAD_STATS_FILE
    with run_lock(spec.run_dir):
        earlier = _earlier_seconds(spec.run_dir) if resume else 0.0
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
                with (spec.run_dir / WORKER_LOG).open("a") as log:
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
                failures.append(f"{spec.label} (see {spec.run_dir / WORKER_LOG})")
    if failures:
        raise MedsegError(f"{len(failures)} run(s) failed: {'; '.join(failures)}")


def visible_gpus(cfg: Config) -> list[int]:
    """CUDA device indices to spread runs over: all visible ones when more than one."""
    if cfg.train.device not in ("auto", "cuda"):
        return []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return list(range(count)) if count > 1 else []


def _run_here(pending: list[tuple[RunSpec, bool]], progress: Callable[[str], None]) -> None:
    """Train the pending runs one after another in this process."""
    for index, (spec, resume) in enumerate(pending, start=1):
        progress(f"[{index}/{len(pending)}] {spec.label}: {'resuming' if resume else 'training'}")
        wall_time = execute_run(spec, resume)
        diverged = read_record(spec.run_dir).get("diverged")
        outcome = f"diverged after {wall_time:.1f} s ({diverged})" if diverged else f"done in {wall_time:.1f} s"
        progress(f"[{index}/{len(pending)}] {spec.label}: {outcome}")


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
        methods: optimizer names of :func:`medseg.optim.build_optimizer`.
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
    methods = check_methods(methods)
    seeds = check_seeds(seeds)
    method_overrides = check_method_overrides(method_overrides or {}, methods)
    progress = progress or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):  # one comparison per folder; each run also locks its own folder
        return _compare(cfg, methods, seeds, out_dir, method_overrides, gpus, progress)


def _compare(
    cfg: Config, methods: list[str], seeds: list[int], out_dir: Path,
    method_overrides: dict[str, list[str]], gpus: Sequence[int] | None,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    specs = plan_runs(
        cfg, methods, seeds, out_dir, prepare_split(cfg, out_dir), method_overrides
    )
    for spec in specs[: len(methods)]:
        if spec.method.startswith("adamw") and spec.cfg.optim.weight_decay == 0:
            progress(f"note: {spec.method} runs with optim.weight_decay=0, which makes it Adam; "
                     f"set it with --method-set {spec.method}:optim.weight_decay=0.01")
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
