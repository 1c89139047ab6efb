"""The slice viewer shared by the case browser and the upload view: display settings (sequence,
window, overlay style and opacity, shown labels, zoom), the scores of a slice, and one large
overlay beside the MRI and the masks, all sent as lossless PNG."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import streamlit as st

from medseg.app.links import LARGE_VIEWS, OVERLAY_STYLES, ZOOMS, default
from medseg.app.viewer import (
    PROBABILITY_COLOURS,
    SEQUENCE_CHANNELS,
    colour_bar,
    compose,
    error_layers,
    prediction_layers,
    probability_overlay,
    sequence_view,
    window,
)
from medseg.app.widgets import EXPERT, SYNTHETIC_REFERENCE, area_metric, legend, picture, score_text
from medseg.imaging.palette import ERROR_KINDS, PREDICTED, LegendEntry
from medseg.metrics import binarize

EMPTY_SLICE_NOTE = (
    "Dice and IoU per slice: 1 when neither the reference nor the model marks tumour, 0 when "
    "the model marks tumour on a slice without any. Patient scores are 3-D (all slices pooled)."
)
#: the reference's name in a metric's label, where "Reference (synthetic) area (px)" would be cut
METRIC_NAMES = {SYNTHETIC_REFERENCE: "Synthetic ref."}
#: the large view's choices as the sidebar names them
LARGE_VIEW_NAMES = {"errors": "Errors", "probability": "Probability map"}
#: the overlay's labels a reviewer can show or hide
LABELS: dict[str, LegendEntry] = ERROR_KINDS
#: the smallest width, in screen pixels, of the large view (a 96-px slice is drawn 2x at zoom 1)
MIN_VIEW_PX = 192


@dataclass(frozen=True)
class Display:
    """How slices are drawn (the sidebar's display settings)."""

    sequence: str
    style: Literal["fill", "outline"]
    opacity: float
    zoom: int
    low: int
    high: int
    labels: tuple[str, ...]
    large: str = LARGE_VIEWS[0]  # "errors" or "probability"

    def background(self, image: np.ndarray, channels: Mapping[str, int | None] = SEQUENCE_CHANNELS) -> np.ndarray:
        """The slice's chosen sequence, windowed."""
        return window(sequence_view(image, self.sequence, channels), self.low, self.high)

    def overlay(self, background: np.ndarray, pred: np.ndarray, target: np.ndarray | None,
                zoom: int = 1) -> np.ndarray:
        """The TP/FP/FN overlay (the predicted mask alone without a ``target``) in this style,
        upscaled ``zoom`` times (nearest neighbour)."""
        layers = prediction_layers(pred) if target is None else error_layers(pred, target, self.labels)
        return compose(background, layers, style=self.style, opacity=self.opacity, factor=zoom)

    def legend(self, with_reference: bool) -> tuple[LegendEntry, ...]:
        return tuple(LABELS[key] for key in self.labels) if with_reference else (PREDICTED,)


def display_settings(channels: Mapping[str, int | None] = SEQUENCE_CHANNELS, key: str = "sequence") -> Display:
    """Sidebar: MRI sequence, overlay style and opacity, shown labels, zoom and window."""
    for setting in ("overlay_opacity", "overlay_labels", "zoom", "window"):  # a link may set them
        st.session_state.setdefault(setting, default(setting))
    with st.sidebar:
        st.header("Display")
        large = cast(str, st.radio(
            "Large view", LARGE_VIEWS, horizontal=True, key="large_view",
            format_func=lambda view: LARGE_VIEW_NAMES[view],
            help="Errors: the model's mask against the reference (TP/FP/FN). Probability map: "
                 "the model's probability of tumour for each pixel, the threshold's contour in white."))
        sequence = cast(str, st.radio("MRI sequence", list(channels), horizontal=True, key=key))
        style = cast(str, st.radio("Overlay", OVERLAY_STYLES, horizontal=True, key="overlay_style",
                                   help="Outline: each region's border, one screen pixel thick, "
                                        "the MRI visible inside. Fill: the regions coloured."))
        opacity = st.slider("Overlay opacity", 0.0, 1.0, step=0.05, key="overlay_opacity")
        labels = st.multiselect("Labels shown", list(LABELS), key="overlay_labels",
                                format_func=lambda label: LABELS[label].label)
        zoom = st.select_slider("Zoom (nearest neighbour)", ZOOMS, key="zoom",
                                format_func=lambda z: f"{z}×")
        low, high = cast(tuple[int, int], st.slider(
            "Window (intensity range from black to white)", 0, 255, key="window",
            help="Window/level: intensities at or below the low end show black, at or above "
                 "the high end white; narrow it to see faint contrast."))
    return Display(sequence, cast(Literal["fill", "outline"], style.lower()), opacity, zoom,
                   low, max(high, low + 1), tuple(labels), large)


def slice_metrics(row: dict, volume: dict, pixel_area_mm2: float | None, label: str,
                  reference: str = EXPERT) -> None:
    """Dice and IoU of the slice and of the whole patient/volume, and the tumour areas."""
    cols = st.columns([1, 1, 1.1, 1.1, 1.4, 1.1])  # the area labels are the longest
    cols[0].metric("Slice Dice", score_text(row["dice"]))
    cols[1].metric("Slice IoU", score_text(row["iou"]))
    cols[2].metric(f"{label} Dice (3-D)", score_text(volume["patient_dice"]))
    cols[3].metric(f"{label} IoU (3-D)", score_text(volume["patient_iou"]))
    area_metric(cols[4], METRIC_NAMES.get(reference, reference), row["gt_pixels"], pixel_area_mm2)
    area_metric(cols[5], "Model", row["pred_pixels"], pixel_area_mm2)


def native(column, array: np.ndarray, caption: str, width: int) -> None:
    """A picture at its native ``width`` captioned across its column (at least
    :data:`MIN_VIEW_PX` wide), so a caption never wraps under a 64-px picture."""
    picture(column, array, "", width=width)
    column.caption(caption)


def view_zoom(display: Display, width: int) -> int:
    """The large view's zoom for a slice ``width`` pixels wide: the display's, or more, so the
    view is at least :data:`MIN_VIEW_PX` wide."""
    return max(display.zoom, -(-MIN_VIEW_PX // width))


def large_picture(background: np.ndarray, mask: np.ndarray | None, prob: np.ndarray,
                  threshold: float, display: Display, probability: np.ndarray | None = None) -> np.ndarray:
    """The large view's picture of a slice (:func:`slice_view`'s; the case export's): the
    errors against ``mask`` (the model's mask alone without one) or, when ``display.large`` asks,
    the probability map of ``probability`` (default ``prob``), at :func:`view_zoom`."""
    zoom = view_zoom(display, prob.shape[1])
    if display.large == "probability":
        return probability_overlay(background, prob if probability is None else probability, threshold, zoom)
    return display.overlay(background, binarize(prob, threshold), mask, zoom)


def slice_view(image: np.ndarray, mask: np.ndarray | None, prob: np.ndarray, threshold: float,
               display: Display, reference: str = EXPERT,
               channels: Mapping[str, int | None] = SEQUENCE_CHANNELS,
               probability: np.ndarray | None = None) -> None:
    """One large overlay (zoomed by nearest neighbour, at least :data:`MIN_VIEW_PX` wide) beside
    the MRI, the reference mask and the model mask at native size; then the colour legend.

    The large view shows the errors against the reference, or (``display.large``) the
    probability map of ``probability`` (the model's own, before any postprocessing; default
    ``prob``) with its colour bar."""
    background = display.background(image, channels)
    pred = binarize(prob, threshold)
    width = pred.shape[1]
    zoom = view_zoom(display, width)
    big, small = st.columns([zoom * width, max(width, MIN_VIEW_PX)])
    shown = large_picture(background, mask, prob, threshold, display, probability)
    if display.large == "probability":
        picture(big, shown,
                f"Probability map ({display.sequence}, {zoom}×): white contour p ≥ {threshold:.2f}",
                width=zoom * width)
        bar = min(zoom * width, 256)  # drawn at the width shown (Streamlit would resample it)
        picture(big, colour_bar(threshold, width=bar), "", width=bar)
        big.caption(f"Probability of tumour, 0 (left) to 1 (right), {PROBABILITY_COLOURS}; "
                    f"black mark: the threshold {threshold:.2f}. Transparent where p is near 0.")
    else:
        what = f"model vs {reference.lower()}" if mask is not None else "model"
        picture(big, shown,
                f"Overlay: {what} ({display.sequence}, {display.style}, {zoom}×)", width=zoom * width)
    native(small, background, f"MRI: {display.sequence}", width)
    if mask is not None:
        native(small, mask * 255, f"{reference} mask", width)
    native(small, pred * 255, f"Model mask (p ≥ {threshold:.2f})", width)
    if display.large != "probability":
        legend(display.legend(mask is not None))
