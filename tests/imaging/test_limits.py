"""Decoded-size caps: images and volumes whose headers declare too much are refused unread."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from medseg.errors import ConfigError, DataError
from medseg.imaging.images import read_mask, read_slice_image
from medseg.imaging.limits import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_VOLUME_VOXELS,
    load_image,
    max_image_pixels,
    max_volume_voxels,
)
from medseg.imaging.nifti import load_mask_volume, load_volume
from tests.imaging.oversized import write_nifti_declaring, write_png_declaring, write_tiff_declaring


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if Pillow decodes any pixel."""
    def refuse(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("MEDSEG_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.delenv("MEDSEG_MAX_VOLUME_VOXELS", raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 25_000_000
    assert max_volume_voxels() == DEFAULT_MAX_VOLUME_VOXELS == 100_000_000
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_PIXELS", "1_000")
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", " 64 ")
    assert (max_image_pixels(), max_volume_voxels()) == (1000, 64)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "2.5"])
def test_invalid_environment_values_are_config_errors(monkeypatch, value):
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_PIXELS", value)
    with pytest.raises(ConfigError, match=f"MEDSEG_MAX_IMAGE_PIXELS={value!r}: expected a positive"):
        max_image_pixels()
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", value)
    with pytest.raises(ConfigError, match="MEDSEG_MAX_VOLUME_VOXELS"):
        max_volume_voxels()


@pytest.mark.parametrize("reader", [read_slice_image, read_mask, load_image])
def test_a_tiny_png_declaring_12000x12000_is_refused_without_decoding(tmp_path, no_decoding, reader):
    path = write_png_declaring(tmp_path / "bomb.png", 12000, 12000)
    assert path.stat().st_size < 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even Pillow's DecompressionBombWarning escapes
        with pytest.raises(DataError, match=r"bomb\.png: the image declares 12000x12000 = 144000000 "
                                            r"pixels, over the limit of 25000000 \(MEDSEG_MAX_IMAGE_PIXELS\)"):
            reader(path)


def test_a_20000x20000_tiff_past_pillows_guard_is_a_data_error(tmp_path):
    path = write_tiff_declaring(tmp_path / "huge.tif", 20000, 20000)
    with pytest.raises(DataError, match=r"huge\.tif: the image declares 400000000 pixels, over the limit "
                                        r"of 25000000"):
        read_slice_image(path)


def test_the_cap_follows_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((40, 56, 3), np.uint8), photometric="rgb")
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_PIXELS", str(40 * 56 - 1))
    with pytest.raises(DataError, match=r"40 = 2240 pixels, over the limit of 2239"):
        read_slice_image(path)
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_PIXELS", str(40 * 56))
    assert read_slice_image(path).shape == (40, 56, 3)


def test_several_frames_are_refused(tmp_path):
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataError, match=r"pages\.tif: holds several frames"):
        read_slice_image(path)


def test_a_volume_header_over_the_cap_is_refused_before_reading(tmp_path):
    path = write_nifti_declaring(tmp_path / "huge.nii", (500, 500, 500))
    for reader in (load_volume, load_mask_volume):
        with pytest.raises(DataError, match=r"huge\.nii: the volume declares shape 500x500x500 = "
                                            r"125000000 voxels, over the limit of 100000000"):
            reader(path)


def test_the_volume_cap_follows_the_environment(tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", "255")
    with pytest.raises(DataError, match=r"8x8x4 = 256 voxels, over the limit of 255 \(MEDSEG_MAX_VOLUME_VOXELS\)"):
        load_volume(tmp_path / "v.nii.gz")
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", "256")
    assert load_volume(tmp_path / "v.nii.gz").slices.shape == (4, 8, 8, 3)


def test_load_image_returns_the_decoded_pixels(tmp_path):
    rgb = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "a.png")), rgb)
    with pytest.raises(DataError, match=r"missing\.png: no such file"):
        load_image(tmp_path / "missing.png")
