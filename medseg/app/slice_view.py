"""The slice viewer shared by the case browser and the upload view: display settings (sequence,
window, overlay style and opacity, shown labels, zoom), the scores of a slice, and one large
overlay beside the MRI and the masks, all sent as lossless PNG."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import streamlit as st

from medseg.app.viewer import (
    SEQUENCE_CHANNELS,
    compose,
    error_layers,
    prediction_layers,
    sequence_view,
    window,
)
from medseg.app.widgets import EXPERT, area_metric, legend, picture, score_text
from medseg.imaging.palette import ERROR_KINDS, PREDICTED, LegendEntry
from medseg.metrics import binarize

EMPTY_SLICE_NOTE = (
    "Dice and IoU per slice: 1 when neither the reference nor the model marks tumour, 0 when "
    "the model marks tumour on a slice without any. Patient scores are 3-D (all slices pooled)."
)
#: the overlay's labels a reviewer can show or hide
LABELS: dict[str, LegendEntry] = ERROR_KINDS
ZOOMS = (1, 2, 3, 4)
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
    with st.sidebar:
        st.header("Display")
        sequence = cast(str, st.radio("MRI sequence", list(channels), horizontal=True, key=key))
        style = cast(str, st.radio("Overlay", ["Outline", "Fill"], horizontal=True, key="overlay_style",
                                   help="Outline: each region's border, one screen pixel thick, "
                                        "the MRI visible inside. Fill: the regions coloured."))
        opacity = st.slider("Overlay opacity", 0.0, 1.0, 1.0, 0.05, key="overlay_opacity")
        labels = st.multiselect("Labels shown", list(LABELS), default=list(LABELS), key="overlay_labels",
                                format_func=lambda label: LABELS[label].label)
        zoom = st.select_slider("Zoom (nearest neighbour)", ZOOMS, value=2, key="zoom",
                                format_func=lambda z: f"{z}×")
        low, high = st.slider(
            "Window (intensity range from black to white)", 0, 255, (0, 255), key="window",
            help="Window/level: intensities at or below the low end show black, at or above "
                 "the high end white; narrow it to see faint contrast.")
    return Display(sequence, cast(Literal["fill", "outline"], style.lower()), opacity, zoom,
                   low, max(high, low + 1), tuple(labels))


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


def slice_view(image: np.ndarray, mask: np.ndarray | None, prob: np.ndarray, threshold: float,
               display: Display, reference: str = EXPERT,
               channels: Mapping[str, int | None] = SEQUENCE_CHANNELS) -> None:
    """One large overlay (zoomed by nearest neighbour, at least :data:`MIN_VIEW_PX` wide) beside
    the MRI, the reference mask and the model mask at native size; then the colour legend."""
    background = display.background(image, channels)
    pred = binarize(prob, threshold)
    width = pred.shape[1]
    zoom = max(display.zoom, -(-MIN_VIEW_PX // width))
    big, small = st.columns([zoom * width, max(width, MIN_VIEW_PX)])
    what = f"model vs {reference.lower()}" if mask is not None else "model"
    picture(big, display.overlay(background, pred, mask, zoom),
            f"Overlay: {what} ({display.sequence}, {display.style}, {zoom}×)", width=zoom * width)
    picture(small, background, f"MRI: {display.sequence}", width=width)
    if mask is not None:
        picture(small, mask * 255, f"{reference} mask", width=width)
    picture(small, pred * 255, f"Model mask (p ≥ {threshold:.2f})", width=width)
    legend(display.legend(mask is not None))
