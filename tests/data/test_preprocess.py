"""The input rule (medseg.data.preprocess): MONAI's resize and z-score, bit for bit, without MONAI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity, Resize

from medseg.data.preprocess import preprocess_image, preprocess_patch, resize, standardize_channels


def images() -> list[torch.Tensor]:
    """uint8-valued (3, H, W) images: noise, a constant channel, non-square, already at size."""
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.integers(0, 256, (3, 57, 43))).float()
    flat = noise.clone()
    flat[1] = 77.0
    return [noise, flat, torch.from_numpy(rng.integers(0, 256, (3, 32, 32))).float()]


@pytest.mark.parametrize("size", [16, 32, 64])
def test_resize_is_monai_resize(size):
    for image in images():
        expected = Resize((size, size), mode="bilinear")(image)
        assert torch.equal(resize(image, size), torch.as_tensor(expected))
        mask = (image[:1] > 128).float()
        expected_mask = Resize((size, size), mode="nearest")(mask)
        got = resize(mask, size, "nearest")
        assert torch.equal(got, torch.as_tensor(expected_mask))
        assert set(got.unique().tolist()) <= {0.0, 1.0}


def test_standardize_channels_is_monai_normalize_intensity():
    for image in images():
        expected = NormalizeIntensity(channel_wise=True)(image.clone())
        assert torch.equal(standardize_channels(image), torch.as_tensor(expected))


def test_standardize_by_hand_and_inputs_untouched():
    image = torch.tensor([[[10.0, 30.0], [10.0, 30.0]], [[5.0, 5.0], [5.0, 5.0]]])
    before = image.clone()
    out = standardize_channels(image)
    assert out.tolist() == [[[-1.0, 1.0], [-1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    assert torch.equal(image, before)  # a new tensor: the caller's is left alone
    resized = resize(image, 2)
    assert torch.equal(resized, image) and resized.data_ptr() != image.data_ptr()


def test_preprocess_image_and_patch():
    rng = np.random.default_rng(1)
    slice_hwc = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = preprocess_image(slice_hwc, 32)
    chw = torch.from_numpy(slice_hwc).permute(2, 0, 1).float()
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, standardize_channels(resize(chw, 32)))
    patch = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    assert torch.equal(preprocess_patch(patch), standardize_channels(torch.from_numpy(patch).permute(2, 0, 1).float()))
