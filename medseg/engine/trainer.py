"""``medseg train``: set a run up, train epoch by epoch, keep the best checkpoint, test it.

Read :func:`train` top to bottom: it is the whole recipe. The pieces live beside it:
:mod:`~medseg.engine.run_folder` (the lock, what a start refuses, what a resume may change),
:mod:`~medseg.engine.loop` (one epoch, the divergence guard), :mod:`~medseg.engine.step`
(one optimizer step), :mod:`~medseg.engine.checkpoint`, :mod:`~medseg.engine.distributed`,
:mod:`~medseg.engine.schedule`, :mod:`~medseg.engine.seeding`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler

from medseg import __version__
from medseg.analysis.overlap import OVERLAP_VALUES
from medseg.config import Config, DataConfig, config_from_dict, save_config
from medseg.data.datasets import build_datasets
from medseg.data.lgg import find_lgg_root
from medseg.data.pcam import PCAM_SPLITS, pcam_files
from medseg.data.splits import read_split_file
from medseg.engine.callbacks import EpochInfo, StepInfo, TrainCallback
from medseg.engine.checkpoint import (
    checkpoint_config,
    copy_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from medseg.engine.distributed import (
    DistContext,
    barrier,
    broadcast_from_main,
    cleanup_distributed,
    gather_to_all,
    init_distributed,
)
from medseg.engine.inference import score_loader
from medseg.engine.loaders import build_eval_loader, build_train_loader
from medseg.engine.loop import DivergenceGuard, EpochStats, epoch_length, train_one_epoch
from medseg.engine.progress import Progress
from medseg.engine.records import reporting_write_errors, write_history, write_json
from medseg.engine.run_folder import check_fresh_start, resumed_config, run_lock
from medseg.engine.schedule import build_scheduler
from medseg.engine.seeding import capture_rng_state, restore_rng_state, seed_everything
from medseg.engine.step import Precision, TrainStep, resolve_precision
from medseg.errors import CheckpointError, ConfigError, DataError, MedsegError
from medseg.locks import remove_orphaned_temps
from medseg.metrics.measures import PatientMeasureMeter
from medseg.models import build_model
from medseg.optim import build_optimizer
from medseg.runs import RunFolder, improves
from medseg.tasks import Task, get_task, scalar_metrics

T = TypeVar("T")


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced (the files are in ``run_dir``)."""

    run_dir: Path
    best_metric: float  # the task's validation selection metric of best.pt (NaN: none had one)
    best_epoch: int
    history: list[dict[str, Any]]  # the rows of history.csv
    test_metrics: dict[str, Any]  # metrics.json: best.pt on the test split
    task: str  # the task's name (see medseg.tasks)

    @property
    def metric_name(self) -> str:
        """The validation metric that picked ``best.pt`` (the task's selection metric)."""
        return get_task(self.task).selection_metric


@dataclass
class RunState:
    """Progress of a run, stored in every checkpoint."""

    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    best_metric: float = -math.inf  # the score of best_epoch (see medseg.runs.improves)
    best_epoch: int = 0  # 0: no epoch finished yet
    history: list[dict[str, Any]] = field(default_factory=list)


def train(cfg: Config, *, resume: bool = False, callbacks: Sequence[TrainCallback] = ()) -> TrainResult:
    """Train ``cfg``'s model on its data and test the best checkpoint.

    Under ``torchrun`` every rank calls this; DistributedDataParallel averages gradients
    before the optimizer (and ZNorm) steps, so all ranks take the same step; rank 0 alone
    holds the run folder's lock, validates, writes and tests.

    ``last.pt`` is the one commit point of an epoch; ``best.pt``, ``history.csv`` and
    ``metrics.json`` are derived from it and rebuilt by a resume when a crash left them
    behind (see docs/training.md). ``best.pt`` is the epoch of the best validation score by
    :func:`medseg.runs.improves` (a tie keeps the earlier epoch; NaN never beats a number).

    Args:
        cfg: the validated run config; the run is written to ``cfg.run_dir``.
        resume: continue from ``run_dir/last.pt`` (model, optimizer, schedule, scaler, RNG
            states), as if the run had never stopped, with the config stored there (see
            :data:`~medseg.engine.run_folder.RESUME_MAY_CHANGE` for what ``cfg`` may change).
        callbacks: hooks called after every optimizer step and epoch (see
            :class:`~medseg.engine.callbacks.TrainCallback`).

    Raises:
        MedsegError: when another process writes the run folder, the folder holds a run and
            ``resume`` is False, the loss becomes non-finite or diverges or the gradients
            stay non-finite (the last good checkpoint is kept), or a file cannot be written.
        ConfigError: on bad settings, or a resume whose ``cfg`` changes a setting it may not.
        CheckpointError: when ``resume`` finds no usable ``last.pt``.
        DataError: on bad data.
    """
    if resume and not cfg.run_dir.is_dir():  # checked before the lock creates the folder
        _nothing_to_resume(cfg.run_dir)
    ctx = init_distributed(cfg.train.device)
    try:
        if not resume:  # checked before the lock creates the folder; a resume's under it
            _on_main(lambda: _check_new_run(cfg), ctx)
        with _folder_lock(cfg.run_dir, ctx):
            return _train(cfg, ctx, resume, list(callbacks))
    finally:
        cleanup_distributed(ctx)


def _train(cfg: Config, ctx: DistContext, resume: bool, callbacks: list[TrainCallback]) -> TrainResult:
    from torch.utils.tensorboard import SummaryWriter

    progress = Progress(enabled=ctx.is_main, log_every=cfg.train.log_every)
    cfg, resume_from = _open_run(cfg, ctx, resume, progress)
    run_dir, run = cfg.run_dir, RunFolder(cfg.run_dir)
    last_path, best_path = run.last_checkpoint, run.best_checkpoint
    seed_everything(cfg.seed + ctx.rank, deterministic=cfg.train.deterministic)

    datasets = _build_datasets(cfg, ctx, resume)
    train_data = build_train_loader(datasets["train"], cfg, ctx)
    val_loader = build_eval_loader(datasets["val"], cfg.train.batch_size, cfg.data.num_workers, ctx.device)
    _, steps_per_epoch = epoch_length(cfg.train, len(train_data.loader))

    # the log's first line, once the run is open and its data listed (a refused resume or
    # unreadable data stays a one-line error); train.amp and channels_last never change on resume
    precision = resolve_precision(cfg.train.amp, ctx.device, cfg.train.channels_last)
    progress.message(f"precision: {precision.label} (train.amp {cfg.train.amp}, "
                     f"train.channels_last {cfg.train.channels_last}, {ctx.device.type})")
    model, step, scheduler = _build_training(cfg, ctx, precision, steps_per_epoch, pretrained=resume_from is None)

    state = RunState()
    guard = DivergenceGuard(cfg.train.divergence_factor, cfg.train.max_nonfinite_steps)
    if resume_from is not None:
        state = _restore(resume_from, last_path, cfg, ctx, model, step, scheduler, train_data.generator, guard)
        progress.message(f"resuming {run_dir} after epoch {state.epoch} (step {state.global_step})")
    # on resume, TensorBoard drops what the interrupted epoch logged after the checkpoint
    purge_step = state.global_step + 1 if resume else None
    writer = SummaryWriter(str(run.tensorboard_dir), purge_step=purge_step) if ctx.is_main else None
    task = get_task(cfg.task)
    metric = task.selection_metric

    def on_step(info: StepInfo) -> None:
        if writer is not None and info.step % cfg.train.log_every == 0:
            _log_step(writer, info)
        for callback in callbacks:
            callback.on_step_end(info)

    try:
        for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
            epoch_start = time.perf_counter()
            stats = train_one_epoch(
                step, train_data, scheduler, epoch=epoch, train_cfg=cfg.train, ctx=ctx,
                global_step=state.global_step, progress=progress, on_step=on_step,
                last_good_checkpoint=last_path, guard=guard,
            )
            val_metrics = score_loader(model, val_loader, task) if ctx.is_main else {}
            row = broadcast_from_main(_history_row(epoch, stats, val_metrics, task, epoch_start), ctx)
            score = row[f"val_{metric}"]
            is_best = improves(score, state.best_metric if state.best_epoch else None)
            if is_best:
                state.best_metric, state.best_epoch = score, epoch
            state.epoch, state.global_step = epoch, stats.global_step
            state.history.append(row)

            payload = _checkpoint_payload(cfg, ctx, state, model, step, scheduler, train_data.generator,
                                          row, guard)
            if ctx.is_main:
                # the commit point: once last.pt is replaced the epoch is done; the files
                # below are derived from it, and a resume rebuilds them if a crash skips them
                save_checkpoint(payload, last_path)
                if is_best:
                    copy_checkpoint(last_path, best_path)
                write_history(state.history, run.history_file)
                _log_epoch(writer, row, state.global_step)
                progress.end_epoch(_epoch_line(row, cfg.train.epochs, metric, is_best))
            barrier(ctx)
            for callback in callbacks:
                callback.on_epoch_end(EpochInfo(epoch=epoch, row=row, is_best=is_best, model=model, rank=ctx.rank))
    finally:
        if writer is not None:
            writer.close()

    test_metrics = _on_main(lambda: _test_metrics(cfg, model, datasets["test"], state, ctx), ctx)
    return TrainResult(run_dir=run_dir, best_metric=state.best_metric, best_epoch=state.best_epoch,
                       history=state.history, test_metrics=test_metrics, task=task.name)


def _on_main(work: Callable[[], T], ctx: DistContext) -> T:
    """Run ``work`` on rank 0 and hand its result, or its MedsegError, to every rank (so
    that no rank waits forever for one that stopped)."""
    result: Any = None
    failure: MedsegError | None = None
    if ctx.is_main:
        try:
            result = work()
        except MedsegError as err:
            if not ctx.is_distributed:
                raise
            failure = err
    result, message = broadcast_from_main((result, None if failure is None else str(failure)), ctx)
    if failure is not None:
        raise failure
    if message is not None:
        raise MedsegError(message)
    return cast(T, result)


def _check_new_run(cfg: Config) -> None:
    """What a fresh start checks before the lock creates anything: the run folder
    (:func:`~medseg.engine.run_folder.check_fresh_start`, again under the lock) and the data
    (:func:`_check_data`).

    Raises:
        MedsegError: as :func:`~medseg.engine.run_folder.check_fresh_start`.
        DataError: as :func:`_check_data`.
    """
    check_fresh_start(cfg.run_dir)
    _check_data(cfg.data)


def _check_data(data: DataConfig) -> None:
    """Check, before anything is written, that ``data.root`` exists and holds
    ``data.format``'s files, and that ``data.split_file`` (when set) is a split file.

    Raises:
        DataError: naming the folder or file.
    """
    if data.format == "lgg":
        find_lgg_root(data.root)
    else:
        for split in PCAM_SPLITS:
            pcam_files(data.root, split)
    if data.split_file is not None:
        read_split_file(data.split_file)


@contextmanager
def _folder_lock(run_dir: Path, ctx: DistContext) -> Iterator[None]:
    """Hold the run folder's lock on rank 0 (see :mod:`medseg.engine.run_folder`)."""
    with ExitStack() as stack:
        _on_main(lambda: stack.enter_context(run_lock(run_dir)), ctx)
        yield


def _open_run(
    cfg: Config, ctx: DistContext, resume: bool, progress: Progress
) -> tuple[Config, dict[str, Any] | None]:
    """Check the (locked) run folder, bring it in line with ``last.pt`` and write
    ``config.yaml``; return the config the run continues with and, on resume, ``last.pt``.

    Nothing is written when a check fails: the folder holds another run or is not medseg's
    (fresh start), or ``last.pt`` is missing or unusable, the config changes what a resume
    may not, or the data is missing (:func:`_check_data`). Temporary files of interrupted writes are removed only after these
    checks, from a folder they showed to be medseg's.
    """
    run = RunFolder(cfg.run_dir)
    last_path = run.last_checkpoint
    if resume and not last_path.is_file():
        _nothing_to_resume(cfg.run_dir)
    payload = _resume_checkpoint(last_path, cfg) if resume else None

    def prepare() -> dict[str, Any]:
        run_cfg = cfg
        if payload is None:
            check_fresh_start(cfg.run_dir)
        else:
            stored = checkpoint_config(payload, last_path)
            run_cfg = resumed_config(cfg, stored, last_path, int(payload["epoch"]))
            _check_data(run_cfg.data)
        removed = remove_orphaned_temps(cfg.run_dir)
        if removed:
            names = ", ".join(f"{name} ({size / 2**20:.1f} MiB)" for name, size in removed)
            progress.message(f"removed unfinished temporary files of an interrupted run: {names}")
        if payload is not None:
            _rebuild_derived(payload, run_cfg, progress)
        config_file = RunFolder(run_cfg.run_dir).config_file
        with reporting_write_errors(config_file):
            save_config(run_cfg, config_file)
        return run_cfg.to_dict()

    return config_from_dict(_on_main(prepare, ctx)), payload


def _nothing_to_resume(run_dir: Path) -> NoReturn:
    last = RunFolder(run_dir).last_checkpoint
    raise CheckpointError(f"{last}: nothing to resume (no {last.name} in {run_dir})")


def _stored_epoch(path: Path) -> int | None:
    """The epoch of the checkpoint at ``path``; None when it is missing or unreadable."""
    try:
        return int(load_checkpoint(path)["epoch"])
    except CheckpointError:
        return None


def _rebuild_derived(payload: dict[str, Any], cfg: Config, progress: Progress) -> None:
    """Make ``best.pt``, ``history.csv`` and ``metrics.json`` agree with ``last.pt`` again
    (a crash after ``last.pt`` was replaced may have left them a step behind).

    Raises:
        CheckpointError: when ``best.pt`` is of another epoch than ``last.pt`` records as
            the best and ``last.pt`` can no longer provide it.
    """
    run = RunFolder(cfg.run_dir)
    last_path, best_path = run.last_checkpoint, run.best_checkpoint
    epoch, best_epoch = int(payload["epoch"]), int(payload["best_epoch"])
    found = _stored_epoch(best_path)
    if found != best_epoch:
        if best_epoch != epoch:
            held = "is missing or unreadable" if found is None else f"holds epoch {found}"
            raise CheckpointError(
                f"{best_path}: {held}, but {last_path.name} records epoch {best_epoch} as the "
                f"best and has moved on to epoch {epoch}, so it cannot be rebuilt; restore "
                "that file, or train anew in another folder"
            )
        copy_checkpoint(last_path, best_path)
        progress.message(f"rebuilt {best_path} from {last_path.name} (epoch {epoch})")
    write_history(payload["history"], run.history_file)
    metrics_path = run.metrics_file
    if epoch < cfg.train.epochs and metrics_path.exists():
        metrics_path.unlink()
        progress.message(f"removed {metrics_path}: it scored the shorter run; rewritten at the end")


def _build_datasets(cfg: Config, ctx: DistContext, resume: bool) -> dict[str, Any]:
    """Rank 0 builds the splits (writing ``split.json``), then the other ranks read it. A
    resumed run reads its own ``split.json`` (drawn again from the seed if it was lost)."""
    if ctx.is_main:
        own_split = resume and RunFolder(cfg.run_dir).split_file.is_file()
        datasets = build_datasets(_data_config(cfg, own_split), seed=cfg.seed, run_dir=cfg.run_dir)
    barrier(ctx)
    if not ctx.is_main:
        datasets = build_datasets(_data_config(cfg, True), seed=cfg.seed)
    for split in ("train", "val"):
        if len(datasets[split]) == 0:
            raise DataError(f"{cfg.data.root}: the {split} split is empty; training needs both train and val data")
    return datasets


def _data_config(cfg: Config, own_split: bool) -> DataConfig:
    """``cfg.data``, reading the run folder's ``split.json`` when ``own_split`` and the task
    splits by patient without a ``data.split_file`` of its own."""
    if own_split and get_task(cfg.task).patient_split and cfg.data.split_file is None:
        return dataclasses.replace(cfg.data, split_file=str(RunFolder(cfg.run_dir).split_file))
    return cfg.data


def _build_training(
    cfg: Config, ctx: DistContext, precision: Precision, steps_per_epoch: int, *, pretrained: bool
) -> tuple[nn.Module, TrainStep, LRScheduler]:
    """The network (unwrapped), its training step (optimizer, loss, ``precision``, DDP/compile)
    and the learning-rate schedule. ``pretrained`` False (a resume: last.pt holds every
    weight) builds without ``model.encoder_weights``, so a moved weights file does not matter."""
    model_cfg = cfg.model if pretrained else dataclasses.replace(cfg.model, encoder_weights=None)
    model = build_model(model_cfg, cfg.task).to(ctx.device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    hparams = {key: value for key, value in dataclasses.asdict(cfg.optim).items() if key != "name"}
    try:
        optimizer = build_optimizer(cfg.optim.name, model.parameters(), **hparams)
    except ValueError as err:
        raise ConfigError(f"optim.name: {err}") from None
    scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch)
    step = TrainStep(_wrap(model, ctx, cfg.train.compile), get_task(cfg.task).build_loss(), optimizer,
                     precision, named_parameters=list(model.named_parameters()))
    return model, step, scheduler


def _wrap(model: nn.Module, ctx: DistContext, compile_model: bool) -> nn.Module:
    """DistributedDataParallel under torchrun, then ``torch.compile`` when asked."""
    network: nn.Module = model
    if ctx.is_distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=device_ids)
    if compile_model:
        network = cast(nn.Module, torch.compile(network))
    return network


def _resume_checkpoint(path: Path, cfg: Config) -> dict[str, Any]:
    """Read ``last.pt`` and check that it can continue ``cfg``'s run (before anything is built)."""
    payload = load_checkpoint(path, resume=True)  # every field resume reads, checked
    if payload["task"] != cfg.task:
        raise CheckpointError(f"{path}: a {payload['task']} checkpoint cannot resume a {cfg.task} run")
    return payload


def _restore(
    payload: dict[str, Any], path: Path, cfg: Config, ctx: DistContext, model: nn.Module,
    step: TrainStep, scheduler: LRScheduler, generator: torch.Generator, guard: DivergenceGuard,
) -> RunState:
    """Load a checkpoint read by :func:`_resume_checkpoint` into the freshly built run (and
    ``guard``) and return its progress."""
    try:
        model.load_state_dict(payload["model"])
        step.optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: does not fit this config (model {cfg.model.arch}/{cfg.model.encoder}, "
            f"optimizer {cfg.optim.name}): {first}"
        ) from None
    scheduler.load_state_dict(payload["scheduler"])
    if step.scaler.is_enabled() and payload["scaler"]:
        step.scaler.load_state_dict(payload["scaler"])
    rng_states = payload["rng"]
    restore_rng_state(rng_states[ctx.rank] if ctx.rank < len(rng_states) else rng_states[0], generator)
    if "guard" in payload:  # checkpoints of medseg before the divergence guard lack it
        guard.load_state_dict(payload["guard"])
    return RunState(
        epoch=int(payload["epoch"]), global_step=int(payload["global_step"]),
        best_metric=float(payload["best_metric"]), best_epoch=int(payload["best_epoch"]),
        history=list(payload["history"]),
    )


def _checkpoint_payload(
    cfg: Config, ctx: DistContext, state: RunState, model: nn.Module, step: TrainStep,
    scheduler: LRScheduler, generator: torch.Generator, row: dict[str, Any], guard: DivergenceGuard,
) -> dict[str, Any]:
    """Everything a resume needs, as plain values (every rank must call: RNG states are gathered)."""
    return {
        "model": model.state_dict(),
        "optimizer": step.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": step.scaler.state_dict(),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "best_metric": state.best_metric,
        "best_epoch": state.best_epoch,
        "rng": gather_to_all(capture_rng_state(generator), ctx),
        "config": cfg.to_dict(),
        "task": cfg.task,
        "metrics": {key: value for key, value in row.items() if key.startswith("val_")},
        "history": list(state.history),
        "guard": guard.state_dict(),
        "training_precision": step.precision.label,  # what train.amp and channels_last chose here
        "world_size": ctx.world_size,
        "medseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _history_row(
    epoch: int, stats: EpochStats, val_metrics: dict[str, Any], task: Task, epoch_start: float
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": stats.loss,
        **{f"val_{key}": value for key, value in scalar_metrics(val_metrics, task).items()},
        "lr": stats.lr,
        "images_per_s": stats.images_per_s,
        "seconds": time.perf_counter() - epoch_start,
    }


def _epoch_line(row: dict[str, Any], epochs: int, metric: str, is_best: bool) -> str:
    vals = "  ".join(f"{key} {value:.4f}" for key, value in row.items() if key.startswith("val_"))
    return (
        f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  {vals}  "
        f"lr {row['lr']:.2e}  {row['images_per_s']:.1f} img/s  {row['seconds']:.1f} s"
        + (f"  (best val_{metric})" if is_best else "")
    )


def _log_step(writer: Any, info: StepInfo) -> None:
    writer.add_scalar("train/loss", info.loss, info.step)
    writer.add_scalar("train/lr", info.lr, info.step)
    for when, stats in (("before", info.grad_stats_before), ("after", info.grad_stats_after)):
        for name, values in (stats or {}).items():
            for stat, value in values.items():
                writer.add_scalar(f"grad_{when}/{stat}/{name}", value, info.step)
    for row in info.overlap or []:  # the residual blocks' gradient overlap (OverlapProbe)
        numbers: dict[str, Any] = {**row}
        for stat in OVERLAP_VALUES:
            writer.add_scalar(f"overlap/{stat}/{row['block']}", numbers[stat], info.step)


def _log_epoch(writer: Any, row: dict[str, Any], global_step: int) -> None:
    for key, value in row.items():
        if key != "epoch":
            section = "val" if key.startswith("val_") else "epoch"
            writer.add_scalar(f"{section}/{key.removeprefix('val_')}", value, global_step)
    writer.flush()


def _test_metrics(
    cfg: Config, model: nn.Module, test_data: Any, state: RunState, ctx: DistContext
) -> dict[str, Any]:
    """The run's ``metrics.json``: kept when it already scores the best epoch (a finished run
    resumed), else written by testing ``best.pt``."""
    run = RunFolder(cfg.run_dir)
    try:
        kept = run.read_metrics()
    except MedsegError:  # none yet, or unusable: scored again
        kept = {}
    if kept and kept.get("epoch") == state.best_epoch:
        return kept
    return _test_best(cfg, model, test_data, run.best_checkpoint, ctx)


def _test_best(cfg: Config, model: nn.Module, test_data: Any, best_path: Path, ctx: DistContext) -> dict[str, Any]:
    """Score ``best.pt`` on the test split and write ``metrics.json``."""
    payload = load_checkpoint(best_path)
    model.load_state_dict(payload["model"])
    result: dict[str, Any] = {"split": "test", "checkpoint": best_path.name, "epoch": int(payload["epoch"]),
                              "n": len(test_data)}
    if "training_precision" in payload:  # how best.pt's epoch trained (older ones do not say)
        result["training_precision"] = payload["training_precision"]
    if len(test_data):
        loader = build_eval_loader(test_data, cfg.train.batch_size, cfg.data.num_workers, ctx.device)
        task = get_task(cfg.task)
        # LGG: every test patient also scored by medseg evaluate's measures (HD95, lesions...)
        meter = PatientMeasureMeter() if task.patient_split else None
        metrics = score_loader(model, loader, task, meter=meter)
        result.update({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
        if "per_patient" in metrics:
            result["per_patient"] = {str(k): float(v) for k, v in metrics["per_patient"].items()}
        for key in ("measure_summary", "per_patient_measures"):
            if key in metrics:
                result[key] = metrics[key]
    write_json(result, RunFolder(cfg.run_dir).metrics_file)
    return result
