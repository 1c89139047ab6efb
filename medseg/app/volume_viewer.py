"""The interactive volume viewer: a patient's or an upload's whole stack in NiiVue
(https://github.com/niivue/niivue, BSD-2-Clause), drawn by WebGL2 in the browser, so the mouse
wheel scrolls slices, a drag sets the window/level and zoom and pan need no server round trip.

The library part builds what the viewer shows as in-memory NIfTI (gzip) on the stack's own grid:
the background sequence, and one label volume per overlay (the errors: TP/FP/FN; the reference;
the model's mask) with its colours from :mod:`medseg.imaging.palette`. :func:`show_volume` is the
thin Streamlit call; the component (``static/volume_viewer``: NiiVue's UMD bundle, vendored by
``scripts/build_viewer.sh``, and a small page speaking Streamlit's component protocol) fetches
nothing at run time. NiiVue needs WebGL2: where the browser has none the component says so
(:attr:`ViewerState.webgl` False) and the page shows its PNG view instead.

Example:
    >>> stack = np.zeros((3, 4, 5), np.uint8)
    >>> nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(stack, slice_affine()))).shape
    (3, 4, 5)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import streamlit as st
import streamlit.components.v1 as components
from nibabel.orientations import apply_orientation, axcodes2ornt

from medseg.app.slice_view import Display
from medseg.app.viewer import SEQUENCE_CHANNELS, error_masks
from medseg.imaging.nifti import SLICE_AXCODES, inverse_transform
from medseg.imaging.palette import ERROR_KINDS, PREDICTED, REFERENCE, LegendEntry

#: the component's files: index.html, viewer.js, niivue.umd.js
STATIC_DIR = Path(__file__).parent / "static" / "volume_viewer"
#: the planes an upload's volume can be shown in (the first opens); kaggle slices: axial only
PLANES = ("axial", "coronal", "sagittal", "multiplanar")
#: the viewer's height in the page, in CSS pixels (its tool bar included)
VIEWER_HEIGHT = 560
#: the overlays the viewer offers, by name: the errors need a reference
OVERLAYS = ("errors", "reference", "model")
OVERLAY_NAMES = {"errors": "Errors (TP/FP/FN)", "reference": "Reference", "model": "Model"}

#: the "Viewer" choice; the PNG view alone where the component's files are missing
VIEWERS = ("Interactive (NiiVue)", "Image (PNG)")
AVAILABLE = (STATIC_DIR / "niivue.umd.js").is_file()
VIEWER_HELP = (
    "Mouse wheel: next/previous slice. Left click or drag: move the crosshair (the slice in the "
    "other planes). Right drag, or shift + left drag: window/level (left-right: width, up-down: "
    "level); buttons or keys a (auto: 2nd-98th percentile) and f (full range) reset it. "
    "Keys + and -: zoom; middle drag: pan; r: reset zoom and pan; h/l, j/k: crosshair "
    "left/right, down/up (NiiVue's keys); 1-4: plane, v: cycle the planes. Click the viewer first "
    "for the keys.")
NO_WEBGL = ("The interactive viewer needs WebGL2, which this browser does not offer (hardware "
            "acceleration off?): the image (PNG) view instead.")
OUTLINE_NOTE = "Outline: NiiVue draws each region's border over a fill at the opacity chosen."

_component = components.declare_component("medseg_volume_viewer", path=str(STATIC_DIR))


@dataclass(frozen=True)
class LabelOverlay:
    """A label volume over the stack: 0 background (transparent), ``k`` painted ``entries[k-1]``."""

    name: str
    labels: np.ndarray  # (N, H, W) uint8
    entries: tuple[LegendEntry, ...]


@dataclass(frozen=True)
class ViewerState:
    """What the browser said: ``webgl`` None until the component has drawn or failed."""

    webgl: bool | None
    error: str | None = None


def background_stack(images: np.ndarray, sequence: str,
                     channels: Mapping[str, int | None] = SEQUENCE_CHANNELS) -> tuple[np.ndarray, str]:
    """The (N, H, W) uint8 stack of ``sequence`` from (N, H, W, 3) ``images`` and the name of
    what it shows: the viewer shows one sequence, so the RGB composite is shown as the first
    single sequence of ``channels``."""
    channel = channels[sequence]
    if channel is None:
        sequence, channel = next((name, c) for name, c in channels.items() if c is not None)
    return np.ascontiguousarray(images[..., channel]), sequence


def slice_affine(spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The voxel-to-world (RAS) affine of a stack stored in slice order (N, H, W), oriented as
    :data:`~medseg.imaging.nifti.SLICE_AXCODES` says, with ``spacing`` (mm per slice, row,
    column). kaggle slices carry no spacing: 1 mm each."""
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (world, flip) in enumerate(axcodes2ornt(SLICE_AXCODES)):
        affine[int(world), axis] = flip * float(spacing[axis])
    return affine


def to_file_order(stack: np.ndarray, to_slices: np.ndarray | None) -> np.ndarray:
    """A (N, H, W) stack back in its file's voxel order (``to_slices``: the volume's
    :meth:`~medseg.imaging.nifti.Volume.slice_transform`; None: the stack is the file order)."""
    return stack if to_slices is None else apply_orientation(stack, inverse_transform(to_slices))


def nifti_bytes(stack: np.ndarray, affine: np.ndarray, to_slices: np.ndarray | None = None) -> bytes:
    """A (N, H, W) uint8 stack as a gzipped NIfTI-1 file in memory, on the grid ``affine`` names
    (the file's voxel order: ``to_slices`` as :func:`to_file_order`)."""
    data = np.ascontiguousarray(to_file_order(np.asarray(stack, np.uint8), to_slices))
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def error_labels(pred: np.ndarray, target: np.ndarray, shown: Sequence[str] = tuple(ERROR_KINDS)) -> LabelOverlay:
    """The errors as labels: ``k`` for the ``k``-th of ``shown`` in
    :data:`~medseg.imaging.palette.ERROR_KINDS` order (TP, FP, FN), 0 elsewhere.

    Raises:
        ValueError: on an unknown name or when the masks' shapes differ.
    """
    masks = error_masks(pred, target, shown)
    labels = np.zeros(np.shape(pred), np.uint8)
    for value, mask in enumerate(masks.values(), start=1):
        labels[mask] = value
    return LabelOverlay("errors", labels, tuple(ERROR_KINDS[key] for key in masks))


def mask_labels(name: str, mask: np.ndarray, entry: LegendEntry) -> LabelOverlay:
    """One mask as a label overlay painted ``entry``'s colour."""
    return LabelOverlay(name, (np.asarray(mask) > 0).astype(np.uint8), (entry,))


def overlay_for(choice: str, pred: np.ndarray, target: np.ndarray | None,
                shown: Sequence[str] = tuple(ERROR_KINDS)) -> LabelOverlay:
    """The overlay of :data:`OVERLAYS` a reviewer chose: the errors against ``target`` (the
    model's mask alone, as :data:`~medseg.imaging.palette.PREDICTED`, without one), the
    reference, or the model's mask."""
    if choice == "reference" and target is not None:
        return mask_labels("reference", target, REFERENCE)
    if choice == "errors" and target is not None:
        return error_labels(pred, target, shown)
    return mask_labels("model", pred, PREDICTED)


def label_table(entries: Sequence[LegendEntry]) -> dict[str, list]:
    """NiiVue's label colour map (``setColormapLabel``) for labels 1..len(entries), 0 clear."""
    return {
        "R": [0, *(e.rgb[0] for e in entries)],
        "G": [0, *(e.rgb[1] for e in entries)],
        "B": [0, *(e.rgb[2] for e in entries)],
        "A": [0, *(255 for _ in entries)],
        "I": list(range(len(entries) + 1)),
        "labels": ["", *(e.label for e in entries)],
    }


def crosshair_mm(position: int, shape: Sequence[int], affine: np.ndarray,
                 to_slices: np.ndarray | None = None) -> list[float]:
    """The world position (mm) of the centre of slice ``position`` of a (N, H, W) stack whose
    file grid is ``affine`` (voxel order: ``to_slices`` as :func:`to_file_order`)."""
    index = np.zeros(tuple(shape[:3]), np.uint8)
    index[position, shape[1] // 2, shape[2] // 2] = 1
    voxel = np.argwhere(to_file_order(index, to_slices))[0]
    return [float(v) for v in (affine @ np.append(voxel, 1.0))[:3]]


def viewer_args(background: np.ndarray, overlays: Sequence[LabelOverlay], affine: np.ndarray,
                position: int, *, to_slices: np.ndarray | None = None, opacity: float = 0.5,
                outline: bool = False, planes: Sequence[str] = ("axial",)) -> dict[str, Any]:
    """The component's arguments: the (N, H, W) uint8 ``background`` and each overlay as
    base64 NIfTI, their colours, the style, and where to open (slice ``position``).
    ``key_of_data`` changes only with the voxels, so a new style or slice reloads nothing."""
    files = [nifti_bytes(background, affine, to_slices),
             *(nifti_bytes(o.labels, affine, to_slices) for o in overlays)]
    digest = hashlib.sha1(usedforsecurity=False)
    for blob in files:
        digest.update(hashlib.sha1(blob, usedforsecurity=False).digest())
    return {
        "image": _base64(files[0]),
        "overlays": [{"name": o.name, "data": _base64(blob), "lut": label_table(o.entries)}
                     for o, blob in zip(overlays, files[1:], strict=True)],
        "opacity": float(opacity),
        "outline": bool(outline),
        "crosshair_mm": crosshair_mm(position, background.shape, affine, to_slices),
        "planes": list(planes),
        "height": VIEWER_HEIGHT,
        "key_of_data": digest.hexdigest(),
    }


def _base64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def browser_state(value: object) -> ViewerState:
    """What the component's value says (None: nothing yet)."""
    if not isinstance(value, dict):
        return ViewerState(None)
    return ViewerState(bool(value.get("webgl")), value.get("error"))


def show_volume(args: Mapping[str, Any], key: str = "volume_viewer") -> ViewerState:
    """Draw the viewer (:func:`viewer_args`) and return what the browser last said; where it
    said it has no WebGL2, the component stays in the page (its state is kept) 0 px high."""
    said = browser_state(st.session_state.get(key))
    height = 0 if said.webgl is False else args["height"]
    return browser_state(_component(**{**args, "height": height}, key=key, default=None))


def stack_viewer(images: np.ndarray, masks: np.ndarray | None, pred: np.ndarray, display: Display,
                 position: int, png_view: Callable[[], None], *, affine: np.ndarray | None = None,
                 to_slices: np.ndarray | None = None, planes: Sequence[str] = ("axial",),
                 channels: Mapping[str, int | None] = SEQUENCE_CHANNELS, key: str = "case") -> None:
    """The "Viewer" choice and what it shows: the whole stack in NiiVue, opening at slice
    ``position``, with ``png_view`` (the slice's PNG view) one click away in an expander; or
    ``png_view`` alone (the choice, or a browser without WebGL2, said so in a caption).

    Args:
        images: (N, H, W, 3) uint8 slices; masks: (N, H, W) reference or None; pred: (N, H, W)
            the model's mask (thresholded, postprocessed when asked).
        display: the sidebar's settings (sequence, opacity, outline or fill, labels shown).
        affine, to_slices: the file's grid (:func:`nifti_bytes`); None: :func:`slice_affine`.
        planes: the planes offered, the first shown.
        key: the widgets' and the component's key (one per page).
    """
    choice = st.radio("Viewer", VIEWERS if AVAILABLE else VIEWERS[1:], horizontal=True,
                      key=f"viewer:{key}", help="Interactive: the whole stack in the browser "
                      "(NiiVue, WebGL2). Image: this slice drawn by the server, as PNG.")
    if choice != VIEWERS[0]:
        png_view()
        return
    offered = OVERLAYS if masks is not None else ("model",)
    overlay = str(st.radio("Interactive overlay", offered, horizontal=True, key=f"viewer_overlay:{key}",
                           format_func=OVERLAY_NAMES.__getitem__))
    background, shown = background_stack(images, display.sequence, channels)
    args = viewer_args(background, [overlay_for(overlay, pred, masks, display.labels)],
                       slice_affine() if affine is None else affine, position, to_slices=to_slices,
                       opacity=display.opacity, outline=display.style == "outline", planes=planes)
    state = show_volume(args, key=f"volume_viewer:{key}")
    if not state.webgl:
        if state.webgl is False:
            st.caption(NO_WEBGL)
        png_view()
        return
    note = f" {OUTLINE_NOTE}" if display.style == "outline" else ""
    st.caption(f"{shown}, {OVERLAY_NAMES[overlay].lower()} overlay.{note} {VIEWER_HELP}")
    with st.expander("Image (PNG) view of this slice"):
        png_view()
