"""Upload checking and decoding: real PNG/TIFF/JPEG/NIfTI bytes written in the tests."""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.app.uploads import (
    mask_png_bytes,
    mask_volume_bytes,
    prediction_file_name,
    read_upload,
    upload_kind,
)
from medseg.errors import DataError
from tests.app.page_driver import BOMB_SIDE, bomb_png


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def nifti_bytes(data: np.ndarray, affine: np.ndarray, tmp_path, name: str) -> bytes:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine), path)
    return path.read_bytes()


def nifti_gz(data: np.ndarray) -> bytes:
    """A .nii.gz file's bytes, made in memory."""
    return gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes())


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Point tempfile at a folder of our own, to check that uploads leave nothing behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert [p.name for p in folder.iterdir() if p.name.startswith("medseg-")] == []


def test_rgb_png_and_tiff_slices_with_masks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 3:9] = 255
    for fmt, name in (("PNG", "a.png"), ("TIFF", "a.tif")):
        upload = read_upload((name, encode(image, fmt)), ("m" + name, encode(mask, fmt)))
        assert not upload.is_volume and upload.pixel_area_mm2 is None
        np.testing.assert_array_equal(upload.images[0], image)
        np.testing.assert_array_equal(upload.masks[0], mask // 255)


def test_grey_slice_is_repeated_into_three_channels():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    upload = read_upload(("grey.jpg", encode(grey, "PNG")))  # the content decides, not the name
    assert upload.images.shape == (1, 3, 4, 3)
    np.testing.assert_array_equal(upload.images[0, ..., 1], grey)
    assert upload.masks is None


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (("notes.txt", b"hello"), None, "notes.txt: unsupported file type"),
        (("empty.png", b""), None, "empty.png: the file is empty"),
        (("broken.png", b"\x89PNG\r\n\x1a\nxx"), None, "broken.png: cannot read PNG"),
        (("a.png", encode(np.zeros((8, 8, 3), np.uint8))), ("m.png", encode(np.zeros((8, 9), np.uint8))),
         "m.png: the mask is 8x9 but a.png is 8x8"),
        (("a.png", encode(np.zeros((8, 8, 3), np.uint8))), ("m.png", encode(np.full((8, 8), 7, np.uint8))),
         "m.png: mask is not binary"),
        (("a.png", encode(np.zeros((8, 8, 3), np.uint8))), ("m.nii", b"x" * 400),
         "m.nii: a slice needs a mask of the same kind"),
        (("v.nii.gz", gzip.compress(b"not nifti")), None, "v.nii.gz: cannot read NIfTI"),
    ],
)
def test_bad_uploads_raise_one_line_data_errors(image, mask, message):
    with pytest.raises(DataError) as err:
        read_upload(image, mask)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert "medseg-upload-" not in str(err.value)  # the temporary path is not shown


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding():
    small = encode(np.zeros((8, 8, 3), np.uint8))
    bomb = ("bomb.png", bomb_png())
    for image, mask in ((bomb, None), (("a.png", small), bomb)):
        with pytest.raises(DataError) as err:
            read_upload(image, mask)
        assert str(err.value).startswith(f"bomb.png: the image declares {BOMB_SIDE}x{BOMB_SIDE}")
        assert "refused before decoding" in str(err.value)


def test_size_limit():
    data = encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"a\.png: 0\.0 MB is over the 0\.001 MB upload limit"):
        read_upload(("a.png", data), max_mb=0.001)
    assert read_upload(("a.png", data), max_mb=1).images.shape == (1, 64, 64, 3)


HOSTILE_NAMES = ["../../escape", "/tmp/medseg-test-absolute", "..\\..\\win", "a/../../../b",
                 "[x](javascript:alert(1))_<b>_", ".", "~", "$HOME"]


def test_names_never_become_paths(tmp_path, monkeypatch, private_tempdir):
    """Whatever the uploaded names, files are written only in the private temporary folder
    (under fixed names) and it is gone afterwards: nothing appears next to it or in the
    working directory, nothing at an absolute path."""
    monkeypatch.chdir(tmp_path)
    png = encode(np.zeros((4, 4, 3), np.uint8))
    mask = encode(np.zeros((4, 4), np.uint8))
    volume = nifti_gz(np.zeros((4, 4, 2), np.int16))
    for name in [*HOSTILE_NAMES, str(tmp_path / "outside" / "abs")]:
        read_upload((f"{name}.png", png), (f"{name}_mask.png", mask))
        upload = read_upload((f"{name}.nii.gz", volume), (f"{name}_mask.nii.gz", volume))
        assert mask_volume_bytes(upload.masks, upload.volume)[:2] == b"\x1f\x8b"  # gzip
    assert [p for p in tmp_path.rglob("*") if p != private_tempdir] == []
    assert list(private_tempdir.iterdir()) == []
    assert not any(Path("/tmp").glob("medseg-test-absolute*"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a\x00b.png", "a?b.png: the file name holds a control character"),
        ("scan\n.png", "scan?.png: the file name holds a control character"),
        ("\udc80.png", "?.png: the file name holds a control character"),
        ("a" * 300 + ".png", "the file name is 304 bytes long, over 255"),
        ("é" * 130 + ".png", "the file name is 264 bytes long, over 255"),
        ("", "the uploaded file has no name"),
    ],
)
def test_names_no_file_system_holds_are_one_line_errors(name, message):
    png = encode(np.zeros((4, 4, 3), np.uint8))
    for image, mask in (((name, png), None), (("ok.png", png), (name, png))):
        with pytest.raises(DataError) as err:
            read_upload(image, mask)
        assert message in str(err.value)
        assert "\n" not in str(err.value) and "\x00" not in str(err.value)
        assert len(str(err.value)) < 200


@pytest.mark.parametrize(
    ("name", "is_volume", "expected"),
    [
        ("brain.nii.gz", True, "brain_pred.nii.gz"),
        ("Brain.NII", True, "Brain_pred.nii.gz"),
        ("scan_mask.png", False, "scan_mask_pred.png"),
        ("case.tif", False, "case_pred.png"),
        ("../../x.nii.gz", True, "x_pred.nii.gz"),
        ("/tmp/abs.nii.gz", True, "abs_pred.nii.gz"),
        ("C:\\scans\\Case 1.PNG", False, "Case_1_pred.png"),
        ("Müller T1.jpg", False, "Muller_T1_pred.png"),
        ("[x](javascript:alert(1))<b>.png", False, "x_javascript_alert_1_b_pred.png"),
        (".hidden.png", False, "hidden_pred.png"),
        ("..nii.gz", True, "upload_pred.nii.gz"),
        ("\x00.png", False, "upload_pred.png"),
        ("a" * 300 + ".nii", True, "a" * 100 + "_pred.nii.gz"),
    ],
)
def test_prediction_file_names_are_safe(name, is_volume, expected):
    assert prediction_file_name(name, is_volume) == expected


def test_upload_kind():
    assert upload_kind("Brain.NII.GZ") == "volume"
    assert upload_kind("x.nii") == "volume"
    assert upload_kind("slice.TIFF") == "slice"
    with pytest.raises(DataError, match=r"x\.gz: unsupported file type"):
        upload_kind("x.gz")


def test_nifti_volume_masks_align_whatever_the_voxel_order(tmp_path):
    # x runs right-to-left (negative x step), 0.8 x 0.5 mm in-plane, 3 mm slices
    affine = np.array([[-0.8, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    truth = np.zeros((10, 12, 4), np.uint8)
    truth[2:5, 3:9, 1] = 1
    truth[6:8, 1:3, 3] = 1
    data = np.where(truth == 1, 900, 100).astype(np.int16)
    upload = read_upload(("brain.nii.gz", nifti_bytes(data, affine, tmp_path, "b.nii.gz")),
                         ("brain_mask.nii", nifti_bytes(truth, affine, tmp_path, "m.nii")))
    assert upload.is_volume
    assert upload.images.shape == (4, 12, 10, 3)  # (slices, rows A->P, columns R->L)
    bright = upload.images[..., 0] > 128
    np.testing.assert_array_equal(upload.masks.astype(bool), bright)
    assert upload.masks.sum() == truth.sum()
    assert upload.pixel_area_mm2 == pytest.approx(0.4)

    # the predicted mask goes back on the input's voxel grid with its affine
    written = tmp_path / "out.nii.gz"
    written.write_bytes(mask_volume_bytes(upload.masks, upload.volume))
    back = nib.load(written)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), truth)
    np.testing.assert_allclose(back.affine, affine)


def test_mask_volume_of_another_shape(tmp_path):
    affine = np.eye(4)
    image = nifti_bytes(np.zeros((6, 6, 3), np.int16), affine, tmp_path, "a.nii")
    mask = nifti_bytes(np.zeros((6, 6, 2), np.uint8), affine, tmp_path, "m.nii")
    with pytest.raises(DataError, match=r"m\.nii: the mask is 2x6x6 but a\.nii is 3x6x6"):
        read_upload(("a.nii", image), ("m.nii", mask))


def test_mask_png_round_trip():
    mask = np.array([[0, 1, 1], [0, 0, 1]], np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(mask_png_bytes(mask))))
    np.testing.assert_array_equal(decoded, mask * 255)
