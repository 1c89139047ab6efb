"""The medseg Streamlit page: pick a trained run, an export (ONNX, TorchScript, MONAI bundle)
or a cross-validation folder (the ensemble of its folds, with flip TTA and its postprocessing),
review its masks case by case, across a split's patients and beside other runs; upload scans;
score PCam patches.

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
from medseg.app.curves_page import training_curves
from medseg.app.lgg_page import VIEWS, Scorer, case_view, cohort_view, open_cases, runs_view
from medseg.app.links import (
    SETTING_BY_KEY,
    default,
    link_text,
    linked_run,
    linked_settings,
    settings_params,
)
from medseg.app.pcam_page import pcam_view
from medseg.app.review_models import ReviewModel
from medseg.app.run_cards import RunCard, find_runs
from medseg.app.slice_view import display_settings
from medseg.app.text import code_span, escape_markdown
from medseg.app.upload_page import upload_view
from medseg.app.widgets import (
    RESEARCH_NOTICE,
    ModelKey,
    folder_field,
    load_cached_model,
    model_key,
    show_error,
)
from medseg.engine.probability import TTA_MODES
from medseg.errors import MedsegError
from medseg.postprocessing import Postprocessing
from medseg.runs import CvFolder
from medseg.tasks import SEGMENTATION, get_task

NOTICE = (
    f"**{RESEARCH_NOTICE}** Masks and scores come from a research model "
    "and must not guide clinical decisions."
)
#: a frame around pictures (an all-white mask stays visible on the white page), pixels drawn
#: as squares when the browser scales a picture, less top space
PAGE_STYLE = (
    "<style>"
    '[data-testid="stImage"] img {border: 1px solid rgba(128, 128, 128, 0.5); border-radius: 2px;'
    " image-rendering: pixelated;"
    " max-width: 100%; height: auto}"
    # a picture is never wider than its column, whatever the zoom
    '[data-testid="stImage"], [data-testid="stImageContainer"] {max-width: 100%}'
    '[data-testid="stColumn"] {min-width: 0}'
    '[data-testid="stMainBlockContainer"] {padding-top: 2.5rem}'
    "</style>"
)
#: the PCam views, in tab order (the tab bar's key is "pcam_view")
PCAM_VIEWS = ("Patches", "Training curves")
#: widget states kept while their view is hidden (Streamlit forgets an unrendered widget's)
KEPT_STATES = ("patient", "patient_subset", "cohort_subset", "compare_runs", "curve_runs", "curve_axis", "tta")
#: how the caption names each pass of flip TTA (medseg.tasks.Task.tta_flips)
FLIP_NAMES = {(): "as is", (-1,): "left-right", (-2,): "up-down", (-2, -1): "both"}
#: what the page says of the weights of an export or CV folder trained on medseg's demo data
SYNTHETIC_WEIGHTS = ("**Trained on medseg's demo data, whose tumours are SYNTHETIC**: this "
                     "model's masks say nothing about real tumours.")


def query() -> dict[str, list[str]]:
    """The page's URL query parameters, each with all its values."""
    return {name: st.query_params.get_all(name) for name in st.query_params}


def apply_link() -> None:
    """A session's first run: the settings its link names become the widgets' states."""
    if "_link_read" in st.session_state:
        return
    st.session_state["_link_read"] = True
    for key, value in linked_settings(query()).items():
        st.session_state[key] = value


#: the settings a link writes for each kind of page (the others are not shown there)
MODEL_SETTINGS = ("threshold",)
CV_SETTINGS = ("tta", "postprocess")
DISPLAY_SETTINGS = ("large_view", "sequence", "overlay_style", "overlay_opacity", "overlay_labels", "zoom", "window")


def write_link(run: RunCard, checkpoint: Path, segmentation: bool) -> None:
    """Put the model shown and the settings in the URL (the views add their patient, slice,
    subset and runs), dropping what this page does not show."""
    keys = [*MODEL_SETTINGS, *(CV_SETTINGS if run.kind == "cv" else ()),
            *(DISPLAY_SETTINGS if segmentation else ())]
    params = {"run": [run.name], "kind": [run.kind],
              **({"checkpoint": [checkpoint.name]} if run.kind == "run" else {}),
              **settings_params({key: st.session_state[key] for key in keys if key in st.session_state})}
    written = ("run", "kind", "checkpoint", *(SETTING_BY_KEY[key].param for key in SETTING_BY_KEY))
    for name in written:
        if name in params:
            st.query_params[name] = params[name]
        elif name in st.query_params:
            del st.query_params[name]


def link_control() -> None:
    """Sidebar: the link to what the page shows, to copy."""
    with st.sidebar.expander("Link to this view"):
        st.code(link_text(query()), language=None, wrap_lines=True)
        st.caption("Add this to the page's address (after the host and port your browser shows; "
                   "the server cannot know the address your browser uses). The link opens this "
                   "run, checkpoint, threshold, patient, slice, view and display.")


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


def pick_run() -> tuple[RunCard | None, float, list[RunCard]]:
    """Sidebar: the runs folder, the run (a link's, on a session's first run), its checkpoint
    and the threshold, and every run found (for the comparisons). No run: the folder holds
    none, or a link names one it does not hold (said in one line)."""
    with st.sidebar:
        st.header("Model")
        folder = folder_field("Runs folder", settings.models_dir(), "models_dir")
        runs = find_runs(folder)
        if not runs:
            st.info(f"No runs in {code_span(folder)}.")
            return None, default("threshold"), runs
        by_name = {run.name: run for run in runs}
        if "run" not in st.session_state:
            linked, problem = linked_run(runs, query())
            if problem is not None:
                show_error(f"{problem} (runs folder: {folder})")
                st.button("Open the newest run instead", on_click=st.session_state.update,
                          kwargs={"run": runs[0].name})
                return None, default("threshold"), runs
            if linked is not None:
                st.session_state["run"] = linked.name
                checkpoint = (query().get("checkpoint") or [""])[0]
                if linked.kind == "run" and checkpoint in [path.name for path in linked.checkpoints]:
                    st.session_state[f"checkpoint:{linked.name}"] = checkpoint
        run = by_name[cast(str, st.selectbox("Run", list(by_name), key="run"))]
        names = [path.name for path in run.checkpoints]
        if names and run.kind == "run":
            st.radio("Checkpoint", names, horizontal=True, key=f"checkpoint:{run.name}")
        if run.kind == "cv":
            st.radio("Test-time augmentation", TTA_MODES, horizontal=True, key="tta",
                     help="flip: the mean of the ensemble's probabilities over the task's "
                          "mirrorings, each mirrored back (as medseg predict --tta flip).")
        st.session_state.setdefault("threshold", default("threshold"))
        threshold = st.slider(
            "Probability threshold", THRESHOLDS[0], THRESHOLDS[-1], step=THRESHOLD_STEP,
            key="threshold",
            help="A pixel (or patch) is tumour when its probability is at least this. "
                 "Moving it re-scores at once; the model is not run again.",
        )
    return run, threshold, runs


def run_card(run: RunCard, model: ReviewModel | None) -> None:
    """Sidebar: the run's card, for the checkpoint shown (its own epoch and metrics); an
    export's or CV folder's facts."""
    with st.sidebar:
        rows = run.summary_rows(model.path.name, model.epoch) if model else run.summary_rows()
        st.markdown("\n".join(f"- **{label}:** {escape_markdown(value)}" for label, value in rows))
        if run.synthetic:
            st.info(SYNTHETIC_WEIGHTS)
        for problem in run.problems:
            st.warning(escape_markdown(problem))


def model_key_of(run: RunCard, checkpoint: Path, tta: str = "none") -> ModelKey:
    """The cache key of what ``run`` opens: its checkpoint, its export's model file, or (a CV
    folder) the folder, renewed when a member or the postprocessing record changes.

    Raises:
        OSError: when a file cannot be read.
    """
    if run.kind != "cv":
        return model_key(run.kind, checkpoint)
    record = CvFolder(run.path).postprocessing_file
    return model_key("cv", run.path, (*run.checkpoints, *([record] if record.exists() else [])), tta)


def postprocessing_choice(model: ReviewModel) -> Postprocessing | None:
    """Sidebar: a CV folder's recorded postprocessing, on by default, with a toggle that shows
    the raw mask; None when there is none or the toggle is off."""
    step = model.postprocessing
    if step is None or step.is_identity:
        return None
    st.session_state.setdefault("postprocess", default("postprocess"))
    with st.sidebar:
        on = st.toggle("Postprocessed mask", key="postprocess",
                       help=f"The step the cross-validation chose: {step.describe()}. Off: the raw mask.")
    return step if on else None


def model_caption(run: RunCard, model: ReviewModel, tta: str, step: Postprocessing | None) -> str:
    """What the page reviews, in one line: the run and checkpoint, the export, or the
    ensemble's members, TTA and postprocessing."""
    if run.kind == "run":
        return f"Run {code_span(run.name)}, checkpoint {code_span(model.path.name)}"
    if run.kind != "cv":
        return f"Export {code_span(run.name)} ({run.kind}), {code_span(model.path.relative_to(run.path).as_posix())}"
    members = ", ".join(code_span(path.relative_to(run.path).as_posix()) for path in model.members)
    flips = get_task(model.task).tta_flips
    tta_text = (f"flip (mean of {len(flips)} passes: {', '.join(FLIP_NAMES[dims] for dims in flips)})"
                if tta == "flip" else "none")
    recorded = model.postprocessing.describe() if model.postprocessing else "none"
    shown = "postprocessed" if step is not None else "raw"
    return (f"Ensemble {code_span(run.name)}: mean of {len(model.members)} members ({members}); "
            f"TTA: {tta_text}; postprocessing: {escape_markdown(recorded)}, mask shown {shown}")


def segmentation_page(model: ReviewModel, key: ModelKey, threshold: float, run: RunCard,
                      runs: list[RunCard], step: Postprocessing | None) -> None:
    """The LGG views, one tab each; only the open tab runs."""
    display = display_settings()
    tabs = dict(zip(VIEWS, st.tabs(list(VIEWS), key="view", on_change="rerun", bind="query-params"), strict=True))
    case, cohort, side_by_side, upload, curves = tabs.values()
    if upload.open:
        with upload:
            upload_view(model, key, threshold, display, step)
    if curves.open:
        with curves:
            training_curves(runs, run)
    if not (case.open or cohort.open or side_by_side.open):
        return
    with tabs[next(name for name, tab in tabs.items() if tab.open)]:
        cases = open_cases(run)
        if cases is None:
            return
        scorer = Scorer(run, cast(Path, checkpoint_choice(run)), key, cases, step)
        if case.open:
            case_view(cases, run, scorer, threshold, display)
        elif cohort.open:
            cohort_view(cases, run, scorer, threshold)
        else:
            runs_view(cases, run, scorer, runs, threshold, display, checkpoint_choice, model_key_of)


def classification_page(model: ReviewModel, key: ModelKey, threshold: float, run: RunCard,
                        runs: list[RunCard], step: Postprocessing | None) -> None:
    """The PCam views: the patches, the training curves."""
    patches, curves = st.tabs(list(PCAM_VIEWS), key="pcam_view", on_change="rerun")
    if patches.open:
        with patches:
            pcam_view(model, key, threshold, run)
    if curves.open:
        with curves:
            training_curves(runs, run)


def main() -> None:
    st.set_page_config(page_title="medseg viewer", page_icon="🧠", layout="wide")
    keep_widget_states()
    apply_link()
    st.html(PAGE_STYLE)
    st.sidebar.title("medseg viewer")  # the main area starts with the notice, then the image
    st.warning(NOTICE, icon="⚠️")
    run, threshold, runs = pick_run()
    if not runs:
        where = "`MEDSEG_MODELS_DIR`"
        if settings.folder_picker():
            where += " (or the sidebar's runs folder)"
        st.info(
            "No trained model found. Train the demo model with "
            f"`medseg train configs/demo_lgg.yaml`, or point {where} at a folder of runs."
        )
        return
    if run is None:  # a link named a run the folder does not hold (said)
        return
    checkpoint = checkpoint_choice(run)
    if checkpoint is None:
        run_card(run, None)
        show_error(f"Cannot load run {run.name}: no checkpoint file (see the run's problems)")
        return
    tta = cast(str, st.session_state.get("tta", "none")) if run.kind == "cv" else "none"
    try:
        key = model_key_of(run, checkpoint, tta)
        model = load_cached_model(*key)
    except (MedsegError, OSError) as err:
        run_card(run, None)
        show_error(f"Cannot load run {run.name}: {err}")
        return
    run_card(run, model)
    step = postprocessing_choice(model)
    st.caption(model_caption(run, model, tta, step))
    segmentation = model.task == SEGMENTATION.name
    write_link(run, checkpoint, segmentation)
    page = segmentation_page if segmentation else classification_page
    page(model, key, threshold, run, runs, step)
    link_control()


if __name__ == "__main__":
    main()
