"""``medseg predict`` with the three MR sequences given separately (NIfTI files, DICOM series
folders and zips), against the same patient's kaggle_3m TIFF slices; and the rule that one
sequence is never scored silently."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from PIL import Image

from medseg.cli.main import main
from medseg.data.lgg import find_lgg_root
from medseg.engine import load_model
from medseg.engine.inference import slice_probabilities
from medseg.imaging.images import read_slice_image
from medseg.imaging.sequences import SEQUENCES
from medseg.predict import (
    SINGLE_SEQUENCE_MARK,
    SINGLE_SEQUENCE_NOTE,
    Predictor,
    is_prediction,
    predict_paths,
)
from tests.support import write_dicom_series

#: the grid the sequences are written on: voxel (x, y, z) = (column, row, slice), x towards
#: the patient's left, y posterior, z superior (an axial DICOM series, in RAS)
AFFINE = np.array([[-0.9, 0, 0, 30.0], [0, -0.9, 0, 40.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])
SLICE_VIEW = ("S", "P", "L")


def _patient(trained_lgg, tiny_lgg) -> Path:
    name = json.loads((trained_lgg.run_dir / "split.json").read_text())["test"][0]
    return find_lgg_root(tiny_lgg) / name


def _slices(folder: Path) -> np.ndarray:
    """The patient's (N, H, W, 3) uint8 slices in k order."""
    return np.stack([read_slice_image(folder / f"{folder.name}_{k}.tif") for k in range(1, 5)])


def _median_threshold(best: Path, images: np.ndarray) -> float:
    """A threshold splitting the pixels in two: masks with tumour and background both, so that
    any change of input or channel order shows."""
    loaded = load_model(best)
    probs = slice_probabilities(loaded.model, list(images), loaded.config.data.image_size)
    threshold = float(np.median(probs))
    assert 0.0 < threshold < 1.0
    return threshold


def _png_masks(folder: Path, name: str, n: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / f"{name}_{k}_pred.png")) == 255
                     for k in range(1, n + 1)])


def _write_nifti_sequences(folder: Path, images: np.ndarray) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for channel, key in enumerate(SEQUENCES):
        data = images[..., channel].transpose(2, 1, 0)  # (N, rows, columns) -> (x, y, z)
        paths[key] = folder / f"{key}.nii.gz"
        nib.save(nib.Nifti1Image(data, AFFINE), paths[key])
    return paths


def _write_dicom_sequences(folder: Path, images: np.ndarray) -> dict[str, Path]:
    """Three series on AFFINE's grid (LPS positions), file names in reverse slice order."""
    n = len(images)
    positions = [(-30.0, -40.0, -12.0 + 3.0 * k) for k in range(n)]
    names = [f"IM{n - k:04d}" for k in range(n)]
    paths = {}
    for channel, key in enumerate(SEQUENCES):
        paths[key] = folder / key
        write_dicom_series(paths[key], images[..., channel].astype(np.uint16), positions, names=names,
                           pixel_spacing=(0.9, 0.9), series_uid=f"1.2.826.0.1.3680043.8.498.{channel + 7}",
                           description=key)
    return paths


def _zip(folder: Path) -> Path:
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, f"{folder.name}/{file.name}")
    return archive


def _in_slice_view(image: nib.Nifti1Image) -> np.ndarray:
    """A mask file read back with nibabel and reoriented to (N, H, W) slices."""
    to_slices = ornt_transform(io_orientation(image.affine), axcodes2ornt(SLICE_VIEW))
    return apply_orientation(np.asarray(image.dataobj), to_slices)


def test_sequences_as_nifti_and_dicom_predict_like_the_kaggle_slices(trained_lgg, tiny_lgg, tmp_path):
    best = trained_lgg.run_dir / "best.pt"
    folder = _patient(trained_lgg, tiny_lgg)
    images = _slices(folder)
    threshold = _median_threshold(best, images)
    out = tmp_path / "out"
    predict_paths(best, [folder], out / "tiff", threshold=threshold)
    expected = _png_masks(out / "tiff" / folder.name, folder.name, 4)
    assert 0 < expected.sum() < expected.size

    nifti = _write_nifti_sequences(tmp_path / "nifti", images)
    dicom = _write_dicom_sequences(tmp_path / "dicom", images)
    dicom["flair"] = _zip(dicom["flair"])  # a zip, its folder beside it
    rgb = tmp_path / "rgb.nii.gz"  # the positional 4-D volume with 3 channels still works
    nib.save(nib.Nifti1Image(images.transpose(2, 1, 0, 3), AFFINE), rgb)
    for variant, sequences, inputs, name in (("nifti", nifti, [], "flair"), ("dicom", dicom, [], "flair"),
                                             ("rgb", None, [rgb], "rgb")):
        where = out / variant
        records = predict_paths(best, inputs, where, sequences=sequences, threshold=threshold)
        assert [r.kind for r in records] == ["sequences" if sequences else "volume"]
        assert not records[0].single_sequence
        np.testing.assert_array_equal(_png_masks(where / name, name, 4), expected)
        mask = nib.load(where / f"{name}_pred.nii.gz")
        assert mask.shape == (64, 64, 4)  # (Columns, Rows, N): the inputs' grid
        np.testing.assert_allclose(mask.affine, AFFINE, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(mask.dataobj).transpose(2, 1, 0), expected)
        np.testing.assert_array_equal(_in_slice_view(mask), expected)
        assert mask.header["descrip"].item() == b"medseg predict"
    assert records[0].tumour_pixels == int(expected.sum())


def test_the_channel_order_matters(trained_lgg, tiny_lgg, tmp_path):
    """The comparison above would catch swapped sequences: pre and post exchanged change the
    masks."""
    best = trained_lgg.run_dir / "best.pt"
    images = _slices(_patient(trained_lgg, tiny_lgg))
    threshold = _median_threshold(best, images)
    paths = _write_nifti_sequences(tmp_path / "nifti", images)
    predict_paths(best, [], tmp_path / "right", sequences=paths, threshold=threshold)
    swapped = {"pre": paths["post"], "flair": paths["flair"], "post": paths["pre"]}
    predict_paths(best, [], tmp_path / "swapped", sequences=swapped, threshold=threshold)
    right = _png_masks(tmp_path / "right" / "flair", "flair", 4)
    assert not np.array_equal(_png_masks(tmp_path / "swapped" / "flair", "flair", 4), right)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("medseg: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err[len("medseg: error: "):].rstrip("\n")


def test_one_sequence_is_refused_unless_single_sequence(trained_lgg, tiny_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    images = _slices(_patient(trained_lgg, tiny_lgg))
    flair = images[..., 1]
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(flair.transpose(2, 1, 0), AFFINE), scan)
    out = tmp_path / "out"
    assert main(["predict", best, str(scan), "--out", str(out)]) == 2
    assert _error(capsys) == (
        f"{scan}: one MR sequence; the model reads three (pre-contrast, FLAIR, post-contrast): give "
        "--pre, --flair and --post, or --single-sequence to repeat this one into all three channels")
    assert main(["predict", best, "--flair", str(scan), "--out", str(out)]) == 2
    assert _error(capsys).startswith(f"--flair {scan}: one MR sequence (FLAIR); the model reads three "
                                     "(pre-contrast, FLAIR, post-contrast): --pre (pre-contrast) and "
                                     "--post (post-contrast) are missing")
    assert not out.exists()

    assert main(["predict", best, str(scan), "--out", str(out), "--single-sequence"]) == 0
    printed = capsys.readouterr().out
    assert "the model saw one MR sequence repeated in all three channels (--single-sequence)" in printed
    mask = nib.load(out / "scan_pred.nii.gz")
    assert mask.header["descrip"].item() == SINGLE_SEQUENCE_MARK.encode()
    assert is_prediction(out / "scan_pred.nii.gz")
    with Image.open(out / "scan" / "scan_1_pred.png") as png:
        assert png.info["Comment"] == SINGLE_SEQUENCE_NOTE and png.info["Software"] == "medseg predict"
    model = load_model(best)
    repeated = [np.repeat(f[..., None], 3, axis=-1) for f in flair]
    by_hand = np.stack(Predictor(model.model, model.config.data.image_size).masks(repeated))
    np.testing.assert_array_equal(_png_masks(out / "scan", "scan", 4), by_hand)
    np.testing.assert_array_equal(_in_slice_view(mask), by_hand)

    # the mark still says "an earlier prediction": --overwrite may replace it, nothing else may
    assert main(["predict", best, str(scan), "--out", str(out), "--single-sequence"]) == 2
    assert "already exists" in _error(capsys)
    assert main(["predict", best, str(scan), "--out", str(out), "--single-sequence", "--overwrite"]) == 0
    # only --flair with the flag: the same masks, named after it
    assert main(["predict", best, "--flair", str(scan), "--out", str(tmp_path / "o2"),
                 "--single-sequence"]) == 0
    assert "one MR sequence repeated" in capsys.readouterr().out
    np.testing.assert_array_equal(_png_masks(tmp_path / "o2" / "scan", "scan", 4), by_hand)


def test_a_grey_slice_is_one_sequence(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    grey = np.random.default_rng(5).integers(0, 255, (40, 48), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = tmp_path / "out"
    assert main(["predict", best, str(tmp_path / "grey.png"), "--out", str(out)]) == 2
    assert _error(capsys).startswith(f"{tmp_path / 'grey.png'}: one MR sequence; the model reads three")
    assert not out.exists()
    assert main(["predict", best, str(tmp_path / "grey.png"), "--out", str(out), "--single-sequence"]) == 0
    assert "one MR sequence repeated in all three channels" in capsys.readouterr().out
    model = load_model(best)
    by_hand = Predictor(model.model, model.config.data.image_size).masks(
        [np.repeat(grey[..., None], 3, axis=-1)])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "grey_pred.png")) == 255, by_hand == 1)


def test_sequences_on_different_grids_exit_2_and_write_nothing(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    data = np.random.default_rng(0).integers(0, 255, (8, 8, 4)).astype(np.uint8)
    paths = []
    for name, shape in (("a", 4), ("b", 5), ("c", 4)):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(np.resize(data, (8, 8, shape)), AFFINE), paths[-1])
    out = tmp_path / "out"
    assert main(["predict", best, "--pre", str(paths[0]), "--flair", str(paths[1]), "--post",
                 str(paths[2]), "--out", str(out)]) == 2
    assert _error(capsys) == (f"PRE ({paths[0]}) and FLAIR ({paths[1]}) differ in shape: (8, 8, 4) vs "
                              "(8, 8, 5); the three sequences must be co-registered on one voxel grid")
    assert not out.exists()


def test_outputs_never_land_in_a_dicom_series_folder(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    images = np.random.default_rng(1).integers(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    dicom = _write_dicom_sequences(tmp_path / "dicom", images)
    before = sorted(p.name for p in dicom["flair"].iterdir())
    flags = [f"--{key}={path}" for key, path in dicom.items()]
    assert main(["predict", best, *flags, "--out", str(tmp_path / "dicom")]) == 2  # -> dicom/flair/
    assert "would be written inside the DICOM series folder of FLAIR" in _error(capsys)
    assert sorted(p.name for p in dicom["flair"].iterdir()) == before
    assert main(["predict", best, str(dicom["flair"]), "--out", str(tmp_path / "o")]) == 2
    assert _error(capsys).endswith("holds DICOM files, not slice images; give a DICOM series as --pre, "
                                   "--flair and --post (or one of them with --single-sequence)")


@pytest.mark.parametrize("argv", [[], ["--single-sequence"]])
def test_no_input_at_all_is_a_one_line_error(trained_lgg, tmp_path, capsys, argv):
    assert main(["predict", str(trained_lgg.run_dir / "best.pt"), "--out", str(tmp_path), *argv]) == 2
    assert _error(capsys) == "no input: give slices, folders or volumes (INPUT), or --pre, --flair and --post"


# --- the DICOM SEG and the lesion report of a DICOM FLAIR -----------------------------------

STUDY = "1.2.826.0.1.3680043.8.498.99"  # write_dicom_series' StudyInstanceUID


def _add_frame_of_reference(folder: Path) -> None:
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.42"
        ds.save_as(file, enforce_file_format=True)


def _slice_of_instance(folder: Path) -> dict[str, int]:
    """SOPInstanceUID -> slice index k, from each file's own ImagePositionPatient (z = -12 + 3k)."""
    found = {}
    for file in folder.iterdir():
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = round((float(ds.ImagePositionPatient[2]) + 12.0) / 3.0)
    return found


def test_a_dicom_flair_gets_a_seg_whose_frames_match_the_mask(trained_lgg, tiny_lgg, tmp_path, capsys):
    best = trained_lgg.run_dir / "best.pt"
    images = _slices(_patient(trained_lgg, tiny_lgg))
    threshold = _median_threshold(best, images)
    dicom = _write_dicom_sequences(tmp_path / "dicom", images)  # files in reverse slice order
    _add_frame_of_reference(dicom["flair"])
    out = tmp_path / "out"
    flags = [f"--{key}={path}" for key, path in dicom.items()]
    assert main(["predict", str(best), *flags, "--out", str(out), "--threshold", str(threshold)]) == 0
    expected = _png_masks(out / "flair", "flair", 4)  # (N, Rows, Columns), slice k = z order
    assert 0 < expected.sum() < expected.size
    report = json.loads((out / "flair_pred.json").read_text())
    assert report["dicom_seg"] == {"file": "flair_pred_seg.dcm"}
    assert report["sequences"] == {key: str(path) for key, path in dicom.items()}
    assert report["input"] == str(dicom["flair"]) and report["tumour_voxels"] == int(expected.sum())
    assert report["voxel_size_mm"] == pytest.approx([0.9, 0.9, 3.0])
    printed = capsys.readouterr().out
    assert (f"{dicom['flair']}: tumour volume {report['tumour_volume_ml']:.2f} mL in "
            f"{report['n_lesions']} lesion(s); DICOM SEG flair_pred_seg.dcm\n") in printed

    seg = pydicom.dcmread(out / "flair_pred_seg.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.StudyInstanceUID == STUDY
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.8"  # FLAIR's
    assert seg.SegmentSequence[0].SegmentLabel == "Tumour (research model prediction)"
    assert seg.ManufacturerModelName == "medseg predict" and is_prediction(out / "flair_pred_seg.dcm")
    slice_of = _slice_of_instance(dicom["flair"])
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), 64, 64)
    tumour_slices = {k for k in range(4) if expected[k].any()}
    referenced = []
    for frame, pixels in zip(seg.PerFrameFunctionalGroupsSequence, frames, strict=True):
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        referenced.append(slice_of[uid])
        np.testing.assert_array_equal(pixels, expected[slice_of[uid]])
    assert sorted(referenced) == sorted(tumour_slices)  # empty slices have no frame

    # every output is an earlier prediction: refused without --overwrite, replaced with it
    assert main(["predict", str(best), *flags, "--out", str(out)]) == 2
    assert "already exists" in _error(capsys)
    assert main(["predict", str(best), *flags, "--out", str(out), "--overwrite"]) == 0


def test_an_empty_prediction_still_gets_a_seg_with_empty_frames(trained_lgg, tiny_lgg, tmp_path, capsys):
    best = trained_lgg.run_dir / "best.pt"
    images = _slices(_patient(trained_lgg, tiny_lgg))
    loaded = load_model(best)
    top = float(np.max(slice_probabilities(loaded.model, list(images[..., [1, 1, 1]]),
                                           loaded.config.data.image_size)))
    if top >= 1.0 - 1e-6:
        pytest.skip("the tiny model is certain of some pixel")
    dicom = _write_dicom_sequences(tmp_path / "dicom", images)
    _add_frame_of_reference(dicom["flair"])
    out = tmp_path / "out"
    assert main(["predict", str(best), "--flair", str(dicom["flair"]), "--single-sequence",
                 "--out", str(out), "--threshold", str((top + 1.0) / 2)]) == 0
    assert "tumour volume 0.00 mL in 0 lesion(s); DICOM SEG flair_pred_seg.dcm (empty: no tumour " \
           "found)" in capsys.readouterr().out
    report = json.loads((out / "flair_pred.json").read_text())
    assert report["n_lesions"] == 0 and report["tumour_volume_ml"] == 0 and report["single_sequence"]
    seg = pydicom.dcmread(out / "flair_pred_seg.dcm")
    assert int(seg.NumberOfFrames) == 4 and not seg.pixel_array.any()
    assert SINGLE_SEQUENCE_NOTE in seg.ContentDescription


def test_a_dicom_flair_without_a_frame_of_reference_gets_no_seg_and_says_why(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    images = np.random.default_rng(4).integers(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    dicom = _write_dicom_sequences(tmp_path / "dicom", images)
    out = tmp_path / "out"
    assert main(["predict", best, *[f"--{key}={path}" for key, path in dicom.items()], "--out", str(out)]) == 0
    reason = f"{dicom['flair'] / 'IM0002'}: no FrameOfReferenceUID; a DICOM SEG cannot refer to this series"
    assert f"; no DICOM SEG: {reason}\n" in capsys.readouterr().out
    assert json.loads((out / "flair_pred.json").read_text())["dicom_seg"] == {"file": None, "skipped": reason}
    assert not list(out.glob("*.dcm"))
