"""Upload checking and decoding: real PNG/TIFF/JPEG/NIfTI/zipped DICOM bytes written in the
tests, read as ``medseg predict`` reads the same files."""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medseg.app.uploads import (
    dicom_seg_bytes,
    read_sequences,
    read_upload,
    upload_kind,
    upload_reference,
    upload_report,
)
from medseg.errors import DataError
from medseg.imaging.nifti import load_mask_volume, load_volume
from medseg.imaging.sequences import SEQUENCES, load_sequences, plan_sequences
from medseg.metrics.lesions import label_lesions
from medseg.predict import (
    SINGLE_SEQUENCE_MARK,
    mask_nifti_bytes,
)
from tests.app.page_driver import (
    BOMB_SIDE,
    SEQUENCE_AFFINE,
    bomb_png,
    dicom_zip,
    record_downloads,
    start,
)


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


def test_one_sequence_is_refused_unless_single_sequence(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    volume = nifti_gz(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    for image in (("grey.jpg", encode(grey, "PNG")), ("brain.nii.gz", volume)):  # content decides
        with pytest.raises(DataError) as err:
            read_upload(image)
        assert str(err.value) == (
            f"{image[0]}: one MR sequence; the model reads three (pre-contrast, FLAIR, post-contrast): "
            "upload them as three sequences, or tick “Use this one sequence in all three channels”")
    upload = read_upload(("grey.jpg", encode(grey, "PNG")), single_sequence=True)
    assert upload.images.shape == (1, 3, 4, 3) and upload.single_sequence
    np.testing.assert_array_equal(upload.images[0], np.repeat(grey[..., None], 3, axis=2))
    assert upload.masks is None and upload.views == {"One sequence (given)": 0}
    upload = read_upload(("brain.nii.gz", volume), single_sequence=True)
    assert upload.single_sequence and upload.views == {"One sequence (given)": 0}
    np.testing.assert_array_equal(upload.images, load_volume(write(tmp_path / "b.nii.gz", volume)).slices)
    rgb = read_upload(("rgb.png", encode(np.zeros((3, 4, 3), np.uint8))), single_sequence=True)
    assert not rgb.single_sequence and list(rgb.views) == ["FLAIR", "Pre-contrast", "Post-contrast",
                                                            "RGB composite"]


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
        upload = read_upload((f"{name}.nii.gz", volume), (f"{name}_mask.nii.gz", volume),
                             single_sequence=True)
        assert mask_nifti_bytes(upload.masks, upload.volume)[:2] == b"\x1f\x8b"  # gzip
        read_sequences({key: (f"{name}.nii.gz", volume) for key in SEQUENCES},
                       (f"{name}_mask.nii.gz", volume))
        with pytest.raises(DataError):
            read_sequences({key: (f"{name}.zip", b"PK not a zip") for key in SEQUENCES})
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
                         ("brain_mask.nii", nifti_bytes(truth, affine, tmp_path, "m.nii")),
                         single_sequence=True)
    assert upload.is_volume
    assert upload.images.shape == (4, 12, 10, 3)  # (slices, rows A->P, columns R->L)
    bright = upload.images[..., 0] > 128
    np.testing.assert_array_equal(upload.masks.astype(bool), bright)
    assert upload.masks.sum() == truth.sum()
    assert upload.pixel_area_mm2 == pytest.approx(0.4)

    # the predicted mask goes back on the input's voxel grid with its affine
    written = tmp_path / "out.nii.gz"
    written.write_bytes(mask_nifti_bytes(upload.masks, upload.volume))
    back = nib.load(written)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), truth)
    np.testing.assert_allclose(back.affine, affine)


def test_mask_volume_of_another_shape(tmp_path):
    affine = np.eye(4)
    image = nifti_bytes(np.zeros((6, 6, 3), np.int16), affine, tmp_path, "a.nii")
    mask = nifti_bytes(np.zeros((6, 6, 2), np.uint8), affine, tmp_path, "m.nii")
    with pytest.raises(DataError, match=r"m\.nii: the mask is 2x6x6 but a\.nii is 3x6x6"):
        read_upload(("a.nii", image), ("m.nii", mask), single_sequence=True)


# --- three sequences -------------------------------------------------------------------------

SHAPE = (6, 5, 3)  # (x: columns, y: rows, z: slices); not cubic


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def coded(value: int, shape=SHAPE) -> np.ndarray:
    """Voxels ``value + x + 6 y + 30 z``: integers within 0..255, kept as they are."""
    x, y, z = np.indices(shape)
    return (value + x + 6 * y + 30 * z).astype(np.int16)


def sequence_files(tmp_path, affine=SEQUENCE_AFFINE) -> dict[str, tuple[str, bytes]]:
    return {key: (f"{key}_scan.nii.gz", nifti_bytes(coded(k), affine, tmp_path, f"{key}.nii.gz"))
            for k, key in enumerate(SEQUENCES)}


def test_three_nifti_sequences_and_a_mask_read_as_medseg_predict_reads_them(tmp_path):
    files = sequence_files(tmp_path)
    truth = np.zeros(SHAPE, np.uint8)
    truth[1:3, 2:4, 1] = 1
    mask = ("mask.nii", nifti_bytes(truth, SEQUENCE_AFFINE, tmp_path, "m.nii"))
    upload = read_sequences(files, mask)
    on_disk = {key: write(tmp_path / f"disk_{key}.nii.gz", data) for key, (_, data) in files.items()}
    expected = load_sequences(plan_sequences(on_disk))
    np.testing.assert_array_equal(upload.images, expected.slices)
    np.testing.assert_array_equal(upload.masks, load_mask_volume(tmp_path / "m.nii"))
    assert upload.name == "flair_scan.nii.gz" and upload.is_volume and not upload.dicom
    assert upload.sequences == {key: f"{key}_scan.nii.gz" for key in SEQUENCES}
    assert not upload.single_sequence and len(upload.views) == 4
    assert upload.pixel_area_mm2 == pytest.approx(0.81)
    assert upload.seg_series is None and upload.seg_skipped is None
    assert dicom_seg_bytes(upload, upload.masks, 0.5) == (None, None)

    report = upload_report(upload, upload.masks, 0.5)
    assert report["input"] == "flair_scan.nii.gz" and not report["single_sequence"]
    assert report["sequences"] == {key: f"{key}_scan.nii.gz" for key in SEQUENCES}
    assert report["tumour_voxels"] == 4 and report["n_lesions"] == 1
    assert report["tumour_volume_ml"] == pytest.approx(4 * 0.9 * 0.9 * 3.0 / 1000)
    written = write(tmp_path / "pred.nii.gz", mask_nifti_bytes(upload.masks, upload.volume))
    back = nib.load(written)
    np.testing.assert_array_equal(np.asarray(back.dataobj), truth)
    np.testing.assert_allclose(back.affine, SEQUENCE_AFFINE)
    assert back.header["descrip"].item() == b"medseg predict"


def test_an_expert_mask_scores_a_volume_upload_as_predict_reference_does(tmp_path):
    truth = np.zeros(SHAPE, np.uint8)
    truth[1:3, 2:4, 1] = 1  # 4 voxels: the lesion the "model" finds
    truth[5, 0, 0] = 1  # 1 voxel it misses
    upload = read_sequences(sequence_files(tmp_path), ("expert.nii", nifti_bytes(truth, SEQUENCE_AFFINE, tmp_path, "m.nii")))
    assert upload.masks is not None and upload.mask_name == "expert.nii"
    labels, _ = label_lesions(upload.masks)
    predicted = (labels == 1).astype(np.uint8)  # the largest lesion only
    scored = upload_reference(upload, predicted)
    voxel_ml = 0.9 * 0.9 * 3.0 / 1000
    assert scored.measures["lesion_sensitivity"] == 0.5 and scored.measures["missed_lesions"] == 1
    assert scored.measures["pred_volume_ml"] == pytest.approx(4 * voxel_ml)
    assert scored.measures["ref_volume_ml"] == pytest.approx(5 * voxel_ml)
    assert scored.measures["dice"] == pytest.approx(8 / 9)
    report = upload_report(upload, predicted, 0.5, reference=scored.section())
    assert report["reference"]["mask"] == "expert.nii"
    assert report["reference"]["patient_measures"]["lesion_precision"] == 1.0
    assert [lesion["status"] for lesion in report["reference"]["lesions"]["reference"]] == ["detected", "missed"]
    with pytest.raises(ValueError, match="needs a volume and its mask"):
        upload_reference(read_sequences(sequence_files(tmp_path)), predicted)


def test_the_upload_page_shows_and_reports_the_measures_against_an_expert_mask(
        monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view="Upload a scan")
    downloads = record_downloads(monkeypatch)
    data = np.random.default_rng(1).integers(0, 80, (32, 32, 3)).astype(np.int16)
    truth = np.zeros((32, 32, 3), np.uint8)
    truth[10:20, 12:22, 1:] = 1
    data[truth == 1] = 300
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    at.file_uploader(key="upload_image").set_value(
        ("brain.nii.gz", nifti_bytes(data, affine, tmp_path, "brain.nii.gz"), "application/gzip"))
    at.file_uploader(key="upload_mask").set_value(
        ("brain_mask.nii.gz", nifti_bytes(truth, affine, tmp_path, "brain_mask.nii.gz"), "application/gzip"))
    at.checkbox(key="upload_single").check()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Measures against the expert mask (3-D)" in [h.value for h in at.subheader]
    report = json.loads(downloads["brain_pred.json"]())
    measures = report["reference"]["patient_measures"]
    assert report["reference"]["mask"] == "brain_mask.nii.gz"
    assert measures["ref_volume_ml"] == pytest.approx(200 * 0.5 * 0.5 * 2.0 / 1000)
    assert measures["ref_lesions"] == 1 and "hd95_mm" in measures
    shown = next(frame.value for frame in at.dataframe if "Measure" in frame.value.columns)
    assert dict(zip(shown["Measure"], shown["Value"], strict=True))["Reference volume (mL)"] == "0.1"


def test_one_of_the_three_sequences_is_refused_unless_single_sequence(tmp_path):
    files = sequence_files(tmp_path)
    with pytest.raises(DataError) as err:
        read_sequences({"flair": files["flair"]})
    assert str(err.value) == (
        "FLAIR (flair_scan.nii.gz): one MR sequence; the model reads three (pre-contrast, FLAIR, "
        "post-contrast): Pre-contrast T1 and Post-contrast T1 are missing; upload them, or tick "
        "“Use this one sequence in all three channels”")
    with pytest.raises(DataError, match=r"^Pre-contrast T1 \(pre_scan\.nii\.gz\), FLAIR \(flair_scan\."
                       r"nii\.gz\): 2 MR sequences; .*: Post-contrast T1 is missing$"):
        read_sequences({"pre": files["pre"], "flair": files["flair"]})
    with pytest.raises(DataError, match=r": “Use this one sequence in all three channels” takes one MR "
                       r"sequence, got 2: upload Post-contrast T1 too, or only one$"):
        read_sequences({"pre": files["pre"], "flair": files["flair"]}, single_sequence=True)
    upload = read_sequences({"post": files["post"]}, single_sequence=True)
    assert upload.single_sequence and upload.views == {"Post-contrast": 0}
    assert upload.name == "post_scan.nii.gz"
    np.testing.assert_array_equal(upload.images[..., 0], upload.images[..., 2])
    assert upload_report(upload, upload.images[..., 0] > 40, 0.5)["single_sequence"] is True
    written = write(tmp_path / "pred.nii.gz", mask_nifti_bytes(upload.images[..., 0] > 40, upload.volume, True))
    assert nib.load(written).header["descrip"].item() == SINGLE_SEQUENCE_MARK.encode()


def test_sequence_refusals_name_the_uploads(tmp_path):
    files = sequence_files(tmp_path)
    shifted = SEQUENCE_AFFINE.copy()
    shifted[2, 3] += 1.5
    rgb = nifti_bytes(np.zeros((*SHAPE, 3), np.uint8), SEQUENCE_AFFINE, tmp_path, "rgb.nii.gz")
    cases = [
        ({**files, "post": ("post.nii.gz", nifti_bytes(coded(2, (6, 5, 4)), SEQUENCE_AFFINE, tmp_path,
                                                        "p.nii.gz"))}, None,
         "FLAIR (flair_scan.nii.gz) and Post-contrast T1 (post.nii.gz) differ in shape: (6, 5, 3) vs "
         "(6, 5, 4); the three sequences must be co-registered on one voxel grid"),
        ({**files, "pre": ("pre.nii", nifti_bytes(coded(0), shifted, tmp_path, "s.nii"))}, None,
         "Pre-contrast T1 (pre.nii) and FLAIR (flair_scan.nii.gz) differ in position (origin)"),
        (files, ("m.nii.gz", nifti_bytes(np.zeros(SHAPE, np.uint8), shifted, tmp_path, "m.nii.gz")),
         "Expert mask (m.nii.gz) and FLAIR (flair_scan.nii.gz) differ in position (origin)"),
        ({**files, "flair": ("rgb.nii.gz", rgb)}, None,
         "FLAIR (rgb.nii.gz): expected one MR sequence (a 3-D volume), got shape (6, 5, 3, 3); a "
         "volume holding the three sequences is uploaded as one file"),
        ({**files, "flair": ("flair.png", b"x")}, None,
         "FLAIR (flair.png): unsupported file type; upload a NIfTI volume (.nii, .nii.gz) or a zipped "
         "DICOM series (.zip)"),
        (files, ("mask.png", b"x"), "mask.png: the mask of three sequences is a NIfTI volume"),
        ({**files, "flair": ("flair.zip", b"PK not a zip")}, None, "flair.zip: cannot read zip"),
        ({**files, "flair": ("series.zip", zipped({"s/notes.txt": b"hello"}))}, None,
         "series.zip:s/notes.txt: "),
    ]
    for sequences, mask, message in cases:
        with pytest.raises(DataError) as err:
            read_sequences(sequences, mask)
        assert message in str(err.value)
        assert "--" not in str(err.value) and "medseg-upload-" not in str(err.value)
        assert "\n" not in str(err.value)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zipped_dicom_flair_with_nifti_pre_and_post(tmp_path):
    """The FLAIR a zipped DICOM series on the NIfTI sequences' grid: the volume is viewed as
    the series is stored, the mask volume follows it, and a DICOM SEG refers to the series."""
    files = sequence_files(tmp_path)
    flair = coded(1).transpose(2, 1, 0)  # (x, y, z) -> (N, Rows, Columns)
    data = dicom_zip(tmp_path / "flair_series", flair)
    truth = np.zeros(SHAPE, np.uint8)
    truth[1:3, 2:4, 1:] = 1
    mask = ("mask.nii.gz", nifti_bytes(truth, SEQUENCE_AFFINE, tmp_path, "m.nii.gz"))
    upload = read_sequences({**files, "flair": ("FLAIR series.zip", data)}, mask)
    assert upload.dicom and upload.name == "FLAIR series.zip" and upload.seg_skipped is None
    on_disk = {key: write(tmp_path / f"disk_{key}.nii.gz", data) for key, (_, data) in files.items()}
    on_disk["flair"] = write(tmp_path / "flair.zip", data)
    expected = load_sequences(plan_sequences(on_disk))
    np.testing.assert_array_equal(upload.images, expected.slices)
    np.testing.assert_array_equal(upload.images[..., 1], flair)  # as stored: rows, columns
    np.testing.assert_array_equal(upload.masks, truth.transpose(2, 1, 0))
    assert upload.pixel_area_mm2 == pytest.approx(0.81)

    seg, why = dicom_seg_bytes(upload, upload.masks, 0.5)
    assert why is None
    dataset = pydicom.dcmread(io.BytesIO(seg))
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.8"
    assert dataset.ManufacturerModelName == "medseg predict" and int(dataset.NumberOfFrames) == 2
    report = upload_report(upload, upload.masks, 0.5, seg_file="FLAIR_series_pred_seg.dcm")
    assert report["dicom_seg"] == {"file": "FLAIR_series_pred_seg.dcm"}
    assert report["input"] == "FLAIR series.zip" and report["tumour_voxels"] == int(truth.sum())

    bare = dicom_zip(tmp_path / "bare", flair, frame_of_reference=False)
    upload = read_sequences({**files, "flair": ("bare.zip", bare)})
    assert upload.seg_series is None
    assert upload.seg_skipped == ("bare.zip:bare/IM0003: no FrameOfReferenceUID; a DICOM SEG cannot "
                                  "refer to this series")
    assert dicom_seg_bytes(upload, upload.masks, 0.5) == (None, upload.seg_skipped)
