"""The upload view: a slice or a NIfTI volume, or a scan's three MR sequences (NIfTI or zipped
DICOM), read with the checks of ``medseg predict``; the model's mask, scores against an
optional expert mask (for a volume also every measure of the Case view and the lesions, found
or missed, as ``medseg predict --reference`` reports them, and the Case view's slice table),
tumour volume and lesions, and the downloads.

Three sequences: each slot says what its file holds as soon as it is uploaded (or, for a file
that cannot be read, why not; and warns when a DICOM SeriesDescription names another
sequence); how the files fit together (missing sequences, different grids, the mask) is checked
once all three are in, or when the reader presses Run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import streamlit as st

from medseg.app import settings
from medseg.app.cohort import apply_step
from medseg.app.lgg_page import lesion_table, measure_table, slice_table
from medseg.app.review_models import ReviewModel
from medseg.app.scoring import score_volume
from medseg.app.slice_view import EMPTY_SLICE_NOTE, Display, slice_metrics, slice_view
from medseg.app.text import escape_markdown
from medseg.app.uploads import (
    SEQUENCE_MASK_SUFFIXES,
    SINGLE_SEQUENCE_BOX,
    Upload,
    UploadedFile,
    dicom_seg_bytes,
    read_sequences,
    read_upload,
    slot_info,
    slot_warning,
    upload_reference,
    upload_report,
)
from medseg.app.volume_viewer import PLANES, stack_viewer
from medseg.app.widgets import (
    EXPERT,
    SLICES_PER_BATCH,
    ModelKey,
    area_metric,
    choose_slice,
    largest_area_slice,
    session_cached,
    show_error,
)
from medseg.errors import MedsegError
from medseg.imaging.nifti import Volume
from medseg.imaging.sequences import SEQUENCE_TITLES, SEQUENCES, missing_sequences
from medseg.metrics import binarize
from medseg.metrics.measures import measure_label
from medseg.postprocessing import Postprocessing
from medseg.predict import (
    DICOM_SEG,
    MASK_NIFTI,
    MASK_PNG,
    REPORT_JSON,
    SEQUENCE_SUFFIXES,
    SLICE_SUFFIXES,
    VOLUME_SUFFIXES,
    download_name,
    mask_nifti_bytes,
    mask_picture,
    png_bytes,
    report_text,
)

#: the upload view's inputs
UPLOAD_MODES = ("One file", "Three sequences")
SINGLE_SEQUENCE_WARNING = (
    "**One MR sequence, repeated into all three channels.** The model was trained on three "
    "(pre-contrast T1, FLAIR, post-contrast T1) and never saw such input: its mask is less "
    "reliable. The downloads say so (NIfTI description, `single_sequence` in the report)."
)
#: what the one-file uploaders offer in the browser's file picker (the readers check again)
ONE_FILE_TYPES = [*SLICE_SUFFIXES, *VOLUME_SUFFIXES]
#: reads the chosen uploads; its argument: one MR sequence may be repeated (single_sequence)
UploadReader = Callable[[bool], Upload]
#: the session key holding the uploads the reader asked to run before all three sequences were in
RUN_ASKED = "upload_run_for"


@dataclass(frozen=True)
class ChosenUpload:
    """The files given and how to read them; ``sequences``: the sequence slots filled (None for
    one file, which is read at once)."""

    files: list
    read: UploadReader
    sequences: tuple[str, ...] | None = None


def predict_with_progress(model: ReviewModel, images: np.ndarray, what: str) -> np.ndarray:
    """Probabilities of every slice, a batch at a time, with a progress bar."""
    what = escape_markdown(what)
    bar = st.progress(0.0, text=f"Predicting {what}…")
    parts = []
    for start in range(0, len(images), SLICES_PER_BATCH):
        parts.append(model.probabilities(images[start : start + SLICES_PER_BATCH]))
        done = min(start + SLICES_PER_BATCH, len(images))
        bar.progress(done / len(images), text=f"Predicting {what}: {done}/{len(images)} slices")
    bar.empty()
    return np.concatenate(parts)


def one_file_input() -> ChosenUpload | None:
    """The one-file uploaders; their files and how to read them (None until a file is given)."""
    st.caption(
        "A slice (.tif, .png, .jpg) with an optional mask of the same size, or a NIfTI volume "
        "(.nii, .nii.gz) with an optional mask volume. Files are read in a temporary folder "
        f"that is deleted at once; at most {settings.MAX_UPLOAD_MB} MB each."
    )
    left, right = st.columns(2)
    image_file = left.file_uploader("Slice or volume", key="upload_image", type=ONE_FILE_TYPES,
                                    max_upload_size=settings.MAX_UPLOAD_MB)
    mask_file = right.file_uploader("Expert mask (optional)", key="upload_mask", type=ONE_FILE_TYPES,
                                    max_upload_size=settings.MAX_UPLOAD_MB)
    if image_file is None:
        st.info("Upload a slice or a volume to see the model's mask.")
        return None

    def read(single_sequence: bool) -> Upload:
        return read_upload(uploaded(image_file), uploaded(mask_file) if mask_file is not None else None,
                           max_mb=settings.MAX_UPLOAD_MB, single_sequence=single_sequence)

    return ChosenUpload([f for f in (image_file, mask_file) if f is not None], read)


def slot_summary(column, role: str, file) -> bool:
    """Under an uploader, what its file holds (:func:`~medseg.app.uploads.slot_info`) and any
    warning of :func:`~medseg.app.uploads.slot_warning`, or why it cannot be read; False then."""
    try:
        info = session_cached("upload_slots", (role, file.file_id, file.name, file.size), lambda: slot_info(
            role, uploaded(file), max_mb=settings.MAX_UPLOAD_MB), size=8)
    except MedsegError as err:
        with column:
            show_error(str(err))
        return False
    column.caption(escape_markdown(info.text()))
    warning = slot_warning(role, info)
    if warning is not None:
        column.warning(escape_markdown(warning), icon="⚠️")
    return True


def sequences_input() -> ChosenUpload | None:
    """The three sequence uploaders and the expert mask's, each saying what its file holds;
    their files and how to read them (None until a sequence is given, or while a file cannot
    be read)."""
    st.caption(
        "The scan's three MR sequences, each a NIfTI volume (.nii, .nii.gz) or a zipped DICOM "
        "series (.zip), co-registered on one voxel grid, with an optional expert mask: a NIfTI "
        "volume on the same grid or a DICOM SEG (.dcm) of one of the DICOM series. Read as "
        "`medseg predict --pre --flair --post` reads them, in a temporary folder that is deleted "
        f"at once; at most {settings.MAX_UPLOAD_MB} MB each."
    )
    columns = st.columns(4)
    files = {key: column.file_uploader(SEQUENCE_TITLES[key], key=f"upload_{key}",
                                       type=list(SEQUENCE_SUFFIXES),
                                       max_upload_size=settings.MAX_UPLOAD_MB)
             for key, column in zip(SEQUENCES, columns, strict=False)}
    mask_file = columns[3].file_uploader("Expert mask (optional)", key="upload_sequence_mask",
                                         type=list(SEQUENCE_MASK_SUFFIXES),
                                         max_upload_size=settings.MAX_UPLOAD_MB,
                                         help="A NIfTI volume on the sequences' grid, or a DICOM SEG "
                                              "referring to one of their DICOM series.")
    given = {key: f for key, f in files.items() if f is not None}
    slots = [(columns[SEQUENCES.index(key)], key, f) for key, f in given.items()]
    if mask_file is not None:
        slots.append((columns[3], "mask", mask_file))
    readable = [slot_summary(column, role, f) for column, role, f in slots]
    if not given:
        st.info("Upload the scan's sequences to see the model's mask.")
        return None
    if not all(readable):
        st.info("Replace the file marked in red to see the model's mask.")
        return None

    def read(single_sequence: bool) -> Upload:
        return read_sequences({key: uploaded(f) for key, f in given.items()},
                              uploaded(mask_file) if mask_file is not None else None,
                              max_mb=settings.MAX_UPLOAD_MB, single_sequence=single_sequence)

    return ChosenUpload([*given.values(), *([mask_file] if mask_file is not None else [])], read, tuple(given))


def ready_to_run(filled: tuple[str, ...], single: bool, files_id: str) -> bool:
    """Whether the sequences given are read now: all that are needed are in
    (:func:`~medseg.imaging.sequences.missing_sequences`), or the reader pressed Run for these
    files; until then, a note and the Run button (no error: the others may be on their way)."""
    if not missing_sequences(filled, single) or st.session_state.get(RUN_ASKED) == files_id:
        return True
    st.info(f"{len(filled)} of {len(SEQUENCES)} sequences uploaded. Together they are checked "
            "(missing sequences, one voxel grid, the mask) when all three are in, or when you "
            "press Run.")
    st.button("Run", key="upload_run", on_click=st.session_state.update, kwargs={RUN_ASKED: files_id},
              help="Read the files given now, as they are.")
    return False


def uploaded(file) -> UploadedFile:
    """(name, bytes) of a Streamlit upload."""
    return file.name, file.getvalue()


def upload_view(model: ReviewModel, checkpoint: ModelKey, threshold: float, display: Display,
                step: Postprocessing | None = None) -> None:
    """Upload a scan, predict it with ``model`` and show, score and offer the mask (the
    postprocessed one when there is a ``step``, as for the case folder's patients)."""
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
    files, read = given.files, given.read
    files_id = "|".join(f.file_id for f in files)
    if given.sequences is not None and not ready_to_run(given.sequences, single, files_id):
        return
    key = (checkpoint, step, mode, single, *[(f.file_id, f.name, f.size) for f in files])

    def decode_and_predict() -> tuple[Upload, np.ndarray]:
        upload = read(single)
        probs = predict_with_progress(model, upload.images, upload.name)
        return upload, probs

    try:
        upload, probs = session_cached("uploads", key, decode_and_predict, size=2)
    except MedsegError as err:
        show_error(str(err))
        return
    upload_results(upload, apply_step(probs, threshold, step), threshold, key, files_id, display,
                   raw=probs)


def upload_results(upload: Upload, probs: np.ndarray, threshold: float, key: tuple, files_id: str,
                   display: Display, raw: np.ndarray | None = None) -> None:
    """An upload's pictures, scores, tumour volume and downloads: ``probs`` are what is scored
    (postprocessed, as 0/1, when the model has a step), ``raw`` the model's own probabilities
    for the probability map (default ``probs``)."""
    if upload.single_sequence:
        st.warning(SINGLE_SEQUENCE_WARNING, icon="⚠️")
    predicted = binarize(probs, threshold)
    numbers = list(range(1, len(upload.images) + 1))
    reference = upload.masks if upload.masks is not None else predicted
    slider_key = f"upload_slice:{files_id}"
    number = choose_slice(numbers, largest_area_slice(numbers, reference), slider_key,
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
    report, seg, scored = None, None, None
    if upload.is_volume:
        if upload.masks is not None:
            scored = session_cached("upload_references", (key, threshold),
                                    lambda: upload_reference(upload, predicted), size=2)
        seg, seg_skipped = session_cached("upload_segs", (key, threshold),
                                          lambda: dicom_seg_bytes(upload, predicted, threshold), size=2)
        seg_file = download_name(upload.name, DICOM_SEG) if seg is not None else None
        report = session_cached("upload_reports", (key, threshold), lambda: upload_report(
            upload, predicted, threshold, seg_file=seg_file, seg_skipped=seg_skipped,
            reference=scored.section() if scored is not None else None), size=2)
        more[0].metric("Model volume (mL)", f"{report['tumour_volume_ml']:.2f}",
                       help="Tumour volume of the predicted mask, all slices (the lesion report's "
                            "tumour_volume_ml).")
        more[1].metric("Model lesions", str(report["n_lesions"]),
                       help="3-D connected components of the predicted mask (26-connectivity), "
                            "each listed in the lesion report.")
        if scored is not None:
            reference_metrics(more[2:], scored.measures)
    views = upload.views
    sequence = cast(str, st.radio(
        "MRI sequence", list(views), horizontal=True, key=f"upload_sequence:{'|'.join(views)}",
        help="The sequences this upload holds (one sequence: only that one).",
    ))
    mask = upload.masks[position] if upload.masks is not None else None
    shown = dataclasses.replace(display, sequence=sequence)

    def png_view() -> None:
        slice_view(upload.images[position], mask, probs[position], threshold, shown, channels=views,
                   probability=None if raw is None else raw[position])

    if upload.volume is None:
        png_view()
    else:  # a volume: the interactive viewer on the file's grid, in its three planes
        stack_viewer(upload.images, upload.masks, predicted, shown, position, png_view,
                     affine=upload.volume.affine, to_slices=upload.volume.slice_transform(),
                     planes=PLANES, channels=views, key="upload")
    spacing = "Pixel spacing unknown: areas in pixels"
    if upload.pixel_area_mm2:
        spacing = f"Pixel spacing from the {'DICOM headers' if upload.dicom else 'NIfTI header'}"
    st.caption(f"{spacing}. {EMPTY_SLICE_NOTE}")
    if scored is not None:
        units = ("Distances in mm and volumes in mL from the file's voxel spacing." if upload.pixel_area_mm2
                 else "Voxel spacing unknown: distances in pixels and volumes in voxels.")
        measure_table(scored.measures, units, "Measures against the expert mask (3-D)")
        lesion_table(scored.matching, numbers, f"upload_lesions:{files_id}:{threshold}:{number}",
                     slider_key, EXPERT)
        slice_table(volume, f"upload_table:{files_id}:{threshold}:{number}", slider_key, EXPERT,
                    subject="volume")
    upload_downloads(upload, predicted, report, seg)


def reference_metrics(columns: list, measures: dict[str, float | int]) -> None:
    """The expert mask's volume, the volume difference and the expert lesions found, from the
    measures the table under the view lists (:func:`~medseg.metrics.measures.patient_measures`),
    labelled as it labels them."""
    for column, prefix in zip(columns, ("ref_volume_", "abs_volume_diff_"), strict=False):
        key = next(k for k in measures if k.startswith(prefix))
        value = measures[key]
        column.metric(measure_label(key), "undefined" if np.isnan(value) else
                      f"{value:.2f}" if key.endswith("_ml") else str(int(value)))
    columns[2].metric(measure_label("detected_lesions"),
                      f"{measures['detected_lesions']} of {measures['ref_lesions']}",
                      help=f"{measure_label('missed_lesions')}: {measures['missed_lesions']}")


def upload_downloads(upload: Upload, predicted: np.ndarray, report: dict | None, seg: bytes | None) -> None:
    """The predicted mask, and for a volume its lesion report and DICOM SEG (when there is one)."""
    single = upload.single_sequence
    if not upload.is_volume:
        st.download_button("Download the predicted mask (PNG)",
                           data=png_bytes(mask_picture(predicted[0]), single),
                           file_name=download_name(upload.name, MASK_PNG), mime="image/png")
        return
    columns = st.columns(3)
    columns[0].download_button(
        "Download the mask (NIfTI)", help="The predicted mask on the input's voxel grid, with its affine.",
        data=lambda: mask_nifti_bytes(predicted, cast(Volume, upload.volume), single),
        file_name=download_name(upload.name, MASK_NIFTI), mime="application/gzip",
    )
    if report is not None:
        columns[1].download_button("Download the lesion report (JSON)", data=report_text(report),
                                   file_name=download_name(upload.name, REPORT_JSON),
                                   mime="application/json")
    if seg is not None:
        columns[2].download_button("Download the DICOM SEG", data=seg,
                                   file_name=download_name(upload.name, DICOM_SEG),
                                   mime="application/dicom")
    elif report is not None and report.get("dicom_seg"):
        st.caption(f"No DICOM SEG: {escape_markdown(str(report['dicom_seg']['skipped']))}")


