"""The interactive viewer's library part: NIfTI bytes on the right grid, the label overlays and
their colours, where it opens, and the component's files (vendored, nothing fetched)."""

from __future__ import annotations

import base64
import gzip
import re

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import aff2axcodes

from medseg.app.volume_viewer import (
    STATIC_DIR,
    ViewerState,
    background_stack,
    browser_state,
    crosshair_mm,
    error_labels,
    label_table,
    nifti_bytes,
    overlay_for,
    slice_affine,
    viewer_args,
)
from medseg.imaging.nifti import SLICE_AXCODES, Volume, load_mask_volume
from medseg.imaging.palette import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    PREDICTED,
    REFERENCE,
    TRUE_POSITIVE,
)


def read(blob: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(blob))


def test_slice_affine_orients_the_stack_as_the_slices_are_cut():
    affine = slice_affine((3.0, 0.5, 2.0))
    assert aff2axcodes(affine) == SLICE_AXCODES
    # slice axis: 3 mm superior; rows: 0.5 mm posterior; columns: 2 mm to the left
    assert affine[:3, :3].tolist() == [[0, 0, -2.0], [0, -0.5, 0], [3.0, 0, 0]]


def test_nifti_bytes_round_trip_in_slice_order():
    stack = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    image = read(nifti_bytes(stack, slice_affine()))
    assert np.array_equal(np.asarray(image.dataobj), stack)
    assert np.allclose(image.affine, slice_affine())
    assert image.get_data_dtype() == np.uint8


def test_nifti_bytes_on_an_upload_s_grid(tmp_path):
    """A stack cut from a RAS file goes back to the file's voxel order and affine: medseg's own
    reader cuts the same slices from the viewer's bytes."""
    affine = np.diag([0.9, 0.8, 2.5, 1.0])
    file_voxels = np.zeros((5, 6, 4), np.uint8)
    file_voxels[1, 2, 3] = 1
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(file_voxels, affine), path)
    slices = load_mask_volume(path)
    volume = Volume(np.zeros((*slices.shape, 3), np.uint8), affine, nib.Nifti1Header(), (5, 6, 4))
    blob = nifti_bytes(slices, affine, volume.slice_transform())
    assert np.array_equal(np.asarray(read(blob).dataobj), file_voxels)
    (tmp_path / "viewer.nii.gz").write_bytes(blob)
    assert np.array_equal(load_mask_volume(tmp_path / "viewer.nii.gz"), slices)
    # opening at the marked voxel's slice: the crosshair is that slice's centre, in mm
    position = int(np.argwhere(slices)[0][0])
    assert crosshair_mm(position, slices.shape, affine, volume.slice_transform())[2] == 3 * 2.5


def test_crosshair_of_a_kaggle_stack():
    # slice 1 of 3, 4x5: voxel (1, 2, 2) -> x = -2 * 1, y = -2 * 1, z = 1 * 1 (1-mm voxels)
    assert crosshair_mm(1, (3, 4, 5), slice_affine()) == [-2.0, -2.0, 1.0]


def test_error_labels_by_kind_and_shown():
    pred = np.array([[1, 1, 0, 0]])
    target = np.array([[1, 0, 1, 0]])
    errors = error_labels(pred, target)
    assert errors.labels.tolist() == [[1, 2, 3, 0]]
    assert errors.entries == (TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE)
    fn_only = error_labels(pred, target, ("fn",))
    assert fn_only.labels.tolist() == [[0, 0, 1, 0]] and fn_only.entries == (FALSE_NEGATIVE,)
    with pytest.raises(ValueError, match="unknown layers"):
        error_labels(pred, target, ("tn",))
    with pytest.raises(ValueError, match="differ in size"):
        error_labels(pred, target[:, :3])


def test_overlay_choices():
    pred, target = np.array([[1, 0]]), np.array([[0, 1]])
    reference = overlay_for("reference", pred, target)
    assert reference.labels.tolist() == [[0, 1]] and reference.entries == (REFERENCE,)
    model = overlay_for("model", pred, target)
    assert model.labels.tolist() == [[1, 0]] and model.entries == (PREDICTED,)
    assert overlay_for("errors", pred, None).entries == (PREDICTED,)  # no reference: the model


def test_label_table_paints_each_label_its_palette_colour():
    table = label_table((TRUE_POSITIVE, FALSE_NEGATIVE))
    colours = list(zip(table["R"], table["G"], table["B"], strict=True))
    assert colours == [(0, 0, 0), TRUE_POSITIVE.rgb, FALSE_NEGATIVE.rgb]
    assert table["A"] == [0, 255, 255] and table["I"] == [0, 1, 2]
    assert table["labels"][1:] == ["True positive", "False negative"]


def test_background_stack_takes_the_sequence_and_stands_in_for_the_composite():
    images = np.stack([np.full((2, 3, 4), value, np.uint8) for value in (10, 20, 30)], axis=-1)
    channels = {"FLAIR": 1, "T1": 0, "RGB composite": None}
    stack, shown = background_stack(images, "T1", channels)
    assert (stack == 10).all() and shown == "T1"
    stack, shown = background_stack(images, "RGB composite", channels)
    assert (stack == 20).all() and shown == "FLAIR"


def test_viewer_args_reload_only_for_new_voxels():
    stack = np.zeros((2, 8, 8), np.uint8)
    pred = np.zeros((2, 8, 8), np.uint8)
    pred[1, 2:4, 2:4] = 1
    overlay = overlay_for("model", pred, None)
    args = viewer_args(stack, [overlay], slice_affine(), 1, opacity=0.3, outline=True)
    assert np.array_equal(np.asarray(read(base64.b64decode(args["overlays"][0]["data"])).dataobj), pred)
    assert args["opacity"] == 0.3 and args["outline"] is True and args["crosshair_mm"][2] == 1.0
    restyled = viewer_args(stack, [overlay], slice_affine(), 0, opacity=0.8)
    assert restyled["key_of_data"] == args["key_of_data"]
    pred[0, 0, 0] = 1
    changed = viewer_args(stack, [overlay_for("model", pred, None)], slice_affine(), 1)
    assert changed["key_of_data"] != args["key_of_data"]


def test_the_component_is_vendored_and_fetches_nothing():
    """Everything the page loads is in the package; no script or fetch points off the machine."""
    page = (STATIC_DIR / "index.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources == ["niivue.umd.js", "viewer.js"]
    assert all((STATIC_DIR / source).is_file() for source in sources)
    viewer = (STATIC_DIR / "viewer.js").read_text()
    assert not re.search(r"https?://", viewer + page)
    bundle = (STATIC_DIR / "niivue.umd.js").read_text()
    assert "import(" not in bundle  # no module loaded on demand
    # remote addresses in the bundle are comments in its shaders, never fetched
    assert not re.search(r"""fetch\(\s*["'`]https?://""", bundle)


def test_browser_state_reads_the_component_s_value():
    assert browser_state(None) == ViewerState(None)
    assert browser_state({"webgl": True}) == ViewerState(True)
    assert browser_state({"webgl": False, "error": "no WebGL2"}) == ViewerState(False, "no WebGL2")
