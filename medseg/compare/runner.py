"""Run every method x seed under identical settings and write the comparison's report.

Each run is a full :func:`medseg.engine.train` (train, pick ``best.pt`` on validation, score
it on test) in ``out_dir/runs/<method>/seed<k>``, with ``cfg.optim.name = method`` and
``cfg.seed = k``; nothing else changes between runs. For LGG the patient split is written
once to ``out_dir/split.json`` (from the config's seed) and passed to every run as
``data.split_file``, so the split does not move with the seed. PCam uses its official splits.

Reruns are cheap: a run whose ``metrics.json`` exists and whose recorded config equals the
planned one is skipped, one with ``last.pt`` but no ``metrics.json`` is resumed, and a run
directory holding a different config stops the comparison (nothing is overwritten).

With several CUDA devices visible, runs are spread over them: one ``medseg train``
subprocess per device (``CUDA_VISIBLE_DEVICES=<i>``), the next pending run starting as soon
as a device frees up. Otherwise runs go one after another in this process.

Example:
    >>> cfg = load_config("configs/compare_deep_resnet.yaml")
    >>> rows = run_comparison(cfg, ["adam", "adam+znorm"], [0, 1, 2], "runs/compare")
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.config import Config, OptimConfig, apply_overrides, config_from_dict
from medseg.errors import ConfigError, MedsegError

RUN_RECORD = "compare_run.json"
BASELINE = "adam"


@dataclass(frozen=True)
class RunSpec:
    """One planned run: a method, a seed and the full config it trains with."""

    method: str
    seed: int
    cfg: Config

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def label(self) -> str:
        return f"{self.method} seed {self.seed}"


def check_methods(methods: Sequence[str]) -> list[str]:
    """Validate the method names against :data:`medseg.optim.OPTIMIZER_NAMES`.

    Raises:
        ConfigError: on an empty list, a duplicate or an unknown name (listing the valid ones).
    """
    from medseg.optim import OPTIMIZER_NAMES

    methods = [m.strip() for m in methods if m.strip()]
    if not methods:
        raise ConfigError("--methods: give at least one optimizer, e.g. adam,adam+znorm")
    for method in methods:
        if method not in OPTIMIZER_NAMES:
            raise ConfigError(
                f"--methods: unknown optimizer {method!r}; choose from {', '.join(OPTIMIZER_NAMES)}"
            )
    duplicates = sorted({m for m in methods if methods.count(m) > 1})
    if duplicates:
        raise ConfigError(f"--methods: {duplicates[0]!r} is listed twice")
    return methods


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Validate the seed list (non-empty, non-negative, no duplicates).

    Raises:
        ConfigError: naming the offending seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    for seed in seeds:
        if seed < 0:
            raise ConfigError(f"--seeds: seed {seed} is negative")
        if seeds.count(seed) > 1:
            raise ConfigError(f"--seed-list: seed {seed} is listed twice")
    return seeds


def prepare_split(cfg: Config, out_dir: Path) -> str | None:
    """The split file every run shares: LGG only (PCam has official splits).

    An explicit ``data.split_file`` is used as is; otherwise ``out_dir/split.json`` is
    written once from ``cfg.seed`` and reused by later reruns.
    """
    if cfg.task != "segmentation":
        return cfg.data.split_file
    if cfg.data.split_file:
        return cfg.data.split_file
    from medseg.data import list_patients, save_split, split_patients

    path = out_dir / "split.json"
    if not path.exists():
        patients = [patient.name for patient in list_patients(cfg.data.root)]
        split = split_patients(
            patients, cfg.data.val_fraction, cfg.data.test_fraction, seed=cfg.seed
        )
        save_split(split, path, seed=cfg.seed)
    return str(path)


def check_method_overrides(
    overrides: Mapping[str, Sequence[str]], methods: Sequence[str]
) -> dict[str, list[str]]:
    """Validate per-method ``optim.*`` overrides such as ``{"adamw": ["optim.weight_decay=0.01"]}``.

    Only the ``optim`` section may differ between methods; everything else stays identical.

    Raises:
        ConfigError: on a method not in ``methods``, a key outside ``optim`` (or
            ``optim.name``), or a value that fails validation.
    """
    checked = {}
    for method, items in overrides.items():
        if method not in methods:
            raise ConfigError(f"--method-set {method}: {method!r} is not one of --methods")
        for item in items:
            key = item.partition("=")[0].strip()
            if not key.startswith("optim.") or key == "optim.name":
                raise ConfigError(
                    f"--method-set {method}:{item}: only optim.* settings (not optim.name) may "
                    "differ between methods"
                )
        checked[method] = list(items)
    return checked


def _method_optim(cfg: Config, method: str, overrides: Sequence[str]) -> OptimConfig:
    raw = apply_overrides(cfg.to_dict(), [f"optim.name={method}", *overrides])
    try:
        return config_from_dict(raw).optim
    except ConfigError as err:
        raise ConfigError(f"--method-set {method}: {err}") from None


def plan_runs(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: Path,
    split_file: str | None, method_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[RunSpec]:
    """One :class:`RunSpec` per seed x method, seed-major (all methods of seed 0 first)."""
    method_overrides = method_overrides or {}
    optims = {m: _method_optim(cfg, m, method_overrides.get(m, ())) for m in methods}
    specs = []
    for seed in seeds:
        for method in methods:
            run_cfg = dataclasses.replace(
                cfg,
                seed=seed,
                data=dataclasses.replace(cfg.data, split_file=split_file),
                optim=optims[method],
                output=dataclasses.replace(
                    cfg.output,
                    run_name=f"{method}-seed{seed}",
                    dir=str(out_dir / "runs" / method / f"seed{seed}"),
                ),
            )
            specs.append(RunSpec(method, seed, run_cfg))
    return specs


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def run_state(spec: RunSpec) -> str:
    """``"done"``, ``"resume"`` or ``"new"`` for a planned run.

    Raises:
        MedsegError: when the run directory holds a run of a different config, or training
            files that this comparison did not start.
    """
    run_dir = spec.run_dir
    record_path = run_dir / RUN_RECORD
    has_outputs = (run_dir / "metrics.json").exists() or (run_dir / "last.pt").exists()
    if record_path.exists():
        try:
            recorded = json.loads(record_path.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise MedsegError(f"{record_path}: unreadable run record; remove the run") from None
        difference = _first_difference(recorded, spec.cfg.to_dict())
        if difference:
            raise MedsegError(
                f"{run_dir}: holds a run with a different config ({difference}); "
                "use another --out or remove that run directory"
            )
    elif has_outputs:
        raise MedsegError(
            f"{run_dir}: holds training files not written by this comparison; "
            "use another --out or remove that run directory"
        )
    if (run_dir / "metrics.json").exists():
        return "done"
    if (run_dir / "last.pt").exists():
        return "resume"
    return "new"


def _write_record(spec: RunSpec, **extra: Any) -> None:
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    record = {"method": spec.method, "seed": spec.seed, "config": spec.cfg.to_dict(), **extra}
    tmp = spec.run_dir / f".{RUN_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, spec.run_dir / RUN_RECORD)


def _earlier_seconds(run_dir: Path) -> float:
    """Training seconds of the epochs already in ``history.csv`` (before a resume)."""
    from medseg.compare.results import read_history

    path = run_dir / "history.csv"
    return sum(row.get("seconds", 0.0) for row in read_history(path)) if path.exists() else 0.0


def execute_run(spec: RunSpec, resume: bool) -> float:
    """Train one run (recording gradient statistics when the config asks) and return its
    wall time in seconds, also written to ``compare_run.json``.

    A resumed run's wall time adds the epoch seconds recorded before the interruption to the
    time of this call.
    """
    from medseg import engine
    from medseg.compare.grad_stats import GRAD_STATS_FILE, GradStatsRecorder

    grad_path = spec.run_dir / GRAD_STATS_FILE
    earlier = _earlier_seconds(spec.run_dir) if resume else 0.0
    _write_record(spec, resumed=resume)
    if not resume:
        grad_path.unlink(missing_ok=True)
    callbacks = [GradStatsRecorder(grad_path)] if spec.cfg.train.log_grad_stats else []
    start = time.perf_counter()
    engine.train(spec.cfg, resume=resume, callbacks=callbacks)
    wall_time = earlier + time.perf_counter() - start
    _write_record(spec, wall_time_s=wall_time, resumed=resume)
    return wall_time


def _worker_command(run_dir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "medseg.compare.worker", str(run_dir),
            *(["--resume"] if resume else [])]


def _run_on_gpus(
    pending: list[tuple[RunSpec, bool]], gpus: Sequence[int], progress: Callable[[str], None]
) -> None:
    """Spread runs over ``gpus``: one worker process per device at a time."""
    queue = list(pending)
    active: dict[int, tuple[subprocess.Popen, RunSpec, float]] = {}
    failures = []
    while queue or active:
        for gpu in gpus:
            if gpu not in active and queue:
                spec, resume = queue.pop(0)
                _write_record(spec, resumed=resume)
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
                log = (spec.run_dir / "compare_train.log").open("a")
                process = subprocess.Popen(
                    _worker_command(spec.run_dir, resume), env=env, stdout=log,
                    stderr=subprocess.STDOUT,
                )
                log.close()
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
                failures.append(f"{spec.label} (see {spec.run_dir / 'compare_train.log'})")
    if failures:
        raise MedsegError(f"{len(failures)} run(s) failed: {'; '.join(failures)}")


def visible_gpus(cfg: Config) -> list[int]:
    """CUDA device indices to spread runs over: all visible ones when more than one."""
    if cfg.train.device not in ("auto", "cuda"):
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return list(range(count)) if count > 1 else []


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
    from medseg.compare.results import collect_rows, write_outputs

    methods = check_methods(methods)
    seeds = check_seeds(seeds)
    method_overrides = check_method_overrides(method_overrides or {}, methods)
    progress = progress or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
        for index, (spec, resume) in enumerate(pending, start=1):
            progress(f"[{index}/{len(pending)}] {spec.label}: "
                     f"{'resuming' if resume else 'training'}")
            wall_time = execute_run(spec, resume)
            progress(f"[{index}/{len(pending)}] {spec.label}: done in {wall_time:.1f} s")
    rows = collect_rows(specs, target=cfg.train.target_metric)
    write_outputs(rows, specs, cfg, out_dir, method_overrides)
    return rows
