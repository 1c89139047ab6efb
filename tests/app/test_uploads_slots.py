"""The three-sequence upload as a reader uses it: each slot says what its file holds (and warns
of a SeriesDescription naming another sequence), errors between slots wait for Run or the last
slot, and an expert mask may be a DICOM SEG (medseg's own, over a series written here), with
the Case view's measures and slice table."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medseg.app.case_export import worst_first
from medseg.app.uploads import read_sequences, slot_info, slot_warning
from medseg.errors import DataError
from medseg.imaging.dicom import scan_dicom_series
from medseg.imaging.dicom_seg import build_segmentation, segmentation_bytes
from medseg.imaging.sequences import SEQUENCES
from tests.app.page_driver import SEQUENCE_AFFINE, dicom_zip, plain, start

UPLOAD = "Upload a scan"
SHAPE = (8, 6, 3)  # (x: columns, y: rows, z: slices); not square
VOXEL_ML = 0.9 * 0.9 * 3.0 / 1000


def nifti(tmp_path: Path, data: np.ndarray, name: str) -> bytes:
    nib.save(nib.Nifti1Image(data, SEQUENCE_AFFINE), tmp_path / name)
    return (tmp_path / name).read_bytes()


def coded(value: int, shape=SHAPE) -> np.ndarray:
    x, y, z = np.indices(shape)
    return (value + x + 6 * y + 30 * z).astype(np.int16)


def described(data: bytes, description: str) -> bytes:
    """A zipped DICOM series with its SeriesDescription replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for member in source.namelist():
            dataset = pydicom.dcmread(io.BytesIO(source.read(member)))
            dataset.SeriesDescription = description
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            target.writestr(member, buffer.getvalue())
    return out.getvalue()


def truth() -> np.ndarray:
    """The expert mask on the grid (x, y, z): 6 voxels on slice 1 (z=1), 2 on slice 2."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:4, 2:4, 1] = 1
    mask[6, 0:2, 2] = 1
    return mask


def scan(tmp_path: Path, flair_description: str = "AX FLAIR") -> dict[str, tuple[str, bytes]]:
    """NIfTI pre and post, a zipped DICOM FLAIR on their grid."""
    files = {key: (f"{key}.nii.gz", nifti(tmp_path, coded(k), f"{key}.nii.gz")) for k, key in enumerate(SEQUENCES)}
    flair = dicom_zip(tmp_path / "flair", coded(1).transpose(2, 1, 0))
    files["flair"] = ("flair.zip", described(flair, flair_description))
    return files


def seg_of(tmp_path: Path, flair: bytes, mask_xyz: np.ndarray) -> bytes:
    """medseg's DICOM SEG of ``mask_xyz`` over the zipped series ``flair``."""
    (tmp_path / "seg_source.zip").write_bytes(flair)
    return segmentation_bytes(build_segmentation(mask_xyz, scan_dicom_series(tmp_path / "seg_source.zip"),
                                                 model_name="expert"))


# ------------------------------------------------------------------ the library


def test_each_slot_says_what_its_file_holds(tmp_path):
    files = scan(tmp_path, "AX T1 POST GD")
    flair = slot_info("flair", files["flair"])
    assert flair.text() == ("DICOM MR “AX T1 POST GD”: 6 × 8 × 3 (rows × columns × slices), pixels "
                            "0.9 × 0.9 mm, slices 3 mm apart (1 mm thick), axial, axes LPS")
    assert slot_warning("flair", flair) == (
        "SeriesDescription “AX T1 POST GD” suggests Post-contrast T1, not FLAIR: check that this "
        "file is in the right slot")
    assert slot_warning("post", flair) is None
    pre = slot_info("pre", files["pre"])
    assert pre.text() == "NIfTI: 8 × 6 × 3 voxels, voxels 0.9 × 0.9 × 3 mm, axes LPS"
    assert slot_warning("pre", pre) is None  # a NIfTI has no description: no warning
    seg = slot_info("mask", ("expert.dcm", seg_of(tmp_path, files["flair"][1], truth())))
    assert seg.text() == "DICOM SEG “medseg tumour mask - RESEARCH USE ONLY”: 2 frames of 6 × 8, pixels 0.9 × 0.9 mm"


@pytest.mark.parametrize(("role", "upload", "message"), [
    ("flair", ("flair.zip", b"PK not a zip"), "flair.zip: cannot read zip"),
    ("pre", ("t1.nii.gz", b"junk"), "t1.nii.gz: cannot read NIfTI"),
    ("post", ("post.png", b"x"), "Post-contrast T1 (post.png): unsupported file type"),
    ("mask", ("mask.png", b"x"), "mask.png: the mask of three sequences is a NIfTI volume"),
    ("mask", ("seg.dcm", b"junk"), "seg.dcm: not a readable DICOM file"),
    ("flair", ("flair.zip", b""), "flair.zip: the file is empty"),
])
def test_a_broken_slot_says_so_on_its_own(role, upload, message):
    with pytest.raises(DataError) as err:
        slot_info(role, upload)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert "medseg-upload-" not in str(err.value)


def test_a_dicom_seg_is_the_expert_mask_of_its_series(tmp_path):
    files = scan(tmp_path)
    mask = ("expert.dcm", seg_of(tmp_path, files["flair"][1], truth().transpose(0, 1, 2)))
    upload = read_sequences(files, mask)
    assert upload.mask_name == "expert.dcm" and upload.dicom
    np.testing.assert_array_equal(upload.masks, truth().transpose(2, 1, 0))  # viewed as stored

    other = dicom_zip(tmp_path / "other", coded(1).transpose(2, 1, 0), series=9)
    with pytest.raises(DataError) as err:
        read_sequences(files, ("other.dcm", seg_of(tmp_path, other, truth())))
    assert str(err.value) == ("other.dcm: the DICOM SEG refers to 1.2.826.0.1.3680043.8.498.9, not "
                              "the uploaded series 1.2.826.0.1.3680043.8.498.8")
    niftis = {key: (f"{key}.nii.gz", nifti(tmp_path, coded(k), f"n{key}.nii.gz")) for k, key in enumerate(SEQUENCES)}
    with pytest.raises(DataError, match=r"^expert\.dcm: a DICOM SEG refers to a DICOM series, and no "
                       r"sequence is one; upload the mask as a NIfTI volume"):
        read_sequences(niftis, mask)


# ------------------------------------------------------------------ the page


def set_slot(at, key: str, upload: tuple[str, bytes] | None) -> None:
    uploader = at.file_uploader(key="upload_sequence_mask" if key == "mask" else f"upload_{key}")
    uploader.set_value((upload[0], upload[1], "application/octet-stream") if upload else None)


def test_errors_between_slots_wait_for_run_or_the_last_slot(monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    files = scan(tmp_path, "AX T1 POST GD")
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    at.radio(key="upload_mode").set_value("Three sequences").run()
    set_slot(at, "flair", files["flair"])
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "1 of 3 sequences uploaded" in " ".join(i.value for i in at.info)
    assert any(plain(c.value).startswith("DICOM MR “AX T1 POST GD”: 6 × 8 × 3") for c in at.caption)
    assert [plain(w.value) for w in at.warning if "SeriesDescription" in w.value] == [
        "SeriesDescription “AX T1 POST GD” suggests Post-contrast T1, not FLAIR: check that this "
        "file is in the right slot"]

    set_slot(at, "pre", ("t1.nii.gz", b"junk"))  # a broken file: at once, in its slot only
    at.run()
    assert [plain(e.value).split(" (")[0] for e in at.error] == ["t1.nii.gz: cannot read NIfTI"]
    assert "upload_run" not in [b.key for b in at.button]

    set_slot(at, "pre", files["pre"])
    at.run()
    assert not at.error
    at.button(key="upload_run").click().run()  # asked to run: the missing one is named
    assert [plain(e.value) for e in at.error] == [
        "Pre-contrast T1 (pre.nii.gz), FLAIR (flair.zip): 2 MR sequences; the model reads three "
        "(pre-contrast, FLAIR, post-contrast): Post-contrast T1 is missing"]

    wrong = ("post.nii.gz", nifti(tmp_path, coded(2, (8, 6, 4)), "wrong.nii.gz"))
    set_slot(at, "post", wrong)  # all three in: checked together without Run
    at.run()
    assert [plain(e.value) for e in at.error] == [
        "FLAIR (flair.zip) and Post-contrast T1 (post.nii.gz) differ in shape: (8, 6, 3) vs (8, 6, 4); "
        "the three sequences must be co-registered on one voxel grid"]


def test_a_dicom_seg_expert_mask_gives_the_case_views_measures_and_slice_table(
        monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    files = scan(tmp_path)
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    at.radio(key="upload_mode").set_value("Three sequences").run()
    for key in SEQUENCES:
        set_slot(at, key, files[key])
    set_slot(at, "mask", ("expert.dcm", seg_of(tmp_path, files["flair"][1], truth())))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(plain(c.value).startswith("DICOM SEG “") for c in at.caption)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Reference volume (mL)"] == f"{8 * VOXEL_ML:.2f}"
    assert shown["Detected lesions"].endswith(" of 2")  # two expert lesions (26-connectivity)
    table = next(f.value for f in at.dataframe if "Measure" in f.value.columns)
    measures = dict(zip(table["Measure"], table["Value"], strict=True))
    assert measures["Reference volume (mL)"] == f"{8 * VOXEL_ML:.4g}"
    assert measures["Reference lesions"] == "2" and "|Δ volume| (mL)" in measures
    assert "Slices of this volume, worst Dice first" in [h.value for h in at.subheader]
    slices = next(f.value for f in at.dataframe if "Slice" in f.value.columns)
    assert list(slices["Expert px"]) == [[0, 6, 2][n - 1] for n in slices["Slice"]]  # the SEG, on its slices
    rows = [{"slice": s, "dice": math.nan if np.isnan(d) else d} for s, d in zip(slices["Slice"], slices["Dice"], strict=True)]
    assert [row["slice"] for row in worst_first(rows)] == list(slices["Slice"])
    assert sorted(slices["Slice"]) == [1, 2, 3]
