"""Three MR sequences into the model's three channels: the intensity rule, one voxel grid,
missing sequences, NIfTI and DICOM inputs mixed."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.errors import DataError
from medseg.imaging.nifti import load_mask_volume, normalize_sequence
from medseg.imaging.sequences import (
    load_sequence_mask,
    load_sequences,
    missing_sequences,
    plan_sequences,
    read_single_sequence_slice,
    slice_sequences,
)
from tests.support import write_dicom_series

SHAPE = (6, 5, 4)  # (x: columns, y: rows, z: slices); not cubic
#: LPS-like storage: x towards the patient's left, y posterior, z superior (= an axial DICOM)
AFFINE = np.array([[-0.9, 0, 0, 30.0], [0, -0.9, 0, 40.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])


def _nifti(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)
    return path


def _coded(value: int) -> np.ndarray:
    """SHAPE voxels ``value + x + 6 y + 30 z`` (integers within 0..255: kept as they are)."""
    x, y, z = np.indices(SHAPE)
    return (value + x + 6 * y + 30 * z).astype(np.float32)


@pytest.mark.parametrize(("values", "expected"), [
    (np.array([0.0, 17.0, 255.0]), [0, 17, 255]),  # integral floats within 0..255: as is
    (np.array([3, 200, 9], np.int16), [3, 200, 9]),
    (np.array([True, False]), [1, 0]),
])
def test_values_within_the_uint8_range_are_taken_as_they_are(values, expected):
    assert normalize_sequence(values).tolist() == expected


@pytest.mark.parametrize("values", [
    np.linspace(0, 256, 201),  # one value over 255
    np.linspace(-1, 200, 201),  # one below 0
    np.linspace(0, 100, 201) + 0.5,  # not integers
])
def test_other_values_are_rescaled_robustly(values):
    out = normalize_sequence(values)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert out[100] in (127, 128)  # the median maps to the middle


def test_three_nifti_sequences_become_the_three_channels_in_order(tmp_path):
    paths = {key: _nifti(tmp_path / f"{key}.nii.gz", _coded(v))
             for key, v in (("pre", 0), ("flair", 1), ("post", 2))}
    plan = plan_sequences(paths)
    assert plan.name == "flair" and plan.slices == 4 and not plan.single
    volume = load_sequences(plan)
    assert volume.slices.shape == (4, 5, 6, 3)  # (z, y, x): axial slices, as stored here
    # slice n, row r, column c is voxel (x=c, y=r, z=n): no flip for this LPS-like affine
    for channel, offset in enumerate((0, 1, 2)):
        np.testing.assert_array_equal(volume.slices[..., channel], _coded(offset).transpose(2, 1, 0))
    np.testing.assert_array_equal(volume.affine, nib.load(paths["flair"]).affine)


def test_each_sequence_is_normalized_separately(tmp_path):
    wide = _coded(0) * 10  # up to 1670: rescaled
    paths = {"pre": _nifti(tmp_path / "pre.nii", wide), "flair": _nifti(tmp_path / "f.nii", _coded(1)),
             "post": _nifti(tmp_path / "post.nii", _coded(2))}
    slices = load_sequences(plan_sequences(paths)).slices
    assert slices[..., 0].max() == 255 and slices[..., 0].min() == 0
    np.testing.assert_array_equal(slices[..., 1], _coded(1).transpose(2, 1, 0))  # untouched


def _turned(affine: np.ndarray, angle: float) -> np.ndarray:
    """``affine`` turned by ``angle`` radians about z (its origin kept)."""
    c, s = np.cos(angle), np.sin(angle)
    turned = affine.copy()
    turned[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return turned


@pytest.mark.parametrize(("change", "message"), [
    (lambda d, a: (d[:, :, :3], a), r"differ in shape: \(6, 5, 4\) vs \(6, 5, 3\)"),
    (lambda d, a: (d, a @ np.diag([1, 1, 1.01, 1])), r"differ in voxel spacing: \(0\.9, 0\.9, 3\) vs "
                                                     r"\(0\.9, 0\.9, 3\.03\) mm"),
    (lambda d, a: (d, a @ np.diag([-1, 1, 1, 1])), r"differ in orientation: voxel axes towards LPS vs RPS"),
    (lambda d, a: (d, _turned(a, 0.01)), r"differ in orientation: direction cosines differ by up to "
                                         r"0\.01 \(voxel axes towards LPS\)"),
    (lambda d, a: (d, a + np.pad([[0.02]], ((0, 3), (3, 0)))), r"differ in position \(origin\): "
                                                               r"\(30, 40, -12\) vs \(30\.02, 40, -12\) mm"),
])
def test_inputs_on_different_grids_are_refused_naming_both(tmp_path, change, message):
    pre, flair = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    _nifti(pre, _coded(0))
    _nifti(flair, *change(_coded(1), AFFINE))
    post = _nifti(tmp_path / "c.nii.gz", _coded(2))
    with pytest.raises(DataError, match=rf"^PRE \({pre}\) and FLAIR \({flair}\) {message}; the three "
                                        r"sequences must be co-registered on one voxel grid$"):
        plan_sequences({"pre": pre, "flair": flair, "post": post})


def test_grid_tolerances(tmp_path):
    nearly = AFFINE.copy()
    nearly[0, 3] += 0.005  # under 0.01 mm
    nearly[2, 2] *= 1.0005  # under 0.1 %
    paths = {"pre": _nifti(tmp_path / "a.nii", _coded(0), nearly),
             "flair": _nifti(tmp_path / "b.nii", _coded(1)), "post": _nifti(tmp_path / "c.nii", _coded(2))}
    assert plan_sequences(paths).reference.path == paths["flair"]


def test_missing_sequences_are_named_with_their_flags(tmp_path):
    flair = _nifti(tmp_path / "f.nii", _coded(1))
    pre = _nifti(tmp_path / "p.nii", _coded(0))
    with pytest.raises(DataError, match=rf"^--flair {flair}: one MR sequence \(FLAIR\); the model reads "
                                        r"three \(pre-contrast, FLAIR, post-contrast\): --pre \(pre-contrast\) "
                                        r"and --post \(post-contrast\) are missing; give them, or "
                                        r"--single-sequence to repeat this one into all three channels$"):
        plan_sequences({"flair": flair})
    with pytest.raises(DataError, match=rf"^--pre {pre}, --flair {flair}: 2 MR sequences; .*: --post "
                                        r"\(post-contrast\) is missing$"):
        plan_sequences({"pre": pre, "flair": flair, "post": None})
    with pytest.raises(DataError, match=r"--single-sequence repeats one MR sequence, got 2: give --post "
                                        r"\(post-contrast\) too, or only one"):
        plan_sequences({"pre": pre, "flair": flair}, single_sequence=True)
    with pytest.raises(DataError, match=r"--pre and --post are the same input"):
        plan_sequences({"pre": pre, "flair": flair, "post": pre})


def test_missing_sequences_is_the_rule_plan_sequences_applies():
    assert missing_sequences(["pre", "flair", "post"]) == ()
    assert missing_sequences(["flair"]) == ("pre", "post")
    assert missing_sequences(["post", "pre"]) == ("flair",)
    assert missing_sequences(["flair"], single_sequence=True) == ()
    assert missing_sequences(["pre", "flair"], single_sequence=True) == ("post",)


def test_a_mask_volume_on_the_grid_is_viewed_like_the_reference(tmp_path):
    """A DICOM FLAIR is viewed as stored: the mask's voxel (c, r, k) is pixel (r, c) of
    slice k; a mask off the grid is refused naming it and the FLAIR."""
    truth = np.zeros(SHAPE, np.uint8)
    truth[1:3, 2:4, 1] = 7
    write_dicom_series(tmp_path / "flair", _coded(1).transpose(2, 1, 0).astype(np.uint16),
                       [(-30.0, -40.0, -12.0 + 3 * k) for k in range(4)], pixel_spacing=(0.9, 0.9))
    paths = {"pre": _nifti(tmp_path / "pre.nii.gz", _coded(0)), "flair": tmp_path / "flair",
             "post": _nifti(tmp_path / "post.nii.gz", _coded(2))}
    plan = plan_sequences(paths)
    mask = load_sequence_mask(_nifti(tmp_path / "mask.nii.gz", truth), plan)
    assert mask.dtype == np.uint8 and mask.shape == load_sequences(plan).slices.shape[:3]
    np.testing.assert_array_equal(mask, (truth != 0).transpose(2, 1, 0))
    nifti_plan = plan_sequences({**paths, "flair": _nifti(tmp_path / "flair.nii.gz", _coded(1))})
    np.testing.assert_array_equal(load_sequence_mask(tmp_path / "mask.nii.gz", nifti_plan),
                                  load_mask_volume(tmp_path / "mask.nii.gz"))
    off = _nifti(tmp_path / "off.nii", truth, AFFINE @ np.diag([1, 1, 2, 1]))
    with pytest.raises(DataError, match=rf"^MASK \({off}\) and FLAIR \({tmp_path / 'flair'}\) differ in "
                                        r"voxel spacing: .*; the mask must be on the sequences' voxel grid$"):
        load_sequence_mask(off, plan)
    with pytest.raises(DataError, match=r"expected a 3-D mask volume"):
        load_sequence_mask(_nifti(tmp_path / "rgb.nii", np.zeros((*SHAPE, 3), np.uint8)), plan)


def test_single_sequence_repeats_it_into_all_three_channels(tmp_path):
    post = _nifti(tmp_path / "post.nii", _coded(2))
    plan = plan_sequences({"post": post}, single_sequence=True)
    assert plan.single and plan.name == "post"
    slices = load_sequences(plan).slices
    for channel in range(3):
        np.testing.assert_array_equal(slices[..., channel], _coded(2).transpose(2, 1, 0))


def test_a_three_channel_volume_is_not_a_sequence(tmp_path):
    rgb = _nifti(tmp_path / "rgb.nii", np.zeros((*SHAPE, 3), np.float32))
    with pytest.raises(DataError, match=r"--flair .*rgb\.nii: expected one MR sequence .* given as a "
                                        r"positional INPUT"):
        plan_sequences({"flair": rgb}, single_sequence=True)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"--pre .*notes\.txt: expected a NIfTI volume"):
        plan_sequences({"pre": tmp_path / "notes.txt"}, single_sequence=True)


def test_dicom_and_nifti_on_one_grid_mix(tmp_path):
    """A DICOM series written with the geometry of AFFINE (LPS: x and y negated) has the
    NIfTI's grid; its pixel (row r, column c) of slice k is voxel (c, r, k)."""
    pre = _coded(0)
    write_dicom_series(tmp_path / "pre", pre.transpose(2, 1, 0).astype(np.uint16),
                       [(-30.0, -40.0, -12.0 + 3 * k) for k in range(4)],
                       pixel_spacing=(0.9, 0.9))
    paths = {"pre": tmp_path / "pre", "flair": _nifti(tmp_path / "flair.nii.gz", _coded(1)),
             "post": _nifti(tmp_path / "post.nii.gz", _coded(2))}
    plan = plan_sequences(paths)
    assert plan.reference.grid.shape == plan.inputs[0].grid.shape == SHAPE
    np.testing.assert_allclose(plan.inputs[0].grid.affine, AFFINE)
    slices = load_sequences(plan).slices
    for channel, offset in enumerate((0, 1, 2)):
        np.testing.assert_array_equal(slices[..., channel], _coded(offset).transpose(2, 1, 0))
    moved = tmp_path / "moved"
    write_dicom_series(moved, pre.transpose(2, 1, 0).astype(np.uint16),
                       [(-30.0, -40.0, -11.0 + 3 * k) for k in range(4)], pixel_spacing=(0.9, 0.9))
    with pytest.raises(DataError, match=rf"PRE \({moved}\) and FLAIR .* differ in position \(origin\): "
                                        r"\(30, 40, -11\) vs \(30, 40, -12\) mm"):
        plan_sequences({**paths, "pre": moved})


def test_grey_slices_hold_one_sequence(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(grey.astype(np.uint16) * 100).save(tmp_path / "deep.png")
    assert slice_sequences(tmp_path / "grey.png") == 1 and slice_sequences(tmp_path / "deep.png") == 1
    assert slice_sequences(tmp_path / "rgb.png") == 3
    np.testing.assert_array_equal(read_single_sequence_slice(tmp_path / "grey.png"),
                                  np.stack([grey] * 3, axis=-1))
    deep = read_single_sequence_slice(tmp_path / "deep.png")  # 0..22000: rescaled
    assert deep.shape == (3, 4, 3) and deep.min() == 0 and deep.max() == 255
