"""The medseg Streamlit page: pick a trained run, browse LGG cases, upload scans, score PCam.

A thin layer over the library: runs come from :mod:`medseg.app.run_cards`, models from
:func:`medseg.engine.load_model` (cached once per checkpoint), probabilities from
:mod:`medseg.app.scoring` (cached per session, so the threshold slider only re-thresholds),
pictures from :mod:`medseg.app.overlays`, uploads from :mod:`medseg.app.uploads`.

Folders come from the environment (:mod:`medseg.app.settings`); the sidebar and the page let
a browser change them only when the folder picker is on (``MEDSEG_APP_FOLDER_PICKER=1``).
Any text from outside the code (file and folder names, error messages) is shown escaped
(:mod:`medseg.app.text`).

Run it with ``medseg app`` or ``streamlit run app/streamlit_app.py``.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import streamlit as st

from medseg.app import settings
from medseg.app.curves import curve_label, history_frames
from medseg.app.overlays import (
    ERROR_LEGEND,
    PREDICTED,
    SEQUENCE_CHANNELS,
    LegendEntry,
    error_overlay,
    mask_picture,
    prediction_overlay,
    sequence_view,
)
from medseg.app.patches import SPLIT_LABELS, read_patches, score_patches
from medseg.app.run_cards import RunCard, find_runs
from medseg.app.scoring import (
    PatientSlices,
    binarize,
    format_area,
    read_patient_slices,
    score_volume,
)
from medseg.app.text import code_span, escape_markdown
from medseg.app.uploads import (
    SEQUENCE_LABELS,
    SINGLE_SEQUENCE_BOX,
    Upload,
    UploadedFile,
    dicom_seg_bytes,
    mask_png_bytes,
    mask_volume_bytes,
    prediction_file_name,
    read_sequences,
    read_upload,
    upload_report,
)
from medseg.data import SEQUENCES, list_patients, read_demo_marker, use_plain_tensors
from medseg.data.nifti import Volume
from medseg.engine import load_model, patch_probabilities, slice_probabilities
from medseg.engine.predict import report_text
from medseg.errors import MedsegError
from medseg.tasks import CLASSIFICATION, SEGMENTATION

NOTICE = (
    "**Research use only — not for diagnosis.** Masks and scores come from a research model "
    "and must not guide clinical decisions."
)
EMPTY_SLICE_NOTE = (
    "Dice and IoU per slice: 1 when neither the expert nor the model marks tumour, 0 when the "
    "model marks tumour on a slice without any. Patient scores are 3-D (all slices pooled)."
)
#: a frame around pictures (an all-white mask stays visible on the white page), less top space
PAGE_STYLE = (
    "<style>"
    '[data-testid="stImage"] img {border: 1px solid rgba(128, 128, 128, 0.5); border-radius: 2px}'
    '[data-testid="stMainBlockContainer"] {padding-top: 2.5rem}'
    "</style>"
)
#: the upload tab's inputs
UPLOAD_MODES = ("One file", "Three sequences")
SINGLE_SEQUENCE_WARNING = (
    "**One MR sequence, repeated into all three channels.** The model was trained on three "
    "(pre-contrast T1, FLAIR, post-contrast T1) and never saw such input: its mask is less "
    "reliable. The downloads say so (NIfTI description, `single_sequence` in the report)."
)
#: what the case browser calls the reference mask: an expert's, or the demo's synthetic one
EXPERT = "Expert"
SYNTHETIC_REFERENCE = "Reference (synthetic)"
#: shown above demo data (a folder with medseg demo-data's marker), by the marker's kind
SYNTHETIC_NOTES = {
    "lgg": "**Demo data: the MRI is real anatomy, the tumours are SYNTHETIC** (drawn by `medseg "
           "demo-data`); the patient names are made up. Scores here test the pipeline, not how a "
           "model reads real tumours.",
    "pcam": "**Demo data: the histology is real, the labels are SYNTHETIC** (a patch is positive "
            "when its centre is rich in haematoxylin, not when it holds tumour).",
}
#: the subsets of a run's split.json, in the case browser's order
SPLIT_CHOICES = ("test", "val", "train")
ALL_PATIENTS = "all"
SLICES_PER_BATCH = 8
PATCHES_PER_BATCH = 64
PATCH_GRID_COLUMNS = 8

CheckpointKey = tuple[str, int]
#: reads the chosen uploads; its argument: one MR sequence may be repeated (single_sequence)
UploadReader = Callable[[bool], Upload]


# ---------------------------------------------------------------- caches


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load_cached_model(checkpoint: str, modified_ns: int):
    """The checkpoint's model in eval mode, shared read-only by every session."""
    return load_model(checkpoint)


@st.cache_data(ttl=30, show_spinner=False)
def list_cases(folder: str):
    """The patients of an LGG folder (refreshed every 30 s)."""
    return list_patients(folder)


@st.cache_data(ttl=30, show_spinner=False)
def demo_marker(folder: str) -> dict | None:
    """The ``medseg demo-data`` marker of a data folder (None for real data)."""
    return read_demo_marker(folder)


def synthetic_note(folder: str) -> bool:
    """Say so above the page when ``folder`` holds demo data; True when it does."""
    try:
        marker = demo_marker(folder)
    except MedsegError as err:
        show_error(str(err))
        return False
    if marker is not None:
        st.info(SYNTHETIC_NOTES[marker["kind"]])
    return marker is not None


def session_cached(name: str, key: Any, compute: Callable[[], Any], size: int = 3) -> Any:
    """A small least-recently-used cache in this browser session's state."""
    cache: OrderedDict = st.session_state.setdefault(f"_cache_{name}", OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = compute()
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)
    return value


def predict_with_progress(model, images: np.ndarray, image_size: int, what: str) -> np.ndarray:
    """Probabilities of every slice, a batch at a time, with a progress bar."""
    what = escape_markdown(what)
    bar = st.progress(0.0, text=f"Predicting {what}…")
    parts = []
    for start in range(0, len(images), SLICES_PER_BATCH):
        parts.append(slice_probabilities(model, images[start : start + SLICES_PER_BATCH], image_size))
        done = min(start + SLICES_PER_BATCH, len(images))
        bar.progress(done / len(images), text=f"Predicting {what}: {done}/{len(images)} slices")
    bar.empty()
    return np.concatenate(parts)


# ---------------------------------------------------------------- small views


def show_error(message: str) -> None:
    """A one-line error, shown literally (no Markdown in file names or messages)."""
    st.error(escape_markdown(message))


def folder_field(label: str, configured: Path, key: str, help: str | None = None) -> str:
    """The folder to read: a text field when the folder picker is on, else the configured
    folder, shown read-only (no browser input can change it)."""
    if settings.folder_picker():
        return st.text_input(label, value=str(configured), key=key, help=help)
    st.caption(f"{label}: {code_span(str(configured))}", help=help)
    return str(configured)


def legend(entries: tuple[LegendEntry, ...]) -> None:
    swatches = "".join(
        f'<span style="white-space:nowrap;margin-right:1em">'
        f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{e.hex};'
        f'border:1px solid #444;vertical-align:-0.1em;margin-right:0.35em"></span>'
        f"<b>{e.label}</b> <span style='opacity:0.75'>— {e.meaning}</span></span>"
        for e in entries
    )
    st.markdown(f'<div style="font-size:0.85em;line-height:1.8">{swatches}</div>',
                unsafe_allow_html=True)


def score_text(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def area_metric(column, whose: str, pixels: int, pixel_area_mm2: float | None) -> None:
    """A tumour area: whole mm² when the spacing is known, else pixels (unit in the label,
    so the value fits a narrow column)."""
    unit, value = ("mm²", f"{pixels * pixel_area_mm2:.0f}") if pixel_area_mm2 else ("px", str(pixels))
    column.metric(f"{whose} area ({unit})", value,
                  help=f"Tumour area on this slice: {format_area(pixels, pixel_area_mm2)}")


def run_card(run: RunCard) -> None:
    st.markdown("\n".join(f"- **{label}:** {escape_markdown(value)}"
                          for label, value in run.summary_rows()))
    for problem in run.problems:
        st.warning(escape_markdown(problem))


def slice_pictures(
    image: np.ndarray, mask: np.ndarray | None, prob: np.ndarray, threshold: float, sequence: str,
    channels: Mapping[str, int | None] = SEQUENCE_CHANNELS, reference: str = EXPERT,
) -> None:
    """MRI, reference mask, model mask and overlay side by side, with the colour legend;
    ``reference`` names the mask (:data:`EXPERT`, or :data:`SYNTHETIC_REFERENCE` on demo data)."""
    background = sequence_view(image, sequence, channels)
    pred = binarize(prob, threshold)
    columns = st.columns(4 if mask is not None else 3)
    columns[0].image(background, caption=f"MRI: {sequence}", width="stretch")
    if mask is not None:
        columns[1].image(mask_picture(mask), caption=f"{reference} mask", width="stretch")
    columns[-2].image(mask_picture(pred), caption=f"Model mask (p ≥ {threshold:.2f})",
                      width="stretch")
    if mask is not None:
        columns[-1].image(error_overlay(background, pred, mask),
                          caption=f"Overlay: model vs {reference.lower()}",
                          width="stretch")
    else:
        columns[-1].image(prediction_overlay(background, pred), caption="Overlay: model",
                          width="stretch")
    legend(ERROR_LEGEND if mask is not None else (PREDICTED,))


def slice_metrics(row: dict, volume: dict, pixel_area_mm2: float | None, label: str,
                  reference: str = EXPERT) -> None:
    """Dice and IoU of the slice and of the whole patient/volume, and the tumour areas."""
    cols = st.columns(6)
    cols[0].metric("Slice Dice", score_text(row["dice"]))
    cols[1].metric("Slice IoU", score_text(row["iou"]))
    cols[2].metric(f"{label} Dice (3-D)", score_text(volume["patient_dice"]))
    cols[3].metric(f"{label} IoU (3-D)", score_text(volume["patient_iou"]))
    area_metric(cols[4], reference, row["gt_pixels"], pixel_area_mm2)
    area_metric(cols[5], "Model", row["pred_pixels"], pixel_area_mm2)


def jump_to_slice(table_key: str, slider_key: str, slice_numbers: list[int]) -> None:
    """Table row clicked: show that slice."""
    rows = st.session_state[table_key].selection.rows
    if rows:
        st.session_state[slider_key] = slice_numbers[rows[0]]


def slice_table(volume: dict, pixel_area_mm2: float | None, table_key: str, slider_key: str,
                reference: str = EXPERT) -> None:
    """Every slice with its scores, worst Dice first; clicking a row opens that slice."""
    table = pd.DataFrame(volume["per_slice"]).sort_values(["dice", "slice"], kind="stable")
    shown = pd.DataFrame({
        "Slice": table["slice"],
        "Dice": table["dice"].round(3),
        "IoU": table["iou"].round(3),
        f"{reference} px": table["gt_pixels"],
        "Model px": table["pred_pixels"],
    })
    if pixel_area_mm2:
        shown[f"{reference} mm²"] = (table["gt_pixels"] * pixel_area_mm2).round(1)
        shown["Model mm²"] = (table["pred_pixels"] * pixel_area_mm2).round(1)
    three_decimals = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(
        shown,
        hide_index=True,
        column_config={"Dice": three_decimals, "IoU": three_decimals},
        height=min(420, 38 + 35 * len(shown)),
        key=table_key,
        on_select=functools.partial(jump_to_slice, table_key, slider_key, shown["Slice"].tolist()),
        selection_mode="single-row",
    )


def choose_slice(numbers: list[int], default: int, key: str, label: str = "Slice") -> int:
    if key not in st.session_state or st.session_state[key] not in numbers:
        st.session_state[key] = default
    if len(numbers) == 1:
        st.caption(f"{label} {numbers[0]} (the only one)")
        return numbers[0]
    return st.select_slider(label, options=numbers, key=key)


def largest_area_slice(numbers: list[int], masks: np.ndarray) -> int:
    """The slice with the most tumour pixels (the middle one when all are empty)."""
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    return numbers[int(np.argmax(areas))] if areas.any() else numbers[len(numbers) // 2]


# ---------------------------------------------------------------- pages


def pick_run() -> tuple[RunCard, Path | None, float, list[RunCard]] | None:
    """Sidebar: the runs folder, the run, its card, the checkpoint and the threshold (and
    every run found, for the training curves)."""
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
        chosen = None
        if names:
            chosen = cast(str, st.radio("Checkpoint", names, horizontal=True,
                                        key=f"checkpoint:{run.name}"))
        run_card(run)
        threshold = st.slider(
            "Probability threshold", 0.05, 0.95, 0.5, 0.05, key="threshold",
            help="A pixel (or patch) is tumour when its probability is at least this. "
                 "Moving it re-scores at once; the model is not run again.",
        )
    return run, (run.path / chosen if chosen else None), threshold, runs


def choose_patient(patients: list[str], split: dict[str, str], column) -> str:
    """The patient picker: with the run's split, a subset filter (test first) and each
    patient labelled with its subset; a deep link (``?patient=``) opens its patient once."""
    split = {name: subset for name, subset in split.items() if name in patients}
    linked = st.query_params.get("patient")
    if "patient" not in st.session_state and linked in patients:
        st.session_state["patient"] = linked
        st.session_state["patient_subset"] = split.get(linked, ALL_PATIENTS)
    shown = patients
    if split:
        subsets = [s for s in SPLIT_CHOICES if s in split.values()]
        chosen = column.radio(
            "Patients of the run's split", [*subsets, ALL_PATIENTS], horizontal=True,
            key="patient_subset", help="From the run's split.json: the patients it trained on, "
            "chose its checkpoint on (val) and was scored on (test).",
        )
        if chosen != ALL_PATIENTS:
            shown = [name for name in patients if split.get(name) == chosen]
    else:
        column.caption("None of these patients is in the run's split.json (or the run has "
                       "none): which of them it trained on is unknown.")
    if st.session_state.get("patient") not in shown:
        st.session_state["patient"] = shown[0]
    return cast(str, column.selectbox(
        "Patient", shown, key="patient",
        format_func=lambda name: f"{name} ({split[name]})" if name in split else name,
    ))


def case_browser(loaded, checkpoint: CheckpointKey, threshold: float, split: dict[str, str]) -> None:
    """The run's split (``split``: patient -> subset) labels and filters the patients."""
    folder = folder_field(
        "Case folder (LGG kaggle_3m layout)", settings.lgg_dir(), "lgg_dir",
        help="A kaggle_3m folder, or the lgg-mri-segmentation folder that holds it.",
    )
    try:
        patients = {patient.name: patient for patient in list_cases(folder)}
    except MedsegError as err:
        show_error(str(err))
        st.info("Write the demo cases with `medseg demo-data lgg demo_data/lgg`.")
        return
    reference = SYNTHETIC_REFERENCE if synthetic_note(folder) else EXPERT
    left, right = st.columns([1, 2])
    linked = st.query_params.get("patient")
    name = choose_patient(list(patients), split, left)
    try:
        case: PatientSlices = session_cached(
            "cases", (checkpoint, folder, name),
            lambda: read_patient_slices(patients[name]),
        )
        probs = session_cached(
            "case_probs", (checkpoint, folder, name),
            lambda: predict_with_progress(loaded.model, case.images, loaded.config.data.image_size,
                                          f"patient {name}"),
        )
    except MedsegError as err:
        show_error(str(err))
        return
    volume = score_volume(probs, case.masks, name, case.numbers, threshold)
    slider_key = f"slice:{folder}:{name}"
    default = largest_area_slice(case.numbers, case.masks)
    if name == linked and st.query_params.get("slice", "").isdigit():
        linked_slice = int(st.query_params["slice"])
        default = linked_slice if linked_slice in case.numbers else default
    with right:
        number = choose_slice(case.numbers, default, slider_key)
    st.query_params.update(patient=name, slice=str(number))  # a link to this view
    sequence = cast(str, st.radio("MRI sequence", list(SEQUENCE_CHANNELS), horizontal=True, key="sequence"))
    position = case.numbers.index(number)
    row = next(r for r in volume["per_slice"] if r["slice"] == number)
    slice_metrics(row, volume, None, "Patient", reference)
    slice_pictures(case.images[position], case.masks[position], probs[position], threshold, sequence,
                   reference=reference)
    st.caption(
        f"Pixel spacing unknown (kaggle .tif slices carry none): areas in pixels. {EMPTY_SLICE_NOTE}"
    )
    st.subheader("Slices of this patient, worst Dice first")
    st.caption(
        f"{volume['n_slices']} slices; mean slice Dice {score_text(volume['dice'])}; "
        f"{volume['n_empty_fp_slices']} of {volume['n_empty_slices']} tumour-free slices with "
        "false positives. Click a row to open the slice."
    )
    slice_table(volume, None, f"table:{folder}:{name}", slider_key, reference)


def one_file_input() -> tuple[list, UploadReader] | None:
    """The one-file uploaders; their files and how to read them (None until a file is given)."""
    st.caption(
        "A slice (.tif, .png, .jpg) with an optional mask of the same size, or a NIfTI volume "
        "(.nii, .nii.gz) with an optional mask volume. Files are read in a temporary folder "
        f"that is deleted at once; at most {settings.MAX_UPLOAD_MB} MB each."
    )
    left, right = st.columns(2)
    image_file = left.file_uploader("Slice or volume", key="upload_image",
                                    max_upload_size=settings.MAX_UPLOAD_MB)
    mask_file = right.file_uploader("Expert mask (optional)", key="upload_mask",
                                    max_upload_size=settings.MAX_UPLOAD_MB)
    if image_file is None:
        st.info("Upload a slice or a volume to see the model's mask.")
        return None

    def read(single_sequence: bool) -> Upload:
        return read_upload(uploaded(image_file), uploaded(mask_file) if mask_file is not None else None,
                           max_mb=settings.MAX_UPLOAD_MB, single_sequence=single_sequence)

    return [f for f in (image_file, mask_file) if f is not None], read


def sequences_input() -> tuple[list, UploadReader] | None:
    """The three sequence uploaders and the mask volume's; their files and how to read them
    (None until a sequence is given)."""
    st.caption(
        "The scan's three MR sequences, each a NIfTI volume (.nii, .nii.gz) or a zipped DICOM "
        "series (.zip), co-registered on one voxel grid, with an optional mask volume (NIfTI) on "
        "the same grid. Read as `medseg predict --pre --flair --post` reads them, in a temporary "
        f"folder that is deleted at once; at most {settings.MAX_UPLOAD_MB} MB each."
    )
    columns = st.columns(4)
    files = {key: column.file_uploader(SEQUENCE_LABELS[key], key=f"upload_{key}",
                                       max_upload_size=settings.MAX_UPLOAD_MB)
             for key, column in zip(SEQUENCES, columns, strict=False)}
    mask_file = columns[3].file_uploader("Expert mask volume (optional)", key="upload_sequence_mask",
                                         max_upload_size=settings.MAX_UPLOAD_MB)
    given = {key: f for key, f in files.items() if f is not None}
    if not given:
        st.info("Upload the scan's sequences to see the model's mask.")
        return None

    def read(single_sequence: bool) -> Upload:
        return read_sequences({key: uploaded(f) for key, f in given.items()},
                              uploaded(mask_file) if mask_file is not None else None,
                              max_mb=settings.MAX_UPLOAD_MB, single_sequence=single_sequence)

    return [*given.values(), *([mask_file] if mask_file is not None else [])], read


def uploaded(file) -> UploadedFile:
    """(name, bytes) of a Streamlit upload."""
    return file.name, file.getvalue()


def upload_view(loaded, checkpoint: CheckpointKey, threshold: float) -> None:
    mode = cast(str, st.radio(
        "Input", UPLOAD_MODES, horizontal=True, key="upload_mode",
        help="One file: a slice or a NIfTI volume. Three sequences: pre-contrast T1, FLAIR and "
             "post-contrast T1 uploaded separately (NIfTI or zipped DICOM).",
    ))
    given = one_file_input() if mode == UPLOAD_MODES[0] else sequences_input()
    single = st.checkbox(
        f"{SINGLE_SEQUENCE_BOX} (less reliable)", key="upload_single",
        help="The model reads three MR sequences. A single one (a 3-D volume, a grey slice, one "
             "of the three) is refused unless this is ticked; then it is repeated into the three "
             "channels, which the model never saw in training.",
    )
    if given is None:
        return
    files, read = given
    key = (checkpoint, mode, single, *[(f.file_id, f.name, f.size) for f in files])

    def decode_and_predict() -> tuple[Upload, np.ndarray]:
        upload = read(single)
        probs = predict_with_progress(loaded.model, upload.images, loaded.config.data.image_size,
                                      upload.name)
        return upload, probs

    try:
        upload, probs = session_cached("uploads", key, decode_and_predict, size=2)
    except MedsegError as err:
        show_error(str(err))
        return
    upload_results(upload, probs, threshold, key, "|".join(f.file_id for f in files))


def upload_results(upload: Upload, probs: np.ndarray, threshold: float, key: tuple, files_id: str) -> None:
    """An upload's pictures, scores, tumour volume and downloads."""
    if upload.single_sequence:
        st.warning(SINGLE_SEQUENCE_WARNING, icon="⚠️")
    predicted = binarize(probs, threshold)
    numbers = list(range(1, len(upload.images) + 1))
    reference = upload.masks if upload.masks is not None else predicted
    number = choose_slice(numbers, largest_area_slice(numbers, reference), f"upload_slice:{files_id}",
                          "Slice (as stored)" if upload.dicom else "Axial slice")
    position = number - 1
    if upload.masks is not None:
        volume = score_volume(probs, upload.masks, upload.name, numbers, threshold)
        row = next(r for r in volume["per_slice"] if r["slice"] == number)
        slice_metrics(row, volume, upload.pixel_area_mm2, "Volume" if upload.is_volume else "Image")
        more = list(st.columns(6)) if upload.is_volume else []
    else:
        more = list(st.columns(6))
        area_metric(more.pop(0), "Model", int(predicted[position].sum()), upload.pixel_area_mm2)
    report, seg = None, None
    if upload.is_volume:
        seg, seg_skipped = session_cached("upload_segs", (key, threshold),
                                          lambda: dicom_seg_bytes(upload, predicted, threshold), size=2)
        seg_file = prediction_file_name(upload.name, True, "_seg.dcm") if seg is not None else None
        report = session_cached("upload_reports", (key, threshold), lambda: upload_report(
            upload, predicted, threshold, seg_file=seg_file, seg_skipped=seg_skipped), size=2)
        more[0].metric("Model volume (mL)", f"{report['tumour_volume_ml']:.2f}",
                       help="Tumour volume of the predicted mask, all slices (the lesion report's "
                            "tumour_volume_ml).")
        more[1].metric("Model lesions", str(report["n_lesions"]),
                       help="3-D connected components of the predicted mask (26-connectivity), "
                            "each listed in the lesion report.")
    views = upload.views
    sequence = cast(str, st.radio(
        "MRI sequence", list(views), horizontal=True, key=f"upload_sequence:{'|'.join(views)}",
        help="The sequences this upload holds (one sequence: only that one).",
    ))
    mask = upload.masks[position] if upload.masks is not None else None
    slice_pictures(upload.images[position], mask, probs[position], threshold, sequence, views)
    spacing = "Pixel spacing unknown: areas in pixels"
    if upload.pixel_area_mm2:
        spacing = f"Pixel spacing from the {'DICOM headers' if upload.dicom else 'NIfTI header'}"
    st.caption(f"{spacing}. {EMPTY_SLICE_NOTE}")
    upload_downloads(upload, predicted, report, seg)


def upload_downloads(upload: Upload, predicted: np.ndarray, report: dict | None, seg: bytes | None) -> None:
    """The predicted mask, and for a volume its lesion report and DICOM SEG (when there is one)."""
    single = upload.single_sequence
    if not upload.is_volume:
        st.download_button("Download the predicted mask (PNG)", data=mask_png_bytes(predicted[0], single),
                           file_name=prediction_file_name(upload.name, False), mime="image/png")
        return
    columns = st.columns(3)
    columns[0].download_button(
        "Download the mask (NIfTI)", help="The predicted mask on the input's voxel grid, with its affine.",
        data=lambda: mask_volume_bytes(predicted, cast(Volume, upload.volume), single),
        file_name=prediction_file_name(upload.name, True), mime="application/gzip",
    )
    if report is not None:
        columns[1].download_button("Download the lesion report (JSON)", data=report_text(report),
                                   file_name=prediction_file_name(upload.name, True, ".json"),
                                   mime="application/json")
    if seg is not None:
        columns[2].download_button("Download the DICOM SEG", data=seg,
                                   file_name=prediction_file_name(upload.name, True, "_seg.dcm"),
                                   mime="application/dicom")
    elif report is not None and report.get("dicom_seg"):
        st.caption(f"No DICOM SEG: {escape_markdown(str(report['dicom_seg']['skipped']))}")


def pcam_view(loaded, checkpoint: CheckpointKey, threshold: float, run: RunCard) -> None:
    """Patches of a PCam split scored by the model (PCam has no per-run split: ``run`` is
    unused)."""
    folder = folder_field("PCam folder (HDF5 files)", settings.pcam_dir(), "pcam_dir")
    synthetic_note(folder)
    left, right = st.columns(2)
    split = SPLIT_LABELS[cast(str, left.radio("Split", list(SPLIT_LABELS), horizontal=True, key="pcam_split"))]
    count = right.slider("Patches to score", 16, 2048, 256, 16, key="pcam_count")

    def read_and_score() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        patches, labels = read_patches(folder, split, count)
        bar = st.progress(0.0, text="Scoring patches…")
        parts = []
        for start in range(0, len(patches), PATCHES_PER_BATCH):
            parts.append(patch_probabilities(loaded.model, patches[start : start + PATCHES_PER_BATCH]))
            done = min(start + PATCHES_PER_BATCH, len(patches))
            bar.progress(done / len(patches), text=f"Scoring patches: {done}/{len(patches)}")
        bar.empty()
        return patches, labels, np.concatenate(parts)

    try:
        patches, labels, probs = session_cached("pcam", (checkpoint, folder, split, count),
                                                read_and_score)
    except MedsegError as err:
        show_error(str(err))
        st.info("Write the demo patches with `medseg demo-data pcam demo_data/pcam`.")
        return
    scores = score_patches(probs, labels, threshold)
    cols = st.columns(4)
    for col, (label, key) in zip(cols, [("Accuracy", "accuracy"), ("AUC", "auc"),
                                        ("Sensitivity", "sensitivity"),
                                        ("Specificity", "specificity")], strict=True):
        col.metric(label, score_text(scores[key]))
    st.caption(f"{len(labels)} patches of the {split} split; a patch is called tumour when its "
               f"probability is ≥ {threshold:.2f}. AUC needs both classes (n/a otherwise). "
               "Under each patch: ✓ right or ✗ wrong, the predicted probability, the label.")
    order = st.radio("Order", ["As stored", "Worst first"], horizontal=True, key="pcam_order")
    shown = np.arange(len(probs))
    if order == "Worst first":
        shown = np.argsort(-np.abs(probs - labels), kind="stable")
    grid = st.columns(PATCH_GRID_COLUMNS)
    for slot, index in enumerate(shown[: PATCH_GRID_COLUMNS * 4]):
        correct = (probs[index] >= threshold) == bool(labels[index])
        grid[slot % PATCH_GRID_COLUMNS].image(
            patches[index], width="stretch",
            caption=f"{'✓' if correct else '✗'} {probs[index]:.2f} · "
                    f"{'tumour' if labels[index] else 'normal'}",
        )


def main() -> None:
    use_plain_tensors()  # once per process is enough; repeating it on a rerun costs nothing
    st.set_page_config(page_title="medseg viewer", page_icon="🧠", layout="wide")
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
    run, checkpoint, threshold, runs = choice
    if checkpoint is None:
        show_error(f"Cannot load run {run.name}: no checkpoint file (see the run's problems)")
        return
    try:
        key: CheckpointKey = (str(checkpoint), checkpoint.stat().st_mtime_ns)
        loaded = load_cached_model(*key)
    except (MedsegError, OSError) as err:
        show_error(f"Cannot load run {run.name}: {err}")
        return
    st.caption(f"Run {code_span(run.name)}, checkpoint {code_span(checkpoint.name)}")
    model_tab, curves_tab = st.tabs(["Model output", "Training curves"])
    with model_tab:
        TASK_VIEWS[loaded.task](loaded, key, threshold, run)
    with curves_tab:
        training_curves(runs, run)


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


def segmentation_view(loaded, key: CheckpointKey, threshold: float, run: RunCard) -> None:
    browse, upload = st.tabs(["Case browser", "Upload a scan"])
    with browse:
        case_browser(loaded, key, threshold, run.split)
    with upload:
        upload_view(loaded, key, threshold)


#: the page of each task (see medseg.tasks): (model, checkpoint key, threshold, run card)
TASK_VIEWS: dict[str, Callable[[Any, CheckpointKey, float, RunCard], None]] = {
    SEGMENTATION.name: segmentation_view,
    CLASSIFICATION.name: pcam_view,
}


if __name__ == "__main__":
    main()
