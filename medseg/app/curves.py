"""Training curves of several runs, overlaid: one chart per quantity of ``history.csv``, each
run labelled by its method, its best epoch marked, against the epoch or the wall clock.

A run's method is the name ``medseg compare`` gives it (:func:`method_label`); its best epoch
is the one that chose its ``best.pt`` (:func:`medseg.runs.best_epoch` on the task's selection
metric); its colour comes from :mod:`medseg.app.palette`.

Example:
    >>> runs = find_runs("models")
    >>> frames = history_frames(runs)
    >>> list(frames)
    ['train_loss', 'val_dice', 'val_iou', 'val_patient_dice', 'val_empty_fp_rate', 'lr']
    >>> chart = curve_chart(curve_table(runs, frames["val_dice"]), "val_dice", "epoch")
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import altair as alt
import pandas as pd

from medseg.app.palette import run_colours
from medseg.app.run_cards import RunCard
from medseg.config import Config, apply_overrides
from medseg.runs import best_epoch
from medseg.tasks import get_task, metric_label

#: history.csv columns that describe the machine, not the training (left out of the curves)
NOT_CURVES = frozenset({"epoch", "seconds", "images_per_s"})
#: the x axes a curve is drawn against: the epoch, or the seconds of training so far
AXES = {"epoch": "epoch", "wall-clock": "wall_clock_s"}
AXIS_TITLES = {"epoch": "epoch", "wall-clock": "wall-clock time (s of training, cumulative)"}


def curve_label(column: str) -> str:
    """The on-screen name of a ``history.csv`` column ("val_dice" -> "validation Dice")."""
    if column.startswith("val_"):
        return f"validation {metric_label(column.removeprefix('val_'))}"
    return {"train_loss": "training loss", "lr": "learning rate"}.get(column, column)


def _order(column: str) -> int:
    """Training loss first, then the validation metrics, then the learning rate."""
    return 0 if column == "train_loss" else 2 if column == "lr" else 1


def history_frames(runs: Sequence[RunCard]) -> dict[str, pd.DataFrame]:
    """One table per ``history.csv`` column any of ``runs`` has: index epoch, one column per
    run (named by the run), NaN where a run has no value for an epoch. Validation metrics keep
    the order of their first appearance."""
    columns: list[str] = []
    for run in runs:
        for row in run.history:
            columns += [key for key in row if key not in NOT_CURVES and key not in columns]
    frames = {}
    for column in sorted(columns, key=_order):
        series = {
            run.name: pd.Series({int(row["epoch"]): row[column] for row in run.history
                                 if column in row and "epoch" in row}, dtype=float)
            for run in runs
        }
        frame = pd.DataFrame(series)
        frame.index.name = "epoch"
        frames[column] = frame.sort_index()
    return frames


def method_label(config: Config) -> str:
    """The method a run of ``config`` trains, named as ``medseg compare`` names it: a model
    method of :data:`medseg.compare.spec.MODEL_METHODS` when the config is its optimizer on its
    model (``adam+bgn``), else ``optim.name`` (``adam+znorm``, ``sgd``...)."""
    # imported here: importing the medseg.compare package loads its trainer (seconds), and
    # only the Training curves tab needs this
    from medseg.compare.spec import MODEL_METHODS

    raw = config.to_dict()
    for method, spec in MODEL_METHODS.items():
        if config.optim.name == spec.optimizer and apply_overrides(config.to_dict(), list(spec.model_overrides)) == raw:
            return method
    return config.optim.name


def legend_labels(runs: Sequence[RunCard]) -> dict[str, str]:
    """Run name -> the run's legend label: its method (:func:`method_label`), with its seed
    when another run has the same method (``adam+znorm (seed 1)``), or its name when seeds do
    not tell them apart either; the run's name when its config cannot be read."""
    methods = {run.name: method_label(run.config) if run.config else run.name for run in runs}
    groups: dict[str, list[RunCard]] = defaultdict(list)
    for run in runs:
        groups[methods[run.name]].append(run)
    labels = {}
    for method, members in groups.items():
        seeds = [run.config.seed if run.config else None for run in members]
        by_seed = None not in seeds and len(set(seeds)) == len(seeds)
        for run, seed in zip(members, seeds, strict=True):
            suffix = f"seed {seed}" if by_seed else run.name
            labels[run.name] = method if len(members) == 1 else f"{method} ({suffix})"
    return labels


def best_epoch_of(run: RunCard) -> int | None:
    """The epoch whose checkpoint became the run's ``best.pt``: the trainer's rule
    (:func:`medseg.runs.best_epoch`) on the task's selection metric in ``history.csv``; None
    when the run's task is unknown or it has no history."""
    if run.task is None:
        return None
    found = best_epoch(run.history, f"val_{get_task(run.task).selection_metric}")
    return found[0] if found else None


def wall_clock(run: RunCard) -> dict[int, float]:
    """Epoch -> seconds of training up to that epoch's end: the running sum of
    ``history.csv``'s ``seconds`` (each epoch's own time); rows without it are left out."""
    clock, total = {}, 0.0
    for row in sorted(run.history, key=lambda row: row.get("epoch", 0)):
        if "epoch" in row and "seconds" in row:
            total += row["seconds"]
            clock[int(row["epoch"])] = total
    return clock


def curve_table(runs: Sequence[RunCard], frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch with a value in ``frame`` (a table of :func:`history_frames`):
    ``run`` (its name), ``method`` (its legend label), ``epoch``, ``wall_clock_s``, ``value``
    and ``best`` (the epoch of its ``best.pt``); runs in the order given."""
    labels = legend_labels(runs)
    rows = []
    for run in runs:
        clock, best = wall_clock(run), best_epoch_of(run)
        series = frame[run.name].dropna() if run.name in frame else pd.Series(dtype=float)
        rows += [{"run": run.name, "method": labels[run.name], "epoch": int(epoch),
                  "wall_clock_s": clock.get(int(epoch)), "value": float(value), "best": epoch == best}
                 for epoch, value in series.items()]
    columns = ["run", "method", "epoch", "wall_clock_s", "value", "best"]
    return pd.DataFrame(rows, columns=columns)


def curve_chart(table: pd.DataFrame, column: str, axis: str, labels: Sequence[str] | None = None) -> alt.LayerChart:
    """The chart of one quantity: a line per run coloured by :func:`medseg.app.palette.run_colours`
    (legend: the method labels; tooltip: the run's name, epoch, wall clock and value) and a
    larger diamond at each run's best epoch.

    Args:
        table: rows of :func:`curve_table`.
        column: the ``history.csv`` column drawn (the y axis title).
        axis: a key of :data:`AXES`: "epoch" or "wall-clock".
        labels: the legend's labels in order (default: the table's); pass every chart the same
            ones so a run keeps its colour across charts.
    """
    labels = list(dict.fromkeys(table["method"])) if labels is None else list(labels)
    colours = run_colours(labels)
    x = alt.X(f"{AXES[axis]}:Q", title=AXIS_TITLES[axis],
              axis=alt.Axis(tickMinStep=1) if axis == "epoch" else alt.Axis())
    y = alt.Y("value:Q", title=curve_label(column), scale=alt.Scale(zero=False))
    colour = alt.Color("method:N", title=None, legend=alt.Legend(orient="bottom", columns=2),
                       scale=alt.Scale(domain=labels, range=[colours[label] for label in labels]))
    tooltip = [alt.Tooltip("run:N", title="run"), alt.Tooltip("method:N", title="method"),
               alt.Tooltip("epoch:Q", title="epoch"),
               alt.Tooltip("wall_clock_s:Q", title="wall clock (s)", format=".0f"),
               alt.Tooltip("value:Q", title=curve_label(column), format=".4g")]
    base = alt.Chart(table).encode(x=x, y=y, color=colour, tooltip=tooltip)
    lines = base.mark_line(point=alt.OverlayMarkDef(size=20))
    best = base.transform_filter(alt.datum.best).mark_point(shape="diamond", size=160, filled=True,
                                                            opacity=1)
    return alt.LayerChart(layer=[lines, best])
