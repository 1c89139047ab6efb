"""The Training curves view: ``history.csv`` of the chosen runs overlaid, one chart per
quantity (:mod:`medseg.app.curves`), and, for the runs that recorded them
(``train.log_grad_stats``), the gradient-flow and gradient-overlap figures of ``medseg
compare``, drawn by its own readers and plots from each run's ``grad_stats.jsonl``."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import streamlit as st

from medseg.app.curves import (
    AXES,
    curve_chart,
    curve_label,
    curve_table,
    history_frames,
    legend_labels,
)
from medseg.app.run_cards import RunCard
from medseg.app.text import code_span
from medseg.app.widgets import show_error
from medseg.errors import MedsegError
from medseg.paths import is_regular_file
from medseg.runs import RunFolder


def training_curves(runs: list[RunCard], current: RunCard) -> None:
    """The chosen runs' curves, two charts a row, then their gradient figures (if any)."""
    with_history = {run.name: run for run in runs if run.history}
    if not with_history:
        st.info("No run has a history.csv yet.")
        return
    chosen = st.multiselect(
        "Runs", list(with_history), key="curve_runs",
        default=[current.name] if current.name in with_history else [],
        help="Runs with a history.csv (one row per epoch); choose several to compare them.",
    )
    axis = cast(str, st.radio("x axis", list(AXES), horizontal=True, key="curve_axis",
                    help="The epoch, or the seconds of training so far (history.csv's seconds, summed)."))
    shown = [with_history[name] for name in chosen]
    if shown:
        st.caption("Legend: each run's method (seed or run name when two share one); the tooltip "
                   "names the run. ◆ marks the epoch of its best.pt (best validation "
                   "selection metric).")
    labels = list(legend_labels(shown).values())
    charts = list(history_frames(shown).items())
    for start in range(0, len(charts), 2):  # two charts a row
        for column, (name, frame) in zip(st.columns(2), charts[start : start + 2], strict=False):
            column.caption(curve_label(name))
            column.altair_chart(curve_chart(curve_table(shown, frame), name, axis, labels).properties(height=220), width="stretch")
    gradient_figures(shown)


def gradient_figures(runs: Sequence[RunCard]) -> None:
    """Compare's gradient-flow figure (per-layer gradient norm, before and after the
    optimizer's transform) and gradient-overlap figure (residual blocks) of the ``runs`` that
    have a ``grad_stats.jsonl``; nothing when none has one."""
    files = {label: RunFolder(run.path).grad_stats_file
             for run, label in zip(runs, legend_labels(runs).values(), strict=True)
             if run.path is not None and is_regular_file(RunFolder(run.path).grad_stats_file)}
    if not files:
        return
    # imported here: importing the medseg.compare package loads its trainer (seconds)
    from medseg.compare.grad_stats import read_grad_stats, read_overlap
    from medseg.compare.plots import plot_grad_flow, plot_overlap

    try:
        snapshots = {label: read_grad_stats(path) for label, path in files.items()}
        overlap = {label: rows for label, path in files.items() if (rows := read_overlap(path))}
    except (MedsegError, OSError, KeyError, TypeError, ValueError) as err:
        show_error(f"Cannot read the gradient statistics: {err}")
        return
    snapshots = {label: snaps for label, snaps in snapshots.items() if snaps}
    st.subheader("Gradients")
    with tempfile.TemporaryDirectory() as folder:
        if snapshots:
            focus = next(iter(snapshots))
            st.caption(f"Gradient flow (as `medseg compare` draws it); left: {code_span(focus)}, "
                       "the first chosen run with gradient statistics")
            st.image(plot_grad_flow(snapshots, focus=focus, path=Path(folder) / "grad_flow.png").read_bytes())
        if overlap:
            st.caption("Gradient overlap in the residual blocks (as `medseg compare` draws it)")
            st.image(plot_overlap(overlap, path=Path(folder) / "overlap.png").read_bytes())
