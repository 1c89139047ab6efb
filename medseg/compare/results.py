"""Turn finished comparison runs into rows, then into ``results.csv``, ``results.md``,
``overlap.csv`` and plots.

Everything is read back from the run directories (``metrics.json``, ``history.csv``,
``compare_run.json``, ``grad_stats.jsonl``, found through :class:`medseg.runs.RunFolder`), so a
rerun that skips every run rebuilds the same report. Nothing here trains.

Example:
    >>> rows = collect_rows(specs, target=cfg.train.target_metric)      # doctest: +SKIP
    >>> write_outputs(rows, specs, cfg, out_dir)                         # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.compare.grad_stats import read_grad_stats, read_overlap
from medseg.compare.plots import plot_curves, plot_grad_flow, plot_overlap, plot_time_to_target
from medseg.compare.report import (
    RESULTS_CSV,
    format_number,
    measure_column,
    undefined_column,
    write_overlap_csv,
    write_results_csv,
    write_results_md,
)
from medseg.compare.spec import BASELINE, MODEL_METHODS, RunSpec, read_record
from medseg.compare.stats import curve_area
from medseg.config import Config
from medseg.errors import MedsegError
from medseg.runs import RunFolder, best_epoch
from medseg.tasks import LEARNED_MARGIN, Task, get_task

DEFAULT_TARGET_FRACTION = 0.9
ZNORM_METHODS = ("adam+znorm", "znorm", "adamw+znorm", "sgd+znorm")
#: metrics.json keys that describe the run or the data (``n``, ``n_positive``...), not the model
NON_METRIC_KEYS = {"epoch", "n"}
#: the metrics.json key of the per-patient measures' summary (segmentation runs scored since
#: issue 24): {measure: {mean, median, q25, q75, n, n_undefined}}
MEASURE_SUMMARY = "measure_summary"
OVERLAP_CSV = "overlap.csv"


def _is_whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_test_metrics(run: RunFolder, task: Task[Any]) -> dict[str, Any]:
    """A finished run's ``metrics.json`` (:meth:`~medseg.runs.RunFolder.read_metrics`) with
    the values the report uses checked: the task's metrics are numbers, null read as NaN
    (medseg writes a NaN score as null); ``epoch`` is a whole number >= 1; ``n`` and the
    ``n_*`` counts are whole numbers >= 0; each :data:`MEASURE_SUMMARY` entry has a ``mean``
    (a number, null read as NaN) and whole ``n`` and ``n_undefined``. Other keys (``split``,
    ``per_patient``...) are kept as they are.

    Raises:
        MedsegError: naming the file and the key, when it is not a JSON object or one of those
            values has the wrong type.
    """
    metrics = run.read_metrics()
    for key, value in list(metrics.items()):
        if key in task.metric_keys:
            if value is None:
                metrics[key] = math.nan
            ok, rule = value is None or _is_number(value), "a number (or null)"
        elif key == "epoch":
            ok, rule = _is_whole(value, 1), "a whole number >= 1"
        elif key in NON_METRIC_KEYS or key.startswith("n_"):
            ok, rule = _is_whole(value, 0), "a count (a whole number >= 0)"
        else:
            continue
        if not ok:
            raise MedsegError(f"{run.metrics_file}: {key} is {str(value)[:60]!r}, not {rule}")
    summary = metrics.get(MEASURE_SUMMARY, {})
    if not isinstance(summary, dict):
        raise MedsegError(f"{run.metrics_file}: {MEASURE_SUMMARY} is {str(summary)[:60]!r}, not an object")
    for name, entry in summary.items():
        ok = (isinstance(entry, dict) and (entry.get("mean") is None or _is_number(entry["mean"]))
              and _is_whole(entry.get("n"), 0) and _is_whole(entry.get("n_undefined"), 0))
        if not ok:
            raise MedsegError(f"{run.metrics_file}: {MEASURE_SUMMARY}.{name} is {str(entry)[:60]!r}, "
                              "not {mean: a number or null, n and n_undefined: counts}")
    return metrics


def run_row(spec: RunSpec) -> dict[str, Any]:
    """The row of one finished run (``epochs_to_target`` is filled in by :func:`collect_rows`).

    ``best_epoch`` is the epoch of ``best.pt`` (:func:`medseg.runs.best_epoch`). ``status`` is
    "ok"; "not learned" when the test selection metric does not beat the task's
    chance score by :data:`~medseg.tasks.LEARNED_MARGIN` (:meth:`medseg.tasks.Task.learned`);
    or "diverged" (the record says the guard stopped it: no test metrics). ``note`` says why
    a run is not "ok". ``val_curve_area`` is the validation curve's average height
    (:func:`~medseg.compare.stats.curve_area`).

    Raises:
        MedsegError: when the run has no ``metrics.json`` (it did not finish).
    """
    record = read_record(spec.run_dir)
    if record.get("diverged"):
        return {"method": spec.method, "seed": spec.seed, "status": "diverged",
                "note": str(record["diverged"]), "best_val_metric": math.nan,
                "wall_time_s": record.get("wall_time_s", math.nan), "run_dir": str(spec.run_dir)}
    metrics_path = spec.folder.metrics_file
    if not metrics_path.exists():
        raise MedsegError(f"{metrics_path}: missing; the run {spec.label} did not finish")
    task = get_task(spec.cfg.task)
    metrics = read_test_metrics(spec.folder, task)
    history = spec.folder.read_history()
    val_key = f"val_{task.selection_metric}"
    best = best_epoch(history, val_key)
    best_at, best_val = best if best is not None else (int(metrics.get("epoch", 0)), math.nan)
    row: dict[str, Any] = {"method": spec.method, "seed": spec.seed, "status": "ok"}
    if not task.learned(metrics):
        metric = task.selection_metric
        row["status"] = "not learned"
        row["note"] = (f"test {task.label(metric)} {format_number(metrics.get(metric), 4)} "
                       f"is not {LEARNED_MARGIN} above chance "
                       f"{format_number(task.chance_score(metrics), 4)} ({task.chance})")
    for key, value in metrics.items():
        is_count = key in NON_METRIC_KEYS or key.startswith("n_")
        if not is_count and isinstance(value, (int, float)) and not isinstance(value, bool):
            row[f"test_{key}"] = float(value)
    for name, entry in metrics.get(MEASURE_SUMMARY, {}).items():
        row[measure_column(name)] = math.nan if entry["mean"] is None else float(entry["mean"])
        row[undefined_column(name)] = entry["n_undefined"]
    row.update(
        val_metric=val_key,
        best_val_metric=best_val,
        best_epoch=best_at,
        val_curve_area=curve_area([epoch.get(val_key, math.nan) for epoch in history]),
        epochs=len(history),
        wall_time_s=record.get("wall_time_s", math.nan),
        run_dir=str(spec.run_dir),
    )
    return row


def epochs_to_target(history: Sequence[dict[str, float]], key: str, target: float) -> int | None:
    """The first epoch whose ``key`` reaches ``target`` (higher is better), or None.

    Example:
        >>> epochs_to_target([{"epoch": 1, "val_auc": 0.6}, {"epoch": 2, "val_auc": 0.8}],
        ...                  "val_auc", 0.75)
        2
    """
    for row in history:
        if key in row and row[key] >= target:
            return int(row["epoch"])
    return None


def seconds_to(history: Sequence[dict[str, float]], epoch: int | None) -> float:
    """Training seconds of epochs 1..``epoch`` (``history.csv``'s ``seconds``); NaN for None."""
    if epoch is None:
        return math.nan
    return sum(row.get("seconds", math.nan) for row in history if row["epoch"] <= epoch)


def collect_rows(specs: Sequence[RunSpec], *, target: float | None) -> list[dict[str, Any]]:
    """One row per run, with ``epochs_to_target`` and ``seconds_to_target`` against ``target``.

    ``target`` None means 90% of the best validation score over the runs that learned (so
    every method is measured against the same bar).
    """
    rows = [run_row(spec) for spec in specs]
    if target is None:
        best = [row["best_val_metric"] for row in rows
                if row["status"] == "ok" and math.isfinite(row["best_val_metric"])]
        target = DEFAULT_TARGET_FRACTION * max(best) if best else math.nan
    for spec, row in zip(specs, rows, strict=True):
        if row["status"] == "diverged":
            continue
        history = spec.folder.read_history()
        reached = epochs_to_target(history, row["val_metric"], target)
        row.update(target_metric=target, epochs_to_target=reached,
                   seconds_to_target=seconds_to(history, reached))
    return rows


def _setup_lines(cfg: Config, target_given: bool) -> list[str]:
    task = get_task(cfg.task)
    model = cfg.model
    arch = (f"{model.arch} depth {model.depth} width {model.width}" if model.arch == "deep_resnet"
            else f"{model.arch} ({model.encoder}, weights {model.encoder_weights or 'random init'})")
    data = cfg.data
    lines = [
        f"Task: {cfg.task}; data: `{data.root}` ({data.format}), image size {data.image_size}, "
        f"max samples per split {data.max_samples or 'all'}, augment {data.augment}",
        f"Model: {arch}",
        f"Training: {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
        f"max steps/epoch {cfg.train.max_steps_per_epoch or 'all'}, lr {cfg.optim.lr:g}, "
        f"weight decay {cfg.optim.weight_decay:g}, scheduler {cfg.train.scheduler}, "
        f"device {cfg.train.device}",
        f"Method settings: ZNorm granularity {cfg.optim.granularity}, min_ndim "
        f"{cfg.optim.min_ndim}; clipping max_norm {cfg.optim.max_norm:g}",
        f"Best checkpoint chosen on validation {task.label(task.selection_metric)}; "
        "test metrics are of that checkpoint.",
    ]
    if not target_given:
        lines.append(
            "Target for 'epochs to target': 90% of the best validation score over all runs "
            "(set train.target_metric to fix it)."
        )
    return lines


def write_outputs(
    rows: Sequence[dict[str, Any]], specs: Sequence[RunSpec], cfg: Config, out_dir: Path,
    method_overrides: Mapping[str, Sequence[str]] | None = None, measures: Sequence[str] = (),
) -> list[Path]:
    """Write ``results.csv``, ``overlap.csv`` (when the runs recorded the residual blocks'
    gradient overlap), the plots and ``results.md`` into ``out_dir``; returns the files.
    ``measures``: per-patient measures the tables and tests also compare."""
    methods = list(dict.fromkeys(spec.method for spec in specs))
    written = [out_dir / RESULTS_CSV]
    write_results_csv(rows, written[0], measures)
    # runs that diverged or did not learn are listed in the report and drawn apart, never pooled
    learned = [spec for spec, row in zip(specs, rows, strict=True) if row["status"] == "ok"]
    overlap = collect_overlap(learned)
    if overlap:
        written.append(out_dir / OVERLAP_CSV)
        write_overlap_csv(overlap, written[-1])
    images = write_plots(specs, rows, cfg, out_dir, overlap)
    timed = [row for row in rows if row["status"] == "ok"]
    if timed and math.isfinite(timed[0]["target_metric"]):
        images.append(_time_to_target_plot(timed, methods, cfg, out_dir / "time_to_target.png"))
    baseline = BASELINE if BASELINE in methods else methods[0]
    setup = _setup_lines(cfg, cfg.train.target_metric is not None)
    setup += [f"`{method}`: `{MODEL_METHODS[method].optimizer}` on the model with "
              f"{', '.join(f'`{item}`' for item in MODEL_METHODS[method].model_overrides)}"
              for method in methods if method in MODEL_METHODS]
    setup += [f"`{method}` only: {', '.join(f'`{item}`' for item in items)}"
              for method, items in (method_overrides or {}).items() if items]
    write_results_md(
        out_dir / "results.md", rows, task=cfg.task, methods=methods, baseline=baseline,
        setup_lines=setup,
        images=[image.name for image in images], measures=measures,
    )
    return [*written, *images, out_dir / "results.md"]


def _time_to_target_plot(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], cfg: Config, path: Path
) -> Path:
    """Epochs to target of the runs that learned, per method."""
    task = get_task(cfg.task)
    target = f"val {task.label(task.selection_metric)} >= {rows[0]['target_metric']:.4f}"
    epochs = {method: [row["epochs_to_target"] for row in rows if row["method"] == method]
              for method in methods}
    return plot_time_to_target(
        {method: values for method, values in epochs.items() if values},
        max_epochs=max(int(row["epochs"]) for row in rows), target=target, path=path,
    )


def collect_overlap(specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    """The overlap rows of every run that recorded them, with ``method`` and ``seed``."""
    return [
        {"method": spec.method, "seed": spec.seed, **row}
        for spec in specs
        if spec.folder.grad_stats_file.exists()
        for row in read_overlap(spec.folder.grad_stats_file)
    ]


def write_plots(
    specs: Sequence[RunSpec], rows: Sequence[dict[str, Any]], cfg: Config, out_dir: Path,
    overlap: Sequence[dict[str, Any]] = (),
) -> list[Path]:
    """Validation and training-loss curves of every run with a history: the runs that
    learned pooled per method, each other run drawn apart and labelled with its status
    (``rows``, one per spec); the gradient flow view of the runs that learned when stats were
    recorded; the gradient overlap per block and method when ``overlap``
    (:func:`collect_overlap`) has rows. No curve plot when no run has a history (every run
    diverged in its first epoch)."""
    task = get_task(cfg.task)
    val_key = f"val_{task.selection_metric}"
    val_curves: dict[str, list[list[float]]] = {}
    loss_curves: dict[str, list[list[float]]] = {}
    val_left_out: dict[str, list[tuple[str, list[float]]]] = {}
    loss_left_out: dict[str, list[tuple[str, list[float]]]] = {}
    for spec, row in zip(specs, rows, strict=True):
        if not spec.folder.history_file.exists():  # diverged before its first epoch ended
            continue
        history = spec.folder.read_history()
        val = [r.get(val_key, math.nan) for r in history]
        loss = [r.get("train_loss", math.nan) for r in history]
        if row["status"] == "ok":
            val_curves.setdefault(spec.method, []).append(val)
            loss_curves.setdefault(spec.method, []).append(loss)
        else:
            why = f"seed {spec.seed}, {row['status']}"
            val_left_out.setdefault(spec.method, []).append((why, val))
            loss_left_out.setdefault(spec.method, []).append((why, loss))
    images = []
    if val_curves or val_left_out:
        images += [
            plot_curves(val_curves, ylabel=f"validation {task.label(task.selection_metric)}",
                        title="Validation per epoch", path=out_dir / "val_metric.png",
                        left_out=val_left_out),
            plot_curves(loss_curves, ylabel="training loss (epoch mean)", title="Training loss",
                        path=out_dir / "train_loss.png", log_y=True, left_out=loss_left_out),
        ]
    learned = [spec for spec, row in zip(specs, rows, strict=True) if row["status"] == "ok"]
    grad_flow = _grad_flow(learned, out_dir / "grad_flow.png") if learned else None
    if grad_flow:
        images.append(grad_flow)
    if overlap:
        by_method: dict[str, list[dict[str, Any]]] = {}
        for row in overlap:
            by_method.setdefault(row["method"], []).append(row)
        images.append(plot_overlap(by_method, path=out_dir / "overlap.png"))
    return images


def _grad_flow(specs: Sequence[RunSpec], path: Path) -> Path | None:
    """Gradient flow of the first seed's runs, centred on the ZNorm method when there is one."""
    first_seed = min(spec.seed for spec in specs)
    snapshots = {
        spec.method: read_grad_stats(spec.folder.grad_stats_file)
        for spec in specs
        if spec.seed == first_seed and spec.folder.grad_stats_file.exists()
    }
    snapshots = {method: snaps for method, snaps in snapshots.items() if snaps}
    if not snapshots:
        return None
    focus = next((m for m in ZNORM_METHODS if m in snapshots), next(iter(snapshots)))
    return plot_grad_flow(snapshots, focus=focus, path=path)
