"""The medseg Streamlit page: pick a trained run, review its masks case by case, across a
split's patients and beside other runs; upload scans; score PCam patches.

A thin layer over the library: runs come from :mod:`medseg.app.run_cards`, models and each
patient's probabilities from the caches of :mod:`medseg.app.widgets` (shared, read-only, by
every session), scores from :mod:`medseg.app.cohort` and :mod:`medseg.app.scoring`, pictures
from :mod:`medseg.app.viewer`. The views: :mod:`medseg.app.lgg_page` (case, cohort, runs side
by side), :mod:`medseg.app.upload_page`, :mod:`medseg.app.pcam_page`.

Folders come from the environment (:mod:`medseg.app.settings`); the sidebar and the page let
a browser change them only when the folder picker is on (``MEDSEG_APP_FOLDER_PICKER=1``).
Any text from outside the code (file and folder names, error messages) is shown escaped
(:mod:`medseg.app.text`).

Run it with ``medseg app`` or ``streamlit run app/streamlit_app.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import streamlit as st

from medseg.app import settings
from medseg.app.cohort import THRESHOLD_STEP, THRESHOLDS
from medseg.app.curves import curve_label, history_frames
from medseg.app.lgg_page import VIEWS, Scorer, case_view, cohort_view, open_cases, runs_view
from medseg.app.pcam_page import pcam_view
from medseg.app.run_cards import RunCard, find_runs
from medseg.app.slice_view import display_settings
from medseg.app.text import code_span, escape_markdown
from medseg.app.upload_page import upload_view
from medseg.app.widgets import (
    CheckpointKey,
    checkpoint_key,
    folder_field,
    load_cached_model,
    show_error,
)
from medseg.engine.checkpoint import LoadedModel
from medseg.errors import MedsegError
from medseg.metrics import DEFAULT_THRESHOLD
from medseg.tasks import SEGMENTATION

NOTICE = (
    "**Research use only — not for diagnosis.** Masks and scores come from a research model "
    "and must not guide clinical decisions."
)
#: a frame around pictures (an all-white mask stays visible on the white page), pixels drawn
#: as squares when the browser scales a picture, less top space
PAGE_STYLE = (
    "<style>"
    '[data-testid="stImage"] img {border: 1px solid rgba(128, 128, 128, 0.5); border-radius: 2px;'
    " image-rendering: pixelated}"
    '[data-testid="stMainBlockContainer"] {padding-top: 2.5rem}'
    "</style>"
)
#: the PCam views, in tab order (the tab bar's key is "pcam_view")
PCAM_VIEWS = ("Patches", "Training curves")
#: widget states kept while their view is hidden (Streamlit forgets an unrendered widget's)
KEPT_STATES = ("patient", "patient_subset", "cohort_subset", "compare_runs", "curve_runs")


def keep_widget_states() -> None:
    """Keep the chosen patient, subsets, runs and slices across the views (tabs)."""
    for key in list(st.session_state):
        if isinstance(key, str) and (key in KEPT_STATES or key.startswith("slice:")):
            st.session_state[key] = st.session_state[key]


def checkpoint_choice(run: RunCard) -> Path | None:
    """The checkpoint the sidebar chose for ``run`` (best.pt, unless it was switched)."""
    chosen = st.session_state.get(f"checkpoint:{run.name}")
    names = [path.name for path in run.checkpoints]
    return run.path / chosen if chosen in names else run.checkpoint


def pick_run() -> tuple[RunCard, float, list[RunCard]] | None:
    """Sidebar: the runs folder, the run, its checkpoint and the threshold (and every run
    found, for the comparisons)."""
    with st.sidebar:
        st.header("Model")
        folder = folder_field("Runs folder", settings.models_dir(), "models_dir")
        runs = find_runs(folder)
        if not runs:
            st.info(f"No runs in {code_span(folder)}.")
            return None
        by_name = {run.name: run for run in runs}
        run = by_name[cast(str, st.selectbox("Run", list(by_name), key="run"))]
        names = [path.name for path in run.checkpoints]
        if names:
            st.radio("Checkpoint", names, horizontal=True, key=f"checkpoint:{run.name}")
        threshold = st.slider(
            "Probability threshold", THRESHOLDS[0], THRESHOLDS[-1], DEFAULT_THRESHOLD, THRESHOLD_STEP,
            key="threshold",
            help="A pixel (or patch) is tumour when its probability is at least this. "
                 "Moving it re-scores at once; the model is not run again.",
        )
    return run, threshold, runs


def run_card(run: RunCard, loaded: LoadedModel | None) -> None:
    """Sidebar: the run's card, for the checkpoint shown (its own epoch and metrics)."""
    with st.sidebar:
        rows = run.summary_rows(loaded.checkpoint_path.name, loaded.epoch) if loaded else run.summary_rows()
        st.markdown("\n".join(f"- **{label}:** {escape_markdown(value)}" for label, value in rows))
        for problem in run.problems:
            st.warning(escape_markdown(problem))


def training_curves(runs: list[RunCard], current: RunCard) -> None:
    """``history.csv`` of the chosen runs overlaid, one chart per quantity."""
    with_history = {run.name: run for run in runs if run.history}
    if not with_history:
        st.info("No run has a history.csv yet.")
        return
    chosen = st.multiselect(
        "Runs", list(with_history), key="curve_runs",
        default=[current.name] if current.name in with_history else [],
        help="Runs with a history.csv (one row per epoch); choose several to compare them.",
    )
    charts = list(history_frames([with_history[name] for name in chosen]).items())
    for start in range(0, len(charts), 2):  # two charts a row
        for column, (name, frame) in zip(st.columns(2), charts[start : start + 2], strict=False):
            column.caption(curve_label(name))
            column.line_chart(frame, x_label="epoch", height=220)


def segmentation_page(loaded: LoadedModel, key: CheckpointKey, threshold: float, run: RunCard,
                      runs: list[RunCard]) -> None:
    """The LGG views, one tab each; only the open tab runs."""
    display = display_settings()
    tabs = dict(zip(VIEWS, st.tabs(list(VIEWS), key="view", on_change="rerun", bind="query-params"), strict=True))
    case, cohort, side_by_side, upload, curves = tabs.values()
    if upload.open:
        with upload:
            upload_view(loaded, key, threshold, display)
    if curves.open:
        with curves:
            training_curves(runs, run)
    if not (case.open or cohort.open or side_by_side.open):
        return
    with tabs[next(name for name, tab in tabs.items() if tab.open)]:
        cases = open_cases()
        if cases is None:
            return
        scorer = Scorer(run, loaded.checkpoint_path, key, cases)
        if case.open:
            case_view(cases, run, scorer, threshold, display)
        elif cohort.open:
            cohort_view(cases, run, scorer, threshold)
        else:
            runs_view(cases, run, scorer, runs, threshold, display, checkpoint_choice)


def classification_page(loaded: LoadedModel, key: CheckpointKey, threshold: float, run: RunCard,
                        runs: list[RunCard]) -> None:
    """The PCam views: the patches, the training curves."""
    patches, curves = st.tabs(list(PCAM_VIEWS), key="pcam_view", on_change="rerun")
    if patches.open:
        with patches:
            pcam_view(loaded, key, threshold)
    if curves.open:
        with curves:
            training_curves(runs, run)


def main() -> None:
    st.set_page_config(page_title="medseg viewer", page_icon="🧠", layout="wide")
    keep_widget_states()
    st.html(PAGE_STYLE)
    st.warning(NOTICE, icon="⚠️")
    st.title("medseg viewer")
    choice = pick_run()
    if choice is None:
        where = "`MEDSEG_MODELS_DIR`"
        if settings.folder_picker():
            where += " (or the sidebar's runs folder)"
        st.info(
            "No trained model found. Train the demo model with "
            f"`medseg train configs/demo_lgg.yaml`, or point {where} at a folder of runs."
        )
        return
    run, threshold, runs = choice
    checkpoint = checkpoint_choice(run)
    if checkpoint is None:
        run_card(run, None)
        show_error(f"Cannot load run {run.name}: no checkpoint file (see the run's problems)")
        return
    try:
        key = checkpoint_key(checkpoint)
        loaded = load_cached_model(*key)
    except (MedsegError, OSError) as err:
        run_card(run, None)
        show_error(f"Cannot load run {run.name}: {err}")
        return
    run_card(run, loaded)
    st.caption(f"Run {code_span(run.name)}, checkpoint {code_span(checkpoint.name)}")
    page = segmentation_page if loaded.task == SEGMENTATION.name else classification_page
    page(loaded, key, threshold, run, runs)


if __name__ == "__main__":
    main()
