"""Training curves of several runs, overlaid: one table per quantity of ``history.csv``.

Example:
    >>> frames = history_frames(find_runs("models"))
    >>> list(frames)  # then st.line_chart(frames["val_dice"]) draws one line per run
    ['train_loss', 'val_dice', 'val_iou', 'val_patient_dice', 'val_empty_fp_rate', 'lr']
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from medseg.app.run_cards import RunCard
from medseg.tasks import metric_label

#: history.csv columns that describe the machine, not the training (left out of the curves)
NOT_CURVES = frozenset({"epoch", "seconds", "images_per_s"})


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
