"""LGG transforms: no transposition, image/mask alignment, normalization, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import get_track_meta, set_track_meta

from medseg.data.pcam import LoadPCamPatchd
from medseg.data.preprocess import preprocess_image
from medseg.data.transforms import LoadLGGSliced, lgg_transforms, pcam_transforms, use_plain_tensors
from medseg.errors import DataError, find_medseg_error
from tests.support import pcam_path


@pytest.fixture
def asymmetric_slice(tmp_path):
    """A 40x56 slice: mask = rows 5..14, columns 30..49 (right of centre, near the top);
    channel 1 is 200 there and 40 elsewhere; channels 0 and 2 are ramps along columns/rows."""
    mask = np.zeros((40, 56), np.uint8)
    mask[5:15, 30:50] = 1
    image = np.zeros((40, 56, 3), np.uint8)
    image[..., 0] = np.arange(56, dtype=np.uint8)[None, :] * 4
    image[..., 1] = np.where(mask == 1, 200, 40)
    image[..., 2] = np.arange(40, dtype=np.uint8)[:, None] * 6
    tifffile.imwrite(tmp_path / "P_1.tif", image, photometric="rgb")
    tifffile.imwrite(tmp_path / "P_1_mask.tif", mask * 255)
    record = {"image": str(tmp_path / "P_1.tif"), "label": str(tmp_path / "P_1_mask.tif"),
              "patient": "P", "slice": 1}
    return record, image, mask


def test_loader_keeps_rows_and_columns(asymmetric_slice):
    record, image, mask = asymmetric_slice
    sample = LoadLGGSliced()(record)
    assert sample["image"].shape == (3, 40, 56) and sample["label"].shape == (1, 40, 56)
    assert sample["image"].dtype == torch.float32 and sample["label"].dtype == torch.float32
    np.testing.assert_array_equal(sample["image"].numpy(), image.transpose(2, 0, 1))
    np.testing.assert_array_equal(sample["label"][0].numpy(), mask)
    assert sample["patient"] == "P" and sample["slice"] == 1


def test_eval_pipeline_resizes_aligned_and_normalizes(asymmetric_slice):
    record, _, _ = asymmetric_slice
    sample = lgg_transforms(32, augment=False)(record)
    assert set(sample) == {"image", "label", "patient", "slice"}
    image, label = sample["image"], sample["label"]
    assert type(image) is torch.Tensor and type(label) is torch.Tensor  # no MetaTensor
    assert image.shape == (3, 32, 32) and label.shape == (1, 32, 32)
    assert set(label.unique().tolist()) == {0.0, 1.0}
    # nearest: output row r reads input row floor(r * 40 / 32), column c floor(c * 56 / 32);
    # rows 5..14 -> 4..11, columns 30..49 -> 18..28
    rows, cols = torch.nonzero(label[0], as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (4, 11)
    assert (cols.min().item(), cols.max().item()) == (18, 28)
    # image and mask agree: channel 1 is bright on the mask and dark 2+ pixels away from it
    near = torch.nn.functional.max_pool2d(label, 5, stride=1, padding=2)[0] > 0
    assert image[1][label[0] == 1].mean() > 2.5 and image[1][~near].max() < 0
    # channel 0 rises along columns, channel 2 along rows: the image is not transposed
    assert torch.all(image[0, :, 1:] >= image[0, :, :-1]) and image[0, 0, -1] > image[0, 0, 0]
    assert torch.all(image[2, 1:, :] >= image[2, :-1, :]) and image[2, -1, 0] > image[2, 0, 0]
    # per-channel z-score
    torch.testing.assert_close(image.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(image.std(dim=(1, 2), unbiased=False), torch.ones(3), atol=1e-4,
                               rtol=0)


def test_zscore_by_hand_and_constant_channel():
    # channel 0: half 10, half 30 -> -1 / +1; channel 1 constant -> 0; channel 2: 0 and 255
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16, 0], image[:, 16:, 0] = 10, 30
    image[..., 1] = 77
    image[:, 16:, 2] = 255
    out = preprocess_image(image, 32)
    expected = np.zeros((3, 32, 32), np.float32)
    expected[0, :, :16], expected[0, :, 16:] = -1, 1
    expected[2, :, :16], expected[2, :, 16:] = -1, 1
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_preprocess_image_is_the_eval_transform(asymmetric_slice):
    record, image, _ = asymmetric_slice
    expected = lgg_transforms(64, augment=False)(record)["image"]
    got = preprocess_image(image, 64)
    assert got.shape == (3, 64, 64) and got.dtype == torch.float32
    assert torch.equal(got, expected)


def test_preprocess_image_rejects_other_arrays():
    with pytest.raises(DataError, match=r"expected an \(H, W, 3\) uint8 image, got shape \(8, 8\)"):
        preprocess_image(np.zeros((8, 8), np.uint8), 32)
    with pytest.raises(DataError, match="dtype float32"):
        preprocess_image(np.zeros((8, 8, 3), np.float32), 32)


def test_augmentation_moves_image_and_mask_together_and_keeps_the_mask_binary(asymmetric_slice):
    record, _, _ = asymmetric_slice
    pipeline = lgg_transforms(64, augment=True)
    pipeline.set_random_state(seed=0)
    reference = lgg_transforms(64, augment=False)(record)
    changed = 0
    for _ in range(12):
        sample = pipeline(record)
        image, label = sample["image"], sample["label"]
        assert image.shape == (3, 64, 64) and label.shape == (1, 64, 64)
        assert set(label.unique().tolist()) <= {0.0, 1.0}
        changed += not torch.equal(label, reference["label"])
        if label.sum() < 20:
            continue
        # FLAIR (channel 1) stays bright where the mask is: rank agreement of the two
        flair, on = image[1], label[0] == 1
        threshold = flair[on].median()
        agreement = ((flair >= threshold * 0.6) == on).float().mean()
        assert agreement > 0.95
    assert changed >= 4  # flips / rotations / scalings did happen


def test_mismatched_mask_size_is_a_data_error(tmp_path):
    tifffile.imwrite(tmp_path / "P_1.tif", np.zeros((40, 56, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "P_1_mask.tif", np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match=r"P_1_mask\.tif: mask is 40x40 but its image is 40x56"):
        LoadLGGSliced()({"image": tmp_path / "P_1.tif", "label": tmp_path / "P_1_mask.tif"})


@pytest.fixture
def tracking(request):
    """MONAI's global MetaTensor tracking set to ``request.param`` for one test, then restored."""
    previous = get_track_meta()
    set_track_meta(request.param)
    yield request.param
    set_track_meta(previous)


@pytest.mark.parametrize("tracking", [True, False], indirect=True)
def test_pipelines_return_plain_tensors_whatever_the_tracking(asymmetric_slice, pcam, tracking):
    record, image, _ = asymmetric_slice
    loader = LoadPCamPatchd(pcam_path(pcam.root, "train", "x"), pcam_path(pcam.root, "train", "y"))
    samples = [
        lgg_transforms(32, augment=False)(record),
        lgg_transforms(32, augment=True)(record),
        pcam_transforms(loader, augment=False)({"index": 1}),
        pcam_transforms(loader, augment=True)({"index": 1}),
    ]
    for sample in samples:
        assert type(sample["image"]) is torch.Tensor and type(sample["label"]) is torch.Tensor
    assert type(preprocess_image(image, 32)) is torch.Tensor
    assert get_track_meta() is tracking  # the pipelines leave the global switch alone


def test_tracking_does_not_change_the_result(asymmetric_slice):
    record, _, _ = asymmetric_slice
    previous = get_track_meta()
    try:
        set_track_meta(True)
        tracked = lgg_transforms(32, augment=False)(record)
        set_track_meta(False)
        plain = lgg_transforms(32, augment=False)(record)
    finally:
        set_track_meta(previous)
    assert torch.equal(tracked["image"], plain["image"])
    assert torch.equal(tracked["label"], plain["label"])


def test_use_plain_tensors_switches_tracking_off():
    previous = get_track_meta()
    try:
        set_track_meta(True)
        use_plain_tensors()
        assert get_track_meta() is False
    finally:
        set_track_meta(previous)


def test_a_data_error_in_a_pipeline_is_found_inside_monai_s_runtime_error(asymmetric_slice,
                                                                        tmp_path):
    record, _, _ = asymmetric_slice
    with pytest.raises(RuntimeError, match="applying transform") as caught:
        lgg_transforms(32, augment=False)({**record, "image": str(tmp_path / "missing.tif")})
    found = find_medseg_error(caught.value)
    assert isinstance(found, DataError) and str(found).endswith("missing.tif: no such file")
