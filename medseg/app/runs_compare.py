"""The plain parts of the "Runs side by side" view (no streamlit): how its panels wrap at a
zoom, the slices where the runs differ most, each patient's subset in the runs' splits, and
the comparison folder the runs may belong to.

Example:
    >>> panel_columns(width=64, zoom=3, panels=5)  # 192-px panels on a 960-px page
    4
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medseg.compare.report import RESULTS_CSV, read_results_csv, render_results_md
from medseg.compare.spec import BASELINE
from medseg.errors import MedsegError
from medseg.paths import is_regular_file

#: the main area's width, in screen pixels, the panels are laid out for: a little less than
#: a 1440-px window leaves beside the open sidebar (980 px in Chromium)
PAGE_PX = 960
#: the gap between two of Streamlit's columns (1 rem)
COLUMN_GAP_PX = 16
#: the per-slice table's sorting column
LARGEST_DIFFERENCE = "Largest difference"
#: a patient's subset when a run's split.json does not name it
UNKNOWN_SUBSET = "—"
ALL_PATIENTS = "all"


def panel_zoom(width: int, zoom: int, page_px: int = PAGE_PX) -> int:
    """The zoom the panels of a slice ``width`` pixels wide are drawn at: the display's, lower
    only where a panel would be wider than the page, never below 1 (native size)."""
    return max(1, min(zoom, page_px // width))


def panel_columns(width: int, zoom: int, panels: int, page_px: int = PAGE_PX,
                  gap_px: int = COLUMN_GAP_PX) -> int:
    """How many of ``panels`` pictures fit side by side on the page, each
    ``width * panel_zoom(...)`` pixels wide with a gap between two: at least 1, at most
    ``panels``."""
    panel = width * panel_zoom(width, zoom, page_px)
    return max(1, min(panels, (page_px + gap_px) // (panel + gap_px)))


def slice_differences(per_slice: Mapping[str, Sequence[Mapping]]) -> pd.DataFrame:
    """One patient's slices across runs: ``Slice``, each run's slice Dice (a column per run,
    in order) and :data:`LARGEST_DIFFERENCE`, the largest difference between two runs' Dice
    on that slice (the highest minus the lowest), sorted by it, largest first (then by slice).

    Args:
        per_slice: each run's :func:`~medseg.app.scoring.score_volume` ``per_slice`` rows
            (``slice``, ``dice``), one per slice of the same patient.
    """
    runs = list(per_slice)
    dice = {run: {int(row["slice"]): float(row["dice"]) for row in per_slice[run]} for run in runs}
    numbers = sorted(dice[runs[0]]) if runs else []
    frame = pd.DataFrame({"Slice": numbers})
    for run in runs:
        frame[run] = [dice[run].get(number, float("nan")) for number in numbers]
    frame[LARGEST_DIFFERENCE] = frame[runs].max(axis=1) - frame[runs].min(axis=1)
    return frame.sort_values([LARGEST_DIFFERENCE, "Slice"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)


def patient_subsets(splits: Mapping[str, Mapping[str, str]], names: Sequence[str]) -> dict[str, str]:
    """Each patient's subset in the runs' ``split.json`` (``splits``: run -> patient ->
    subset): the subset when every run agrees, else each run's (``a: test, b: train``);
    :data:`UNKNOWN_SUBSET` where a run's split does not name the patient."""
    shown = {}
    for name in names:
        each = {run: split.get(name, UNKNOWN_SUBSET) for run, split in splits.items()}
        values = set(each.values())
        shown[name] = values.pop() if len(values) == 1 else ", ".join(f"{run}: {s}" for run, s in each.items())
    return shown


def subset_patients(splits: Mapping[str, Mapping[str, str]], names: Sequence[str], subset: str) -> list[str]:
    """The patients of ``names`` in ``subset`` in every run's split (:data:`ALL_PATIENTS`:
    every one), so a mean over them never mixes one run's training patients with another's
    test patients."""
    if subset == ALL_PATIENTS:
        return list(names)
    return [name for name in names if all(split.get(name) == subset for split in splits.values())]


#: a run folder of a comparison: <compare>/runs/<method>/seed<k>
SEED_FOLDER = re.compile(r"seed\d+")


@dataclass(frozen=True)
class Comparison:
    """A comparison folder (``medseg compare``'s output) and the methods of the chosen runs."""

    folder: Path
    methods: tuple[str, ...]

    def report(self, task: str) -> str:
        """Compare's own report (:func:`~medseg.compare.report.render_results_md`) of these
        methods over all the comparison's seeds, from its ``results.csv``: each method's cells
        (mean ± sd [interval]) and the paired tests against the baseline it chooses.

        Raises:
            MedsegError: when ``results.csv`` cannot be read or lacks one of the methods.
        """
        path = self.folder / RESULTS_CSV
        rows = read_results_csv(path)
        absent = [method for method in self.methods if all(row["method"] != method for row in rows)]
        if absent:
            raise MedsegError(f"{path}: no run of method {', '.join(absent)}")
        baseline = BASELINE if BASELINE in self.methods else self.methods[0]
        return render_results_md([row for row in rows if row["method"] in self.methods],
                                 task=task, methods=self.methods, baseline=baseline)


def comparison_of(run_folders: Sequence[Path]) -> Comparison | None:
    """The comparison every one of ``run_folders`` belongs to (each
    ``<compare>/runs/<method>/seed<k>``, one ``<compare>`` holding ``results.csv``); None
    when they are not all of one."""
    resolved = [folder.resolve() for folder in run_folders]
    if not resolved or any(folder.parent.parent.name != "runs" or not SEED_FOLDER.fullmatch(folder.name)
                           for folder in resolved):
        return None
    compares = {folder.parents[2] for folder in resolved}
    if len(compares) != 1:
        return None
    compare = compares.pop()
    if not is_regular_file(compare / RESULTS_CSV):
        return None
    methods = tuple(dict.fromkeys(folder.parent.name for folder in resolved))
    return Comparison(compare, methods)
