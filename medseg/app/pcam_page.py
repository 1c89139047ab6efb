"""The PatchCamelyon view: the first patches of a split scored by the model, with the ROC curve,
the confusion matrix at the threshold, and each patch's centre region (which defines its label)
outlined."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import streamlit as st

from medseg.app import settings
from medseg.app.patches import SPLIT_LABELS, outline_centre, read_patches, score_patches
from medseg.app.review_models import ReviewModel
from medseg.app.run_cards import RunCard
from medseg.app.widgets import (
    ModelKey,
    folder_field,
    picture,
    score_text,
    session_cached,
    show_error,
    synthetic_note,
)
from medseg.data.pcam import LABEL_REGION_SIZE, inspect_pcam_split, pcam_files
from medseg.engine import patch_probabilities
from medseg.errors import MedsegError
from medseg.metrics import binarize, roc_curve, sample_confusion_counts

PATCHES_PER_BATCH = 64
PATCH_GRID_COLUMNS = 8
#: the count slider: smallest count, step, and the most patches scored at once
MIN_PATCHES, PATCH_STEP, MAX_PATCHES = 16, 16, 2048


@st.cache_data(ttl=30, show_spinner=False)
def split_size(folder: str, split: str) -> int:
    """How many patches a PCam split holds (its files' metadata only)."""
    return inspect_pcam_split(*pcam_files(folder, split))


def count_slider(column, size: int) -> int:
    """How many of the split's ``size`` patches to score: a slider bounded by the split."""
    top = min(size, MAX_PATCHES)
    if top <= MIN_PATCHES:
        column.caption(f"All {size} patches of the split are scored.")
        return size
    step = PATCH_STEP if (top - MIN_PATCHES) % PATCH_STEP == 0 else 1  # the end stays reachable
    return column.slider("Patches to score", MIN_PATCHES, top, min(256, top), step, key="pcam_count",
                         help=f"The first patches of the split (it holds {size}).")


def roc_chart(probs: np.ndarray, labels: np.ndarray, scores: dict) -> None:
    """The ROC curve, with the operating point of the threshold (``scores``: the meter's, whose
    AUC is the area under this curve)."""
    fpr, tpr, _ = roc_curve(probs, labels)
    point = {"fpr": 1 - scores["specificity"], "tpr": scores["sensitivity"]}
    axis = {"type": "quantitative", "scale": {"domain": [0, 1]}}
    spec = {"title": "ROC curve", "layer": [
        {"mark": {"type": "line", "interpolate": "step-after"},
         "encoding": {"x": {"field": "fpr", **axis, "title": "false-positive rate (1 − specificity)"},
                      "y": {"field": "tpr", **axis, "title": "true-positive rate (sensitivity)"}}},
        {"data": {"values": [point]}, "mark": {"type": "point", "filled": True, "size": 80},
         "encoding": {"x": {"field": "fpr", **axis}, "y": {"field": "tpr", **axis},
                      "tooltip": [{"field": "fpr", "format": ".3f"}, {"field": "tpr", "format": ".3f"}]}},
    ]}
    st.vega_lite_chart(pd.DataFrame({"fpr": fpr, "tpr": tpr}), spec, height=300)


def confusion_table(probs: np.ndarray, labels: np.ndarray, threshold: float) -> None:
    """The 2x2 confusion matrix at the threshold (rows: label; columns: prediction)."""
    counts = sample_confusion_counts(probs, labels, threshold)
    st.table(pd.DataFrame(
        {"predicted tumour": [counts["tp"], counts["fp"]], "predicted normal": [counts["fn"], counts["tn"]]},
        index=pd.Index(["label tumour", "label normal"]),
    ))


#: the PCam folder's label
PCAM_FOLDER = "PCam folder (HDF5 files)"


def pcam_view(model: ReviewModel, checkpoint: ModelKey, threshold: float, run: RunCard) -> None:
    """Patches of a PCam split scored by the model (PCam keeps its official splits)."""
    configured = settings.patch_folder(run.config.data.root if run.config else None)
    with st.sidebar:  # the patches come first in the main area
        st.header("Patches")
        folder = folder_field(PCAM_FOLDER, configured.path, "pcam_dir",
                              help=f"Configured: {configured.source}.")
        synthetic_note(folder)
    problem = configured.problem(PCAM_FOLDER) if folder == str(configured.path) else None
    if problem is not None:
        show_error(problem)
        st.info("Write the demo patches with `medseg demo-data pcam demo_data/pcam`.")
        return
    left, right = st.columns(2)
    split = SPLIT_LABELS[cast(str, left.radio("Split", list(SPLIT_LABELS), horizontal=True, key="pcam_split"))]
    try:
        count = count_slider(right, split_size(folder, split))
    except MedsegError as err:
        show_error(str(err))
        st.info("Write the demo patches with `medseg demo-data pcam demo_data/pcam`.")
        return

    network = model.network  # a run's checkpoint or a CV folder's ensemble (exports are segmenters)
    assert network is not None

    def read_and_score() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        patches, labels = read_patches(folder, split, count)
        bar = st.progress(0.0, text="Scoring patches…")
        parts = []
        for start in range(0, len(patches), PATCHES_PER_BATCH):
            parts.append(patch_probabilities(network, patches[start : start + PATCHES_PER_BATCH]))
            done = min(start + PATCHES_PER_BATCH, len(patches))
            bar.progress(done / len(patches), text=f"Scoring patches: {done}/{len(patches)}")
        bar.empty()
        return patches, labels, np.concatenate(parts)

    try:
        patches, labels, probs = session_cached("pcam", (checkpoint, folder, split, count), read_and_score)
    except MedsegError as err:
        show_error(str(err))
        return
    scores = score_patches(probs, labels, threshold)
    cols = st.columns(4)
    for col, (label, key) in zip(cols, [("Accuracy", "accuracy"), ("AUC", "auc"),
                                        ("Sensitivity", "sensitivity"),
                                        ("Specificity", "specificity")], strict=True):
        col.metric(label, score_text(scores[key]))
    st.caption(f"{len(labels)} patches of the {split} split; a patch is called tumour when its "
               f"probability is ≥ {threshold:.2f}. AUC needs both classes (n/a otherwise).")
    curve, matrix = st.columns([3, 2])
    with curve:
        if len(set(labels.tolist())) == 2:
            roc_chart(probs, labels, scores)
        else:
            st.caption("No ROC curve: the patches hold one class only.")
    with matrix:
        st.caption(f"Confusion matrix at p ≥ {threshold:.2f}")
        confusion_table(probs, labels, threshold)
    st.caption("Under each patch: ✓ right or ✗ wrong, the predicted probability, the label. The "
               f"outlined centre {LABEL_REGION_SIZE}×{LABEL_REGION_SIZE} square is what a PCam label "
               "describes.")
    order = st.radio("Order", ["As stored", "Worst first"], horizontal=True, key="pcam_order")
    shown = np.arange(len(probs))
    if order == "Worst first":
        shown = np.argsort(-np.abs(probs - labels), kind="stable")
    grid = st.columns(PATCH_GRID_COLUMNS)
    predicted = binarize(probs, threshold)
    for slot, index in enumerate(shown[: PATCH_GRID_COLUMNS * 4]):
        correct = predicted[index] == labels[index]
        picture(grid[slot % PATCH_GRID_COLUMNS], outline_centre(patches[index]),
                f"{'✓' if correct else '✗'} {probs[index]:.2f} · {'tumour' if labels[index] else 'normal'}")
