"""The LGG views: one case in a large viewer, the cohort of a split, and runs side by side.

Patients are labelled and filtered by the run's ``split.json``; the page opens on the test
patient with the lowest Dice. Every score comes from :mod:`medseg.app.cohort` (itself
:func:`medseg.app.scoring.score_volume`), so the case, the cohort table, the runs table and the
Dice-versus-threshold curves agree. A model with a postprocessing step (a CV folder's) is
scored and drawn on its postprocessed masks (:func:`medseg.app.cohort.apply_step`) unless the
page's toggle asks for the raw mask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pandas as pd
import streamlit as st

from medseg.app import settings
from medseg.app.case_export import (
    WORST_SLICES,
    ViewFacts,
    case_report_html,
    measure_rows,
    report_file_name,
    slice_picture,
    view_file_name,
    view_png,
    worst_first,
)
from medseg.app.cohort import (
    THRESHOLDS,
    CohortCache,
    PatientRecord,
    apply_step,
    best_threshold,
    cohort_frame,
    fingerprint,
    lowest_dice,
    mean_dice_curve,
    measure_patient,
    runs_frame,
    score_patient,
    stale,
)
from medseg.app.disagreement import disagreement
from medseg.app.links import link_text, missing_runs
from medseg.app.run_cards import RunCard
from medseg.app.runs_compare import (
    ALL_PATIENTS,
    LARGEST_DIFFERENCE,
    comparison_of,
    panel_columns,
    panel_zoom,
    patient_subsets,
    slice_differences,
    subset_patients,
)
from medseg.app.scoring import PatientSlices, score_volume
from medseg.app.slice_view import (
    EMPTY_SLICE_NOTE,
    Display,
    slice_metrics,
    slice_view,
)
from medseg.app.text import code_span, escape_markdown
from medseg.app.viewer import compose, upscale
from medseg.app.volume_viewer import stack_viewer
from medseg.app.widgets import (
    EXPERT,
    SYNTHETIC_REFERENCE,
    ModelKey,
    cached_case,
    cached_probabilities,
    choose_slice,
    folder_field,
    largest_area_slice,
    legend,
    list_cases,
    load_cached_model,
    picture,
    score_text,
    show_error,
    synthetic_note,
)
from medseg.data.lgg import Patient
from medseg.errors import MedsegError
from medseg.metrics import binarize
from medseg.metrics.lesions import LesionMatching, match_lesions
from medseg.postprocessing import Postprocessing
from medseg.tasks import SEGMENTATION

#: the subsets of a run's split.json, in the views' order
SPLIT_CHOICES = ("test", "val", "train")
#: an unscored cell of the runs table
UNSCORED = "—"
#: patient predictions scored for a cohort without asking (more wait for a button)
AUTO_SCORED = 16
CASE_FOLDER = "Case folder (LGG kaggle_3m layout)"
#: the main area's line over demo data (the sidebar's note says more)
DEMO_DATA_LINE = "Demo data: the tumours are SYNTHETIC (see the sidebar's note)."
#: the LGG views, in tab order (the tab bar's key is "view")
VIEWS = ("Case", "Cohort", "Runs side by side", "Upload a scan", "Training curves")


@dataclass
class Cases:
    """The LGG folder of the views and its patients."""

    folder: str
    patients: dict[str, Patient]
    reference: str  # "Expert" or "Reference (synthetic)"

    def fingerprints(self, names: list[str]) -> dict[str, str]:
        return {name: _fingerprints(self.folder).get(name, "") for name in names}


@st.cache_data(ttl=30, show_spinner=False)
def _fingerprints(folder: str) -> dict[str, str]:
    """Every patient's :func:`~medseg.app.cohort.fingerprint` (refreshed every 30 s)."""
    return {patient.name: fingerprint(patient) for patient in list_cases(folder)}


def open_cases(run: RunCard) -> Cases | None:
    """The case folder field (by default the run's own data folder) and the demo-data note;
    None (with the error) when unreadable."""
    configured = settings.case_folder(run.config.data.root if run.config else None)
    with st.sidebar:  # the image comes first in the main area
        st.header("Cases")
        folder = folder_field(
            CASE_FOLDER, configured.path, "lgg_dir",
            help=f"A kaggle_3m folder, or the lgg-mri-segmentation folder that holds it. "
                 f"Configured: {configured.source}.",
        )
    problem = configured.problem(CASE_FOLDER) if folder == str(configured.path) else None
    if problem is not None:
        show_error(problem)
        st.info("Write the demo cases with `medseg demo-data lgg demo_data/lgg`.")
        return None
    try:
        patients = {patient.name: patient for patient in list_cases(folder)}
        _fingerprints(folder)
    except (MedsegError, OSError) as err:
        show_error(str(err))
        st.info("Write the demo cases with `medseg demo-data lgg demo_data/lgg`.")
        return None
    with st.sidebar:
        synthetic = synthetic_note(folder)
    if synthetic:
        st.caption(f"**{DEMO_DATA_LINE}**")
    return Cases(folder, patients, SYNTHETIC_REFERENCE if synthetic else EXPERT)


# ---------------------------------------------------------------- cohorts


@st.cache_resource(show_spinner=False)
def _unsaved_cohorts() -> dict[str, dict[str, PatientRecord]]:
    """Cohorts whose run folder cannot be written, kept for this server's life."""
    return {}


@dataclass
class Scorer:
    """One model's cohort over the case folder: cached records, scored on demand (of the
    postprocessed masks when there is a ``step``)."""

    run: RunCard
    checkpoint: Path
    key: ModelKey
    cases: Cases
    step: Postprocessing | None = None

    @functools.cached_property
    def cache(self) -> CohortCache:
        kind, _, modified_ns, tta = self.key
        if kind == "run":
            return CohortCache(self.run.path, self.checkpoint, self.cases.folder)
        variant = f"{kind}-tta_{tta}-{'raw' if self.step is None else 'post'}"
        return CohortCache(self.run.path, self.checkpoint, self.cases.folder, variant, modified_ns)

    @functools.cached_property
    def records(self) -> dict[str, PatientRecord]:
        unsaved = _unsaved_cohorts().get(str(self.cache.path), {})
        return {**self.cache.load(), **unsaved}

    def missing(self, names: list[str]) -> list[str]:
        return stale(self.records, self.cases.fingerprints(names))

    def score(self, names: list[str], progress: bool = True) -> str | None:
        """Score the patients of ``names`` without a current record and save them; None, or
        why the cache file could not be written."""
        missing = self.missing(names)
        if not missing:
            return None
        bar = st.progress(0.0, text=f"Scoring {len(missing)} patients with {self.run.name}…") if progress else None
        prints = self.cases.fingerprints(missing)
        for done, name in enumerate(missing, start=1):
            case = cached_case(self.cases.folder, name, prints[name])
            probs = cached_probabilities(self.key, self.cases.folder, name, prints[name])
            self.records[name] = score_patient(name, probs, case.masks, case.numbers, prints[name],
                                               step=self.step)
            if bar is not None:
                bar.progress(done / len(missing), text=f"Scored {done}/{len(missing)} patients "
                             f"with {escape_markdown(self.run.name)}")
        if bar is not None:
            bar.empty()
        problem = self.cache.save(self.records)
        if problem is not None:
            _unsaved_cohorts()[str(self.cache.path)] = dict(self.records)
        return problem

    def measure(self, names: list[str], threshold: float) -> str | None:
        """Add the measures at ``threshold`` to the scored patients of ``names`` that lack
        them and save; None, or why the cache file could not be written."""
        lacking = [name for name in names
                   if name in self.records and self.records[name].measures_at(threshold) is None]
        if not lacking:
            return None
        prints = self.cases.fingerprints(lacking)
        for name in lacking:
            case = cached_case(self.cases.folder, name, prints[name])
            probs = cached_probabilities(self.key, self.cases.folder, name, prints[name])
            self.records[name] = measure_patient(self.records[name], probs, case.masks, threshold,
                                                 self.step)
        problem = self.cache.save(self.records)
        if problem is not None:
            _unsaved_cohorts()[str(self.cache.path)] = dict(self.records)
        return problem

    def where(self) -> str:
        """Where the cohort is kept, for a caption."""
        if str(self.cache.path) in _unsaved_cohorts():
            return "kept in memory until the server stops (the run folder is read-only)"
        return f"cached in {code_span(str(self.cache.path))}"


# ---------------------------------------------------------------- choosing a patient


def subset_names(cases: Cases, split: Mapping[str, str], subset: str) -> list[str]:
    """The case folder's patients of ``subset`` ("all": every one)."""
    return [name for name in cases.patients if subset == ALL_PATIENTS or split.get(name) == subset]


def patients_phrase(subset: str) -> str:
    """A subset's patients in a sentence: "the test patients", "all patients"."""
    return "all patients" if subset == ALL_PATIENTS else f"the {subset} patients"


def choose_patient(cases: Cases, split: dict[str, str], scorer: Scorer, threshold: float) -> str:
    """The subset filter (test first) and the patient picker, each patient labelled with its
    subset (the cohort view lists their Dice). The first visit opens the test patient with the lowest
    Dice (scoring the test patients once, cached); a deep link (``?patient=``) opens its own."""
    split = {name: subset for name, subset in split.items() if name in cases.patients}
    linked = st.query_params.get("patient")
    subsets = [s for s in SPLIT_CHOICES if s in split.values()]
    if "patient" not in st.session_state:
        linked_subset = st.query_params.get("subset")
        if linked_subset in [*subsets, ALL_PATIENTS]:
            st.session_state["patient_subset"] = linked_subset
        if linked in cases.patients:
            st.session_state["patient"] = linked
            if st.session_state.get("patient_subset") not in (split.get(linked), ALL_PATIENTS):
                st.session_state["patient_subset"] = split.get(linked, ALL_PATIENTS)
        elif "test" in split.values():
            tests = subset_names(cases, split, "test")
            scorer.score(tests)
            st.session_state["patient"] = lowest_dice(scorer.records, tests, threshold) or tests[0]
    sidebar = st.sidebar  # the pickers beside the image, not above it
    sidebar.header("Patient")
    shown = list(cases.patients)
    if subsets:
        chosen = sidebar.radio(
            "Patients of the run's split", [*subsets, ALL_PATIENTS], horizontal=True,
            key="patient_subset", help="From the run's split.json: the patients it trained on, "
            "chose its checkpoint on (val) and was scored on (test).",
        )
        st.query_params["subset"] = cast(str, chosen)
        shown = subset_names(cases, split, cast(str, chosen))
    else:
        sidebar.caption("None of these patients is in the run's split.json (or the run has "
                     "none): which of them it trained on is unknown.")
    if st.session_state.get("patient") not in shown:
        st.session_state["patient"] = shown[0]
    return cast(str, sidebar.selectbox(
        "Patient", shown, key="patient",
        format_func=lambda name: f"{name} ({split[name]})" if name in split else name,
    ))


# ---------------------------------------------------------------- the case view


#: a table's selection: a row (its checkbox) or any cell of it (a click)
ROW_OR_CELL: list[Literal["single-row", "single-cell"]] = ["single-row", "single-cell"]


def selected_row(table_key: str) -> int | None:
    """The row of the table ``table_key`` whose checkbox or cell was clicked (None: none)."""
    selection = st.session_state[table_key].selection
    rows, cells = selection.get("rows", []), selection.get("cells", [])
    return rows[0] if rows else cells[0][0] if cells else None


def jump_to_slice(table_key: str, slider_key: str, slice_numbers: list[int]) -> None:
    """Table row or cell clicked: show that slice."""
    row = selected_row(table_key)
    if row is not None:
        st.session_state[slider_key] = slice_numbers[row]


def slice_table(volume: dict, table_key: str, slider_key: str, reference: str = EXPERT,
                subject: str = "patient") -> None:
    """Every slice with its scores, worst Dice first, under its heading and summary (the
    slices of this ``subject``); clicking a row (any cell) opens that slice."""
    st.subheader(f"Slices of this {subject}, worst Dice first")
    st.caption(
        f"{volume['n_slices']} slices; mean slice Dice {score_text(volume['dice'])}; "
        f"{volume['n_empty_fp_slices']} of {volume['n_empty_slices']} tumour-free slices with "
        "false positives. Click a row to open the slice."
    )
    table = pd.DataFrame(worst_first(volume["per_slice"]))
    shown = pd.DataFrame({
        "Slice": table["slice"],
        "Dice": table["dice"].round(3),
        "IoU": table["iou"].round(3),
        f"{reference} px": table["gt_pixels"],
        "Model px": table["pred_pixels"],
    })
    three_decimals = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(
        shown, hide_index=True, column_config={"Dice": three_decimals, "IoU": three_decimals},
        height=min(420, 38 + 35 * len(shown)), key=table_key,
        on_select=functools.partial(jump_to_slice, table_key, slider_key, shown["Slice"].tolist()),
        selection_mode=ROW_OR_CELL,
    )


def threshold_chart(curves: Mapping[str, list[float]], threshold: float, title: str) -> None:
    """Dice against the probability threshold, one line per curve, the current threshold
    marked by a dashed rule."""
    data = pd.DataFrame([{"threshold": t, "Dice": value, "curve": name}
                         for name, values in curves.items()
                         for t, value in zip(THRESHOLDS, values, strict=True) if np.isfinite(value)])
    x = {"field": "threshold", "type": "quantitative", "scale": {"domain": [0, 1]},
         "title": "probability threshold"}
    spec = {"title": title, "layer": [
        {"mark": {"type": "line", "point": True},
         "encoding": {"x": x, "y": {"field": "Dice", "type": "quantitative", "title": "Dice (3-D)"},
                      "color": {"field": "curve", "type": "nominal", "title": None},
                      "tooltip": [{"field": "curve"}, {"field": "threshold"},
                                  {"field": "Dice", "format": ".3f"}]}},
        {"data": {"values": [{"threshold": threshold}]}, "mark": {"type": "rule", "strokeDash": [4, 4]},
         "encoding": {"x": x}},
    ]}
    st.vega_lite_chart(data, spec, height=240)


def case_view(cases: Cases, run: RunCard, scorer: Scorer, threshold: float, display: Display) -> None:
    """One patient: slice slider, scores, the large viewer, the threshold curve, the slices."""
    name = choose_patient(cases, run.split, scorer, threshold)
    print_ = cases.fingerprints([name])[name]
    try:
        case = cached_case(cases.folder, name, print_)
        probs = cached_probabilities(scorer.key, cases.folder, name, print_)
        scorer.score([name], progress=False)  # the patient's own curve, kept for the cohort
    except MedsegError as err:
        show_error(str(err))
        return
    raw = probs  # the probability map shows the model's own probabilities
    probs = apply_step(probs, threshold, scorer.step)  # the postprocessed mask, when asked
    volume = score_volume(probs, case.masks, name, case.numbers, threshold)
    slider_key = f"slice:{cases.folder}:{name}"
    default = largest_area_slice(case.numbers, case.masks)
    linked = st.query_params.get("slice", "")
    if name == st.query_params.get("patient") and linked.isdigit() and int(linked) in case.numbers:
        default = int(linked)
    number = choose_slice(case.numbers, default, slider_key)
    st.query_params.update(patient=name, slice=str(number))  # a link to this view
    position = case.numbers.index(number)
    row = next(r for r in volume["per_slice"] if r["slice"] == number)
    slice_metrics(row, volume, None, "Patient", cases.reference)
    stack_viewer(case.images, case.masks, binarize(probs, threshold), display, position,
                 lambda: slice_view(case.images[position], case.masks[position], probs[position],
                                    threshold, display, cases.reference, probability=raw[position]))
    st.caption(f"Pixel spacing unknown (kaggle .tif slices carry none): areas in pixels. "
               f"{EMPTY_SLICE_NOTE}")
    threshold_curves(cases, run, scorer, name, threshold)
    # keyed by the slice too: moving the slider drops the old row's highlight
    slice_table(volume, f"table:{cases.folder}:{name}:{number}", slider_key, cases.reference)
    scorer.measure([name], threshold)
    measures = scorer.records[name].measures_at(threshold)
    if measures is not None:
        measure_table(measures)
    lesion_table(match_lesions(binarize(probs, threshold), case.masks), case.numbers,
                 f"lesions:{cases.folder}:{name}:{threshold}:{number}", slider_key, cases.reference)
    export_buttons(cases, run, scorer, case, (probs, raw), threshold, display, number, volume, measures)


def checkpoint_text(run: RunCard, scorer: Scorer) -> str:
    """The checkpoint an export names: a run's file, an export's model file, a CV folder's
    ensemble."""
    if run.kind == "cv":
        return f"ensemble of {len(run.checkpoints)} fold checkpoints, TTA {scorer.key[3]}"
    return scorer.checkpoint.name if run.kind == "run" else scorer.checkpoint.relative_to(run.path).as_posix()


def export_buttons(cases: Cases, run: RunCard, scorer: Scorer, case: PatientSlices,
                   maps: tuple[np.ndarray, np.ndarray], threshold: float, display: Display,
                   number: int, volume: dict, measures: Mapping[str, float] | None) -> None:
    """"Download this view" (the large view with its caption band, PNG) and "Download case
    report" (HTML) of what the Case view shows (:mod:`medseg.app.case_export`), each built when
    its button is clicked; ``maps``: the scored probabilities (postprocessed when asked) and the
    model's own."""
    probs, raw = maps
    facts = ViewFacts(run.name, checkpoint_text(run, scorer), threshold, case.name, number,
                      scorer.step.describe() if scorer.step is not None else None,
                      synthetic=cases.reference == SYNTHETIC_REFERENCE)
    probability = display.large == "probability"
    shown = () if probability else display.legend(with_reference=True)
    worst = min(WORST_SLICES, len(volume["per_slice"]))
    model = load_cached_model(*scorer.key)
    card = run.summary_rows(model.path.name, model.epoch)
    link = link_text({key: st.query_params.get_all(key) for key in st.query_params})

    def draw(shown_number: int) -> np.ndarray:
        return slice_picture(case, probs, raw, threshold, display, shown_number)

    def view() -> bytes:
        return view_png(draw(number), facts, shown, probability)

    def report() -> str:
        return case_report_html(facts, card, volume, measures, draw, shown, link,
                                probability=probability, units_note=PIXEL_UNITS_NOTE)

    left, right = st.columns(2)
    left.download_button("Download this view (PNG)", data=view, file_name=view_file_name(facts),
                         mime="image/png", key="download_view",
                         help="The large view with its legend, run, checkpoint, threshold, patient "
                              "and slice written under it.")
    right.download_button("Download case report (HTML)", data=report, file_name=report_file_name(facts),
                          mime="text/html", key="download_report",
                          help=f"One HTML file: this patient's scores and measures, its "
                               f"{worst} slices with the lowest Dice, the run card and the link "
                               "to this screen.")


#: the curves of the Case view's threshold chart beside the patient's own
VALIDATION_CURVE = "mean of the validation patients"
TEST_CURVE = "mean of the test patients (test: for reporting, not for choosing)"


def threshold_curves(cases: Cases, run: RunCard, scorer: Scorer, name: str, threshold: float) -> None:
    """The patient's Dice against the threshold beside the mean over the run's validation
    patients (where a threshold is chosen) and, labelled as such, its test patients; a button
    scores the validation patients (model passes) when they are not yet, another sets the
    validation-best threshold."""
    curves = {f"patient {name}": list(scorer.records[name].dice)}
    validation = subset_names(cases, run.split, "val")
    tests = subset_names(cases, run.split, "test")
    best = None
    if validation and not scorer.missing(validation):
        curves[VALIDATION_CURVE] = mean_dice_curve(scorer.records, validation)
        best = best_threshold(curves[VALIDATION_CURVE])
    if tests and not scorer.missing(tests):
        curves[TEST_CURVE] = mean_dice_curve(scorer.records, tests)
    threshold_chart(curves, threshold, "Dice (3-D) against the threshold")
    if not validation:
        st.caption("No validation patient of the run's split.json is in the case folder: "
                   "no curve to choose the threshold on.")
    elif best is None:
        missing = scorer.missing(validation)
        if st.button(f"Score the {len(missing)} unscored validation patients for the curve "
                     f"({len(missing)} patient predictions)", key="score_validation"):
            scorer.score(validation)
            st.rerun()
    else:
        st.button(f"Use the validation-best threshold ({best:.2f})", key="validation_best",
                  disabled=abs(best - threshold) < 1e-9, on_click=st.session_state.update,
                  kwargs={"threshold": best},
                  help="The threshold where the validation patients' mean Dice (3-D) is highest "
                       "(the lowest of ties); the test patients are not used.")


#: what the Case view says of its measures' units (kaggle slices carry no spacing)
PIXEL_UNITS_NOTE = "Distances in pixels and volumes in voxels (kaggle slices carry no spacing); NSD within 2 px."


def measure_table(measures: Mapping[str, float], units_note: str = PIXEL_UNITS_NOTE,
                  title: str = "Measures of this patient (3-D)") -> None:
    """A patient's measures beyond Dice (docs/metrics.md), each with its unit; ``units_note``
    says where the units come from."""
    st.subheader(title)
    rows = measure_rows(measures)
    st.dataframe(pd.DataFrame({"Measure": [label for label, _ in rows], "Value": [value for _, value in rows]}),
                 hide_index=True)
    st.caption(f"{units_note} Undefined: a distance to a mask that is empty. Lesions are 3-D "
               "connected components (26-connectivity); one shared voxel matches two lesions.")


def lesion_table(matching: LesionMatching, numbers: list[int], table_key: str, slider_key: str,
                 reference: str = EXPERT) -> None:
    """Every reference lesion (detected or missed) and model lesion (true or spurious),
    largest first; clicking a row opens the slice where the lesion is widest."""
    rows = [(f"{reference} {lesion.label}", "detected" if lesion.matched else "missed", lesion)
            for lesion in matching.reference]
    rows += [(f"Model {lesion.label}", "true" if lesion.matched else "spurious", lesion)
             for lesion in matching.predicted]
    if not rows:
        st.caption("No lesion in either mask.")
        return
    st.subheader("Lesions")
    widest = [numbers[lesion.widest_slice - 1] for _, _, lesion in rows]
    shown = pd.DataFrame({
        "Lesion": [name for name, _, _ in rows],
        "Status": [status for _, status, _ in rows],
        "Voxels": [lesion.voxels for _, _, lesion in rows],
        "Slices": [f"{numbers[lesion.slices[0] - 1]}–{numbers[lesion.slices[1] - 1]}" for _, _, lesion in rows],
        "Widest slice": widest,
    })
    st.dataframe(shown, hide_index=True, key=table_key, selection_mode=ROW_OR_CELL,
                 height=min(420, 38 + 35 * len(shown)),
                 on_select=functools.partial(jump_to_slice, table_key, slider_key, widest))
    st.caption("Click a lesion to open the slice where it is widest.")


# ---------------------------------------------------------------- the cohort view


def open_patient(table_key: str, names: list[str]) -> None:
    """Cohort row or cell clicked: open that patient in the Case view."""
    row = selected_row(table_key)
    if row is not None:
        st.session_state["patient"] = names[row]
        st.session_state["patient_subset"] = ALL_PATIENTS
        st.session_state["view"] = VIEWS[0]


def score_when_asked(scorers: Mapping[str, Scorer], names: list[str], subset: str, key: str) -> bool:
    """Score the patients of ``names`` with each run where needed: at once for the test
    patients or up to :data:`AUTO_SCORED` patients in all, else on a button press (a train
    split may take minutes). True when every run has scored them all."""
    missing = sum(len(scorer.missing(names)) for scorer in scorers.values())
    runs = "the run" if len(scorers) == 1 else f"each of the {len(scorers)} runs"
    slot = st.empty()  # the button, gone once the patients are scored
    if missing and (subset == "test" or missing <= AUTO_SCORED
                    or slot.button(f"Score the unscored {subset} patients with {runs} "
                                   f"({missing} patient predictions)", key=key)):
        slot.empty()
        for scorer in scorers.values():
            problem = scorer.score(names)
            if problem:
                st.caption(escape_markdown(problem))
    return not any(scorer.missing(names) for scorer in scorers.values())


def cohort_view(cases: Cases, run: RunCard, scorer: Scorer, threshold: float) -> None:
    """Every patient of a split with its 3-D Dice and IoU, tumour pixels and empty-slice false
    positives, lowest Dice first; a row opens the patient."""
    split = run.split
    subsets = [s for s in SPLIT_CHOICES if s in split.values()] + [ALL_PATIENTS]
    subset = cast(str, st.radio("Patients", subsets, horizontal=True, key="cohort_subset"))
    names = subset_names(cases, split, subset)
    if not names:
        st.info("No patient of this subset is in the case folder.")
        return
    scored = score_when_asked({run.name: scorer}, names, subset, "cohort_score")
    problem = scorer.measure(names, threshold)
    if problem:
        st.caption(escape_markdown(problem))
    frame = cohort_frame(scorer.records, split, threshold, names)
    three = st.column_config.NumberColumn(format="%.3f")
    two = st.column_config.NumberColumn(format="%.2f")
    table_key = f"cohort_table:{subset}"
    st.dataframe(frame, hide_index=True, key=table_key, selection_mode=ROW_OR_CELL,
                 column_config={"Dice (3-D)": three, "IoU (3-D)": three, "HD95 (px)": two,
                                "ASSD (px)": two, "NSD (2 px)": three,
                                "Δ volume": st.column_config.NumberColumn(format="percent")},
                 on_select=functools.partial(open_patient, table_key, frame["Patient"].tolist()))
    st.caption(
        f"{len(frame)} of {len(names)} patients scored at p ≥ {threshold:.2f} by "
        f"{code_span(run.name)} / {code_span(scorer.checkpoint.name)}; {scorer.where()}. "
        "Tumour in pixels summed over slices and distances in pixels (kaggle slices carry no "
        "spacing); Δ volume is (model − reference) / reference; an empty cell is undefined "
        "(docs/metrics.md). Click a row to open the patient."
    )
    if scored:
        threshold_chart({f"mean of {patients_phrase(subset)}": mean_dice_curve(scorer.records, names)},
                        threshold, "Mean Dice (3-D) against the threshold")


# ---------------------------------------------------------------- runs side by side


def run_label(run: RunCard) -> str:
    """A run as the comparison names it: its name and optimizer (when the name does not
    already say it)."""
    optimizer = run.config.optim.name if run.config else None
    return run.name if optimizer in (None, run.name) else f"{run.name} ({optimizer})"


def runs_view(cases: Cases, current: RunCard, scorer: Scorer, runs: list[RunCard], threshold: float,
              display: Display, checkpoint_of: Callable[[RunCard], Path | None],
              key_of: Callable[[RunCard, Path], ModelKey]) -> None:
    """The same slice through several runs (the paper's Figure 2 for any runs) in panels that
    follow the zoom, where the runs disagree, the slices where they differ most, the patient
    Dice of each run in a subset of every run's split, and, for runs of one comparison, its
    cells and paired tests. Other models than the current one are read without TTA or
    postprocessing (``key_of``)."""
    usable = {run.name: run for run in runs if run.task == current.task and checkpoint_of(run)}
    named = st.query_params.get_all("runs")
    if "compare_runs" not in st.session_state:  # a deep link (?runs=a&runs=b) names the runs
        problem = missing_runs(named, usable)
        if problem is not None:
            st.session_state["missing_runs"] = problem
        st.session_state["compare_runs"] = [name for name in named if name in usable] or [current.name]
    if "missing_runs" in st.session_state:
        st.warning(escape_markdown(st.session_state["missing_runs"]))
    chosen = st.multiselect("Runs", list(usable), key="compare_runs",
                            format_func=lambda name: run_label(usable[name]),
                            help="Each run's chosen checkpoint (best.pt unless the sidebar says "
                                 "otherwise for the current run).")
    st.query_params["runs"] = chosen  # a link to this comparison
    if not chosen:
        st.info("Choose one or more runs.")
        return
    scorers = {name: scorer if name == current.name else Scorer(
        usable[name], cast(Path, checkpoint_of(usable[name])),
        key_of(usable[name], cast(Path, checkpoint_of(usable[name]))), cases) for name in chosen}
    name = choose_patient(cases, current.split, scorer, threshold)
    print_ = cases.fingerprints([name])[name]
    try:
        case = cached_case(cases.folder, name, print_)
        probs = {run: cached_probabilities(s.key, cases.folder, name, print_) for run, s in scorers.items()}
    except MedsegError as err:
        show_error(str(err))
        return
    slider_key = f"slice:{cases.folder}:{name}"
    number = choose_slice(case.numbers, largest_area_slice(case.numbers, case.masks), slider_key)
    labels = {run: run_label(usable[run]) for run in chosen}
    volumes = {}
    for run in chosen:
        probs[run] = apply_step(probs[run], threshold, scorers[run].step)
        volumes[run] = score_volume(probs[run], case.masks, name, case.numbers, threshold)
    run_panels(case, probs, volumes, labels, number, threshold, display, cases.reference)
    if len(chosen) > 1:
        slices_across_runs(volumes, f"runs_slices:{cases.folder}:{name}:{number}", slider_key)
    runs_table(cases, {run: usable[run] for run in chosen}, scorers, threshold)
    comparison_block(SEGMENTATION.name, [usable[run] for run in chosen])  # the LGG views' task


def run_panels(case: PatientSlices, probs: Mapping[str, np.ndarray], volumes: Mapping[str, dict],
               labels: Mapping[str, str], number: int, threshold: float, display: Display,
               reference: str) -> None:
    """The MRI, the reference, each run's overlay and (for two runs or more) where they
    disagree, all at the display's zoom (:func:`~medseg.app.runs_compare.panel_zoom`), in rows
    of as many panels as fit the page, never narrower than the slice; then the legends."""
    position = case.numbers.index(number)
    mask = case.masks[position]
    background = display.background(case.images[position])
    width = mask.shape[1]
    zoom = panel_zoom(width, display.zoom)
    preds = {run: binarize(probs[run][position], threshold) for run in probs}
    panels = [(upscale(background, zoom), f"MRI: {display.sequence}, slice {number} ({zoom}×)"),
              (upscale(mask * 255, zoom), f"{reference} mask")]
    for run, pred in preds.items():
        row = next(r for r in volumes[run]["per_slice"] if r["slice"] == number)
        panels.append((display.overlay(background, pred, mask, zoom),
                       f"{labels[run]}: slice Dice {score_text(row['dice'])}, "
                       f"patient Dice {score_text(volumes[run]['patient_dice'])}"))
    differ = disagreement(preds, mask, labels) if len(preds) > 1 else None
    if differ is not None:
        panels.append((compose(background, differ.layers(), style=display.style, opacity=display.opacity,
                               factor=zoom),
                       f"Where the runs disagree: {int(differ.differ.sum())} pixels"))
    per_row = panel_columns(width, display.zoom, len(panels))
    for first in range(0, len(panels), per_row):
        for column, (shown, caption) in zip(st.columns(per_row), panels[first:first + per_row], strict=False):
            picture(column, shown, caption, width=shown.shape[1])
    legend(display.legend(with_reference=True))
    if differ is not None:
        st.caption("Disagreement map: pixels where the runs' masks differ, coloured by the run "
                   "that matches the reference there; where they agree, only errors they share.")
        legend(differ.legend())


def slices_across_runs(volumes: Mapping[str, dict], table_key: str, slider_key: str) -> None:
    """This patient's slices with each run's slice Dice, where the runs differ most first;
    clicking a row opens that slice."""
    st.subheader("Slices where the runs differ most")
    table = slice_differences({run: volume["per_slice"] for run, volume in volumes.items()})
    three = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(table, hide_index=True, key=table_key, selection_mode=ROW_OR_CELL,
                 height=min(420, 38 + 35 * len(table)),
                 column_config={column: three for column in table.columns[1:]},
                 on_select=functools.partial(jump_to_slice, table_key, slider_key, table["Slice"].tolist()))
    st.caption(f"{LARGEST_DIFFERENCE}: the highest slice Dice of the runs minus the lowest. "
               "Click a row to open the slice.")


def runs_table(cases: Cases, chosen: Mapping[str, RunCard], scorers: Mapping[str, Scorer],
               threshold: float) -> None:
    """The patient Dice (3-D) of each run for the patients of one subset in every run's
    split.json, each patient's subset, and the means over them once every run scored them."""
    splits = {run: card.split for run, card in chosen.items()}
    subsets = [s for s in SPLIT_CHOICES if any(s in split.values() for split in splits.values())]
    subsets.append(ALL_PATIENTS)
    if st.session_state.get("runs_subset") not in subsets:
        opened = st.session_state.get("patient_subset")
        st.session_state["runs_subset"] = opened if opened in subsets else subsets[0]
    st.subheader("Patient Dice (3-D) of each run")
    subset = cast(str, st.radio("Patients", subsets, horizontal=True, key="runs_subset",
                                help="A patient counts in a subset when every chosen run's "
                                     "split.json puts it there; 'all' mixes the subsets."))
    names = subset_patients(splits, list(cases.patients), subset)
    if not names:
        st.info(f"No patient of the case folder is a {subset} patient of every chosen run.")
        return
    complete = score_when_asked(scorers, names, subset, "runs_score")
    frame = runs_frame({run: s.records for run, s in scorers.items()}, names, threshold)
    frame.insert(1, "Subset", list(patient_subsets(splits, names).values()))
    differences = [column for column in frame.columns[2:] if column.startswith("Δ ")]
    dice = [column for column in frame.columns[2:] if column not in differences]
    st.dataframe(frame.style.format("{:.3f}", subset=dice, na_rep=UNSCORED)
                 .format("{:+.3f}", subset=differences, na_rep=UNSCORED), hide_index=True)
    scored = f"{UNSCORED}: not scored yet. " if not complete else ""
    st.caption(f"{scored}Subset: the patient's in the runs' split.json (each run's where they differ).")
    if len(chosen) > 1 and complete:
        means = frame.drop(columns=["Patient", "Subset"]).mean()
        st.caption(f"Means over {patients_phrase(subset)} ({len(names)}): " + "; ".join(
            f"{escape_markdown(c)} {v:+.3f}" if c.startswith("Δ") else f"{escape_markdown(c)} {v:.3f}"
            for c, v in means.items()))


def comparison_block(task: str, chosen: list[RunCard]) -> None:
    """For runs of one comparison folder, compare's own report of their methods (cells and
    paired tests, from its results.csv); else a line saying the runs are not of one."""
    if len(chosen) < 2:
        return
    comparison = comparison_of([run.path for run in chosen])
    if comparison is None:
        st.caption("These runs are not the seeds or methods of one comparison "
                   "(`<compare>/runs/<method>/seed<k>` beside its results.csv): no intervals or "
                   "paired tests to show.")
        return
    st.subheader(f"The comparison {code_span(comparison.folder.name)}: these methods over all its seeds")
    try:
        report = comparison.report(task)
    except MedsegError as err:
        show_error(str(err))
        return
    with st.container(border=True, key="comparison_report"):
        st.markdown(report)
    st.caption("As `medseg compare` reports them (results.md), for the chosen runs' methods only.")
