"""NIfTI: axial slices in radiological orientation and masks written back on the input grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import DataError
from medseg.imaging.nifti import load_mask_volume, load_volume, save_mask_volume

RAS = np.diag([2.0, 2.0, 3.0, 1.0])
RAS[:3, 3] = [-20, -30, -10]


def volume_with_marker():
    """(20, 24, 10): air 0, tissue 500, and a bright 1000 block (32 voxels, more than the 0.5%
    the robust rescale clips) at x 14..17 (right), y 18..21 (anterior), z 6..7. Beyond 255, so
    the volume is rescaled (values within 0..255 would be kept as they are)."""
    data = np.zeros((20, 24, 10), np.float32)
    data[2:18, 2:22, 1:9] = 500.0
    data[14:18, 18:22, 6:8] = 1000.0
    return data


def test_ras_volume_becomes_radiological_axial_slices(tmp_path):
    nib.save(nib.Nifti1Image(volume_with_marker(), RAS), tmp_path / "v.nii.gz")
    volume = load_volume(tmp_path / "v.nii.gz")
    assert volume.slices.shape == (10, 24, 20, 3) and volume.slices.dtype == np.uint8
    assert volume.shape == (20, 24, 10)
    np.testing.assert_array_equal(volume.affine, RAS)
    # rows run anterior -> posterior, columns patient's right -> left:
    # y 18..21 -> rows 23-21..23-18 = 2..5; x 14..17 -> columns 19-17..19-14 = 2..5
    bright = {tuple(int(i) for i in v) for v in np.argwhere(volume.slices[..., 0] == 255)}
    assert bright == {(z, r, c) for z in (6, 7) for r in range(2, 6) for c in range(2, 6)}
    assert set(np.unique(volume.slices)) == {0, 128, 255}  # air, tissue, block
    assert np.all(volume.slices[..., 0] == volume.slices[..., 1])  # one sequence, 3 channels


@pytest.mark.parametrize(
    "affine",
    [
        RAS,
        np.diag([-1.0, 1.0, 1.0, 1.0]),  # LAS, the usual radiological storage
        np.array([[0, 0, 1.5, 0], [-1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]]),  # permuted
    ],
)
def test_mask_round_trip_lands_on_the_input_voxels(tmp_path, affine):
    data = volume_with_marker()
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "in.nii")
    volume = load_volume(tmp_path / "in.nii")
    save_mask_volume(volume.slices[..., 0] > 200, volume, tmp_path / "mask.nii.gz")
    saved = nib.load(tmp_path / "mask.nii.gz")
    assert saved.shape == data.shape
    np.testing.assert_array_equal(saved.affine, affine)
    assert saved.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), (data > 750).astype(np.uint8))


@pytest.mark.parametrize(
    "affine",
    [RAS, np.array([[0, 0, 1.5, 0], [-1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])],
)
def test_mask_volume_reads_back_in_slice_order(tmp_path, affine):
    nib.save(nib.Nifti1Image(volume_with_marker(), affine), tmp_path / "in.nii")
    volume = load_volume(tmp_path / "in.nii")
    mask = (volume.slices[..., 0] > 200).astype(np.uint8)
    save_mask_volume(mask, volume, tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(load_mask_volume(tmp_path / "mask.nii.gz"), mask)


def test_mask_volume_rejects_a_2d_file(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.uint8), RAS), tmp_path / "flat.nii")
    with pytest.raises(DataError, match=r"flat\.nii: expected a 3-D mask volume"):
        load_mask_volume(tmp_path / "flat.nii")


def test_four_channel_last_volume_keeps_its_channels(tmp_path):
    data = np.zeros((8, 9, 4, 3), np.float32)
    data[..., 0] = 1.0
    data[2, 3, 1, 1] = data[5, 6, 2, 1] = 500.0
    data[..., 2] = 100.0 * np.arange(8)[:, None, None]
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "rgb.nii")
    slices = load_volume(tmp_path / "rgb.nii").slices
    assert slices.shape == (4, 9, 8, 3)
    assert slices[..., 0].max() == slices[..., 0].min()  # constant channel
    bright = {tuple(int(i) for i in v) for v in np.argwhere(slices[..., 1] == 255)}
    assert bright == {(1, 9 - 1 - 3, 8 - 1 - 2), (2, 9 - 1 - 6, 8 - 1 - 5)}
    # channel 2 rises with x, i.e. towards the patient's right = the image's left
    assert np.all(np.diff(slices[0, 0, :, 2].astype(int)) <= 0) and slices[0, 0, 0, 2] == 255


def test_integer_volumes_within_0_255_are_kept_as_they_are(tmp_path):
    """Volumes made from kaggle_3m slices (uint8 per channel) must reach the model unchanged."""
    data = np.zeros((6, 7, 2), np.float32)
    data[1, 2, 0], data[3, 4, 1] = 17.0, 200.0
    slices = load_volume_of(tmp_path / "u8.nii", data).slices[..., 0]
    assert slices.max() == 200 and slices.sum() == 217
    data[3, 4, 1] = 200.5  # one fractional voxel: rescaled
    assert load_volume_of(tmp_path / "f.nii", data).slices.max() == 255


def test_robust_rescale_ignores_one_outlier(tmp_path):
    data = np.tile(np.linspace(0, 100, 20, dtype=np.float32)[:, None, None], (1, 20, 20))
    data[0, 0, 0] = 1e6
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "o.nii")
    slices = load_volume(tmp_path / "o.nii").slices[..., 0]
    assert 100 < np.median(slices) < 160  # a min-max rescale would squash all to ~0


def test_saved_mask_ignores_the_input_scaling(tmp_path):
    image = nib.Nifti1Image(volume_with_marker().astype(np.int16), RAS)
    image.header.set_slope_inter(2.0, 5.0)
    nib.save(image, tmp_path / "scaled.nii")
    volume = load_volume(tmp_path / "scaled.nii")
    mask = np.zeros(volume.slices.shape[:3], np.uint8)
    mask[7, 3, 3] = 1
    save_mask_volume(mask, volume, tmp_path / "m.nii")
    saved = np.asanyarray(nib.load(tmp_path / "m.nii").dataobj)
    assert saved.max() == 1 and saved[16, 20, 7] == 1 and saved.sum() == 1


@pytest.mark.parametrize(
    ("shape", "message"),
    [((4, 5), r"expected a 3-D volume.*\(4, 5\)"), ((4, 5, 6, 2), r"expected.*\(4, 5, 6, 2\)")],
)
def test_unsupported_shapes(tmp_path, shape, message):
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), tmp_path / "bad.nii")
    with pytest.raises(DataError, match=rf"bad\.nii: {message}"):
        load_volume(tmp_path / "bad.nii")


def test_unreadable_and_mismatched(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match=r"broken\.nii\.gz: cannot read NIfTI"):
        load_volume(tmp_path / "broken.nii.gz")
    with pytest.raises(DataError, match=r"missing\.nii: no such file"):
        load_volume(tmp_path / "missing.nii")
    nib.save(nib.Nifti1Image(volume_with_marker(), RAS), tmp_path / "v.nii")
    volume = load_volume(tmp_path / "v.nii")
    with pytest.raises(DataError, match=r"m\.nii: map shape \(10, 20, 24\) does not match"):
        save_mask_volume(np.zeros((10, 20, 24)), volume, tmp_path / "m.nii")


@pytest.mark.parametrize(("bad", "counts"), [
    (np.nan, "400 NaN, 0 infinite"),
    (np.inf, "0 NaN, 400 infinite"),
])
def test_a_volume_without_a_finite_voxel_is_refused_not_segmented(tmp_path, bad, counts):
    nib.save(nib.Nifti1Image(np.full((10, 10, 4), bad, np.float32), RAS), tmp_path / "nan.nii.gz")
    for reader in (load_volume, load_mask_volume):
        with pytest.raises(DataError, match=rf"nan\.nii\.gz: every voxel is NaN or infinite \({counts}\)"):
            reader(tmp_path / "nan.nii.gz")


def test_nan_padding_is_background_and_counted(tmp_path):
    """Registration tools pad with NaN: those voxels read as the lowest intensity, and the
    volume says how many there were; the rest of the image is unchanged."""
    data = volume_with_marker()
    clean = load_volume_of(tmp_path / "clean.nii", data)
    data[0, 0, :3] = np.nan
    data[1, 1, 0] = -np.inf
    padded = load_volume_of(tmp_path / "v.nii", data)
    assert padded.nonfinite_voxels == 4 and clean.nonfinite_voxels == 0
    background = data[np.isfinite(data)].min()
    filled = np.where(np.isfinite(data), data, background)
    assert np.array_equal(padded.slices, load_volume_of(tmp_path / "filled.nii", filled).slices)
    mask = np.zeros(data.shape, np.float32)
    mask[0, 0, 0], mask[2, 2, 2] = np.nan, 1
    nib.save(nib.Nifti1Image(mask, RAS), tmp_path / "m.nii")
    assert load_mask_volume(tmp_path / "m.nii").sum() == 1  # a NaN voxel is not tumour


def test_nan_padding_reads_as_the_lowest_intensity_when_it_is_negative(tmp_path):
    """A z-scored or CT-like volume has negative background: NaN padding must read as that
    background (slice value 0), not as 0 in the file's units (mid-grey once rescaled)."""
    data = volume_with_marker() - 300.0  # air -300, tissue 200, block 700
    data[0, 0, :3] = np.nan  # x 0 (the image's last column), y 0 (last row), z 0..2
    padded = load_volume_of(tmp_path / "v.nii", data)
    assert padded.nonfinite_voxels == 3
    np.testing.assert_array_equal(padded.slices[:3, 23, 19], np.zeros((3, 3), np.uint8))
    filled = np.where(np.isnan(data), -300.0, data).astype(np.float32)
    np.testing.assert_array_equal(padded.slices, load_volume_of(tmp_path / "filled.nii", filled).slices)


def load_volume_of(path, data):
    nib.save(nib.Nifti1Image(data, RAS), path)
    return load_volume(path)


def _with_affine(path, affine):
    """A volume whose sform is ``affine`` as stored (nibabel would refuse to build it)."""
    header = nib.Nifti1Header()
    header.set_data_shape((8, 8, 4))
    header.set_data_dtype(np.float32)
    header.set_sform(affine, code=1)
    header.set_qform(None, code=0)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), None, header), path)
    return path


@pytest.mark.parametrize("affine", [np.zeros((4, 4)), np.diag([1.0, 1.0, 0.0, 1.0])])
def test_a_singular_affine_is_a_one_line_data_error(tmp_path, affine):
    path = _with_affine(tmp_path / "flat.nii.gz", affine)
    for reader in (load_volume, load_mask_volume):
        with pytest.raises(DataError, match=r"flat\.nii\.gz: the voxel-to-world affine \(sform/qform\) is "
                                            r"singular or not finite"):
            reader(path)
