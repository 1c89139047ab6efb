"""Streamlit pieces shared by the app's views: caches, errors, folder fields, scores, pictures.

Caches shared by every browser session (``st.cache_resource``) hold read-only values: the
models (:class:`~medseg.app.review_models.ReviewModel`: a run's checkpoint, an export or a CV
folder's ensemble), and each patient's slices and probabilities (their arrays are made
read-only, so one session cannot change what another sees).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from medseg.app import settings
from medseg.app.review_models import ReviewModel, open_model
from medseg.app.scoring import PatientSlices, format_area, read_patient_slices
from medseg.app.text import code_span, escape_markdown
from medseg.app.viewer import png_bytes
from medseg.data.lgg import Patient, list_patients
from medseg.demo.marker import read_demo_marker
from medseg.errors import MedsegError
from medseg.imaging.palette import LegendEntry

#: a model as the caches key it: (kind, path, newest modification time in ns of the files it
#: reads, test-time augmentation); see :mod:`medseg.app.review_models`
ModelKey = tuple[str, str, int, str]
SLICES_PER_BATCH = 8
#: what the case views call the reference mask: an expert's, or the demo's synthetic one
EXPERT = "Expert"
SYNTHETIC_REFERENCE = "Reference (synthetic)"
#: what every screen and exported file of the app says first
RESEARCH_NOTICE = "Research use only — not for diagnosis."
#: shown above demo data (a folder with medseg demo-data's marker), by the marker's kind
SYNTHETIC_NOTES = {
    "lgg": "**Demo data: the MRI is real anatomy, the tumours are SYNTHETIC** (drawn by `medseg "
           "demo-data`); the patient names are made up. Scores here test the pipeline, not how a "
           "model reads real tumours.",
    "pcam": "**Demo data: the histology is real, the labels are SYNTHETIC** (a patch is positive "
            "when its centre is rich in haematoxylin, not when it holds tumour).",
}


# ---------------------------------------------------------------- caches


def model_key(kind: str, path: Path, files: tuple[Path, ...] = (), tta: str = "none") -> ModelKey:
    """The cache key of the model ``path`` of ``kind`` (a checkpoint or export file, or a CV
    folder): rewriting any of ``files`` (default: ``path`` itself) gives a new key.

    Raises:
        OSError: when a file cannot be read.
    """
    newest = max(file.stat().st_mtime_ns for file in (files or (path,)))
    return kind, str(path), newest, tta


def checkpoint_key(checkpoint: Path) -> ModelKey:
    """The cache key of a run's checkpoint file."""
    return model_key("run", checkpoint)


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def load_cached_model(kind: str, path: str, modified_ns: int, tta: str) -> ReviewModel:
    """The model, shared read-only by every session."""
    return open_model(kind, path, tta)


@st.cache_data(ttl=30, show_spinner=False)
def list_cases(folder: str) -> list[Patient]:
    """The patients of an LGG folder (refreshed every 30 s)."""
    return list_patients(folder)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@st.cache_resource(max_entries=24, show_spinner=False)
def cached_case(folder: str, name: str, fingerprint: str) -> PatientSlices:
    """A patient's slices and masks (read-only arrays), shared by every session."""
    patient = next(p for p in list_cases(folder) if p.name == name)
    case = read_patient_slices(patient)
    _read_only(case.images)
    _read_only(case.masks)
    return case


@st.cache_resource(max_entries=24, show_spinner="Predicting the patient's slices…")
def cached_probabilities(key: ModelKey, folder: str, name: str, fingerprint: str) -> np.ndarray:
    """The model's probabilities for every slice of a patient (read-only), shared by every
    session: a second tab or a second reviewer never runs the model again."""
    model = load_cached_model(*key)
    images = cached_case(folder, name, fingerprint).images
    parts = [model.probabilities(np.array(images[start : start + SLICES_PER_BATCH]))  # a writable copy
             for start in range(0, len(images), SLICES_PER_BATCH)]
    return _read_only(np.concatenate(parts))


@st.cache_data(ttl=30, show_spinner=False)
def demo_marker(folder: str) -> dict | None:
    """The ``medseg demo-data`` marker of a data folder (None for real data)."""
    return read_demo_marker(folder)


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


# ---------------------------------------------------------------- small views


def show_error(message: str) -> None:
    """A one-line error, shown literally (no Markdown in file names or messages)."""
    st.error(escape_markdown(message))


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


def folder_field(label: str, configured: Path, key: str, help: str | None = None) -> str:
    """The folder to read: a text field when the folder picker is on, else the configured
    folder, shown read-only (no browser input can change it)."""
    if settings.folder_picker():
        return st.text_input(label, value=str(configured), key=key, help=help)
    st.caption(f"{label}: {code_span(str(configured))}", help=help)
    return str(configured)


def legend(entries: tuple[LegendEntry, ...]) -> None:
    """The overlay's colours and their meanings, on one line."""
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


def picture(where, array: np.ndarray, caption: str, width: int | str = "stretch") -> None:
    """Show a picture losslessly (PNG: masks keep their two levels, 1-px rims stay sharp)."""
    where.image(png_bytes(array), caption=caption, width=width, output_format="PNG")


def choose_slice(numbers: list[int], default: int, key: str, label: str = "Slice") -> int:
    """A slice slider (arrow keys step through it) over ``numbers``, opening on ``default``."""
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
