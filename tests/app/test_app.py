"""The Streamlit page driven through ``streamlit.testing.v1.AppTest`` over tiny trained runs.

Every score the page shows is checked against the library computed directly: probabilities
from ``load_model`` + ``preprocess_image`` + ``predict_probabilities``, then
``dice_score`` / ``iou_score`` / ``ClassificationMeter``.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import streamlit as st
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from medseg.app import cohort, review_models
from medseg.data.lgg import list_patients
from medseg.data.preprocess import preprocess_image
from medseg.data.splits import SPLIT_NAMES, read_split_file
from medseg.engine import load_model, predict_probabilities
from medseg.engine.lesions import lesion_report
from medseg.imaging.images import read_mask, read_slice_image
from medseg.imaging.sequences import SEQUENCES, load_sequence_mask, load_sequences, plan_sequences
from medseg.metrics import ClassificationMeter, dice_score, iou_score
from medseg.metrics.classification import sample_confusion_counts
from medseg.metrics.lesions import match_lesions
from medseg.metrics.measures import measure_label, patient_measures
from medseg.predict import SINGLE_SEQUENCE_MARK, predict_paths
from tests.app.page_driver import (
    FRAME_OF_REFERENCE,
    SEQUENCE_AFFINE,
    chart_specs,
    dicom_zip,
    open_view,
    perturbed_copy,
    plain,
    png_bytes,
    record_downloads,
    record_pictures,
    sequence_radio,
    start,
)
from tests.support import write_pcam

pytestmark = pytest.mark.slow
UPLOAD = "Upload a scan"


def library_probabilities(checkpoint: Path, images: list[np.ndarray]) -> np.ndarray:
    """Probabilities at the slices' own size: the evaluation transform to the training size,
    the model, then bilinear resizing back to the slice (the fixture slices are 64x64, the
    model was trained at 32x32)."""
    loaded = load_model(checkpoint)
    size = loaded.config.data.image_size
    batch = torch.stack([preprocess_image(image, size) for image in images])
    probs = predict_probabilities(loaded.model, batch)
    assert probs.shape[-2:] == (size, size) != images[0].shape[:2]
    probs = torch.nn.functional.interpolate(probs, size=images[0].shape[:2], mode="bilinear",
                                            align_corners=False)
    return probs[:, 0].numpy()


def shown_metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_research_notice_and_no_runs_message(monkeypatch, tmp_path):
    at = start(monkeypatch, tmp_path / "nothing_here")
    assert "Research use only — not for diagnosis" in at.warning[0].value
    assert any("medseg train configs/demo_lgg.yaml" in info.value for info in at.info)
    assert not at.error


def patient_dice(checkpoint: Path, patient, threshold: float = 0.5) -> float:
    """A patient's 3-D Dice computed by the library (not the page)."""
    images = [read_slice_image(s.image_path) for s in patient.slices]
    masks = np.stack([read_mask(s.mask_path) for s in patient.slices])
    return dice_score(library_probabilities(checkpoint, images) >= threshold, masks)


def test_case_browser_follows_the_runs_split(monkeypatch, segmentation_run, tiny_lgg):
    split, _ = read_split_file(segmentation_run / "split.json")
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert not at.error
    subsets = at.radio(key="patient_subset")
    assert subsets.options == ["test", "val", "train", "all"] and subsets.value == "test"
    patients = at.selectbox(key="patient")
    assert patients.value == split["test"][0]  # opens on a patient the run was scored on
    assert patients.options == [f"{name} (test)" for name in split["test"]]
    at.radio(key="patient_subset").set_value("all").run()
    labels = at.selectbox(key="patient").options
    assert labels == [f"{p.name} ({subset})" for p in list_patients(tiny_lgg)
                      for subset in SPLIT_NAMES if p.name in split[subset]]
    assert any(f"`{segmentation_run.name}`" in caption.value for caption in at.caption)
    assert not any("SYNTHETIC" in info.value for info in at.info)  # real data: no demo note
    assert "Expert area (px)" in shown_metrics(at)


def copy_run_with_test_patients(segmentation_run: Path, folder: Path, test: list[str]) -> Path:
    """A copy of the tiny run whose split.json names ``test`` as its test patients."""
    run = folder / "run"
    shutil.copytree(segmentation_run, run, ignore=shutil.ignore_patterns("app_cache"))
    split = json.loads((run / "split.json").read_text())
    for subset in ("train", "val", "test"):
        split[subset] = [name for name in split[subset] if name not in test]
    split["test"] = test
    (run / "split.json").write_text(json.dumps(split))
    return run


def test_opens_on_the_test_patient_with_the_lowest_dice_and_caches_the_cohort(
        monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    patients = list_patients(tiny_lgg)
    run = copy_run_with_test_patients(segmentation_run, tmp_path / "models", [p.name for p in patients])
    dice = {p.name: patient_dice(run / "best.pt", p) for p in patients}
    assert len(set(dice.values())) == len(dice)  # distinct: the lowest is one patient
    at = start(monkeypatch, run.parent, lgg=tiny_lgg)
    assert at.selectbox(key="patient").value == min(dice, key=dice.get)
    [cache] = (run / "app_cache").glob("cohort-best-*.json")
    cached = json.loads(cache.read_text())
    assert cached["checkpoint"] == "best.pt" and set(cached["patients"]) == set(dice)
    assert cached["patients"][min(dice, key=dice.get)]["dice"][9] == pytest.approx(min(dice.values()))

    at = open_view(at, "Cohort")  # the cohort table: lowest Dice first, the library's numbers
    table = at.dataframe[0].value
    assert list(table["Patient"]) == sorted(dice, key=dice.get)
    assert list(table["Dice (3-D)"]) == pytest.approx(sorted(dice.values()))
    assert list(table["Subset"]) == ["test"] * len(dice)

    calls = count_model_runs(monkeypatch)  # a new server: the cohort is read from disk
    at = start(monkeypatch, run.parent, lgg=tiny_lgg, view="Cohort")
    assert not calls and list(at.dataframe[0].value["Patient"]) == sorted(dice, key=dice.get)
    (run / "best.pt").touch()  # a rewritten checkpoint: the cohort is scored again
    start(monkeypatch, run.parent, lgg=tiny_lgg, view="Cohort")
    assert sum(calls) == sum(len(p.slices) for p in patients)


def count_model_runs(monkeypatch) -> list[int]:
    """The number of slices of every call of the model from now on (the caches emptied)."""
    st.cache_resource.clear()
    calls: list[int] = []
    original = review_models.slice_probabilities

    def counting(model, images, image_size):
        calls.append(len(images))
        return original(model, images, image_size)

    monkeypatch.setattr(review_models, "slice_probabilities", counting)
    return calls


def test_cohort_of_a_read_only_run_folder_is_kept_in_memory(monkeypatch, segmentation_run, tiny_lgg,
                                                            tmp_path):
    run = copy_run_with_test_patients(segmentation_run, tmp_path / "models",
                                      [list_patients(tiny_lgg)[0].name])
    def read_only(path, text):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(cohort, "write_text", read_only)  # a run folder mounted read-only
    at = start(monkeypatch, run.parent, lgg=tiny_lgg, view="Cohort")
    assert not at.error and not list(run.glob("app_cache/*"))
    assert len(at.dataframe[0].value) == 1
    assert any("kept in memory until the server stops" in c.value for c in at.caption)


def test_threshold_curves_mark_the_threshold(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    [spec] = chart_specs(at)
    assert spec["title"] == "Dice (3-D) against the threshold"
    assert spec["layer"][1]["data"]["values"] == [{"threshold": 0.5}]  # the dashed rule
    at.slider(key="threshold").set_value(0.3).run()
    assert chart_specs(at)[0]["layer"][1]["data"]["values"] == [{"threshold": 0.3}]
    at = open_view(at, "Cohort")  # the split's mean curve, once every patient is scored
    assert [s["title"] for s in chart_specs(at)] == ["Mean Dice (3-D) against the threshold"]


def test_training_curves_overlay_the_chosen_runs(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view="Training curves")
    runs = at.multiselect(key="curve_runs")
    assert runs.value == [segmentation_run.name]  # the run in view
    # one chart per history.csv quantity: loss, the 4 validation metrics, learning rate
    assert [c.value for c in at.caption if c.value in (
        "training loss", "validation Dice", "validation IoU", "validation patient Dice",
        "validation empty-slice FP rate", "learning rate")] == [
        "training loss", "validation Dice", "validation IoU", "validation patient Dice",
        "validation empty-slice FP rate", "learning rate"]
    assert not at.exception


def test_demo_data_is_flagged_and_its_masks_called_synthetic(monkeypatch, segmentation_run,
                                                             tiny_lgg, tmp_path):
    demo = tmp_path / "demo"  # the tiny cases with the marker medseg demo-data writes
    shutil.copytree(tiny_lgg, demo)
    (demo / "medseg_demo.json").write_text(json.dumps(
        {"synthetic": True, "kind": "lgg", "written_by": "medseg demo-data", "version": "0",
         "seed": 0, "files": {}}))
    at = start(monkeypatch, segmentation_run.parent, lgg=demo)
    assert not at.error, [e.value for e in at.error]
    assert any("the tumours are SYNTHETIC" in info.value for info in at.info)
    shown = shown_metrics(at)
    assert "Synthetic ref. area (px)" in shown and "Expert area (px)" not in shown


def test_case_browser_scores_match_the_library(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert not at.error
    assert at.selectbox(key="run").value == segmentation_run.name
    patient = list_patients(tiny_lgg)[1]
    at.radio(key="patient_subset").set_value("all").run()
    at.selectbox(key="patient").set_value(patient.name).run()
    images = [read_slice_image(s.image_path) for s in patient.slices]
    masks = [read_mask(s.mask_path) for s in patient.slices]
    probs = library_probabilities(segmentation_run / "best.pt", images)
    slider = at.select_slider(key=f"slice:{tiny_lgg}:{patient.name}")
    # the page opens the slice with the largest expert tumour
    largest = int(np.argmax([m.sum() for m in masks]))
    assert slider.value == patient.slices[largest].index

    for threshold in (0.5, 0.3, 0.7):
        at.slider(key="threshold").set_value(threshold).run()
        for position in (largest, 0):
            at.select_slider(key=f"slice:{tiny_lgg}:{patient.name}").set_value(
                patient.slices[position].index).run()
            assert not at.exception and not at.error
            pred = probs[position] >= threshold
            shown = shown_metrics(at)
            assert shown["Slice Dice"] == f"{dice_score(pred, masks[position]):.3f}"
            assert shown["Slice IoU"] == f"{iou_score(pred, masks[position]):.3f}"
            assert shown["Expert area (px)"] == str(int(masks[position].sum()))
            assert shown["Model area (px)"] == str(int(pred.sum()))
        volume_pred = np.stack(probs) >= threshold
        assert shown["Patient Dice (3-D)"] == f"{dice_score(volume_pred, np.stack(masks)):.3f}"
        assert shown["Patient IoU (3-D)"] == f"{iou_score(volume_pred, np.stack(masks)):.3f}"
        table = at.dataframe[0].value
        expected = [(round(dice, 3), index) for dice, index in sorted(
            (dice_score(p >= threshold, m), s.index)
            for p, m, s in zip(probs, masks, patient.slices, strict=True)
        )]  # sorted by the unrounded Dice: two slices may round to the same value
        assert list(zip(table["Dice"], table["Slice"], strict=True)) == expected  # worst first


def test_mri_sequence_and_images(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert at.radio(key="sequence").options == ["FLAIR", "Pre-contrast", "Post-contrast",
                                                "RGB composite"]
    at.radio(key="sequence").set_value("Post-contrast").run()
    assert not at.exception
    legend = " ".join(m.value for m in at.markdown)
    for label in ("True positive", "False positive", "False negative"):
        assert label in legend


def test_corrupt_checkpoint_is_a_friendly_error(monkeypatch, tmp_path, segmentation_run):
    run = tmp_path / "models" / "broken"
    run.mkdir(parents=True)
    shutil.copy(segmentation_run / "config.yaml", run / "config.yaml")
    (run / "best.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    at = start(monkeypatch, tmp_path / "models")
    assert not at.exception
    assert "not a readable checkpoint" in at.error[0].value
    assert "broken" in at.error[0].value


def test_upload_slice_with_mask(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    item = list_patients(tiny_lgg)[2].slices[-1]
    image, mask = read_slice_image(item.image_path), read_mask(item.mask_path)
    at.file_uploader(key="upload_image").set_value(("scan.png", png_bytes(image), "image/png"))
    at.file_uploader(key="upload_mask").set_value(("scan_mask.png", png_bytes(mask * 255),
                                                   "image/png"))
    at.run()
    assert not at.exception and not at.error
    pred = library_probabilities(segmentation_run / "best.pt", [image])[0] >= 0.5
    shown = shown_metrics(at)
    upload_metrics = at.metric
    assert upload_metrics[0].label == "Slice Dice"
    assert upload_metrics[0].value == f"{dice_score(pred, mask):.3f}"
    assert "Image Dice (3-D)" in shown
    download = at.get("download_button")
    assert download, "a download button for the predicted mask"


def test_upload_grey_slice_without_mask(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    item = list_patients(tiny_lgg)[0].slices[2]
    grey = read_slice_image(item.image_path)[..., 1]
    at.file_uploader(key="upload_image").set_value(("flair.png", png_bytes(grey), "image/png"))
    at.run()
    assert not at.exception
    assert [plain(e.value) for e in at.error] == [
        "flair.png: one MR sequence; the model reads three (pre-contrast, FLAIR, post-contrast): "
        "upload them as three sequences, or tick “Use this one sequence in all three channels”"]
    assert not at.metric and not single_sequence_warnings(at)
    at.checkbox(key="upload_single").check().run()
    assert not at.exception and not at.error
    assert single_sequence_warnings(at)
    assert sequence_radio(at).options == ["One sequence (given)"]
    image = np.repeat(grey[..., None], 3, axis=2)
    pred = library_probabilities(segmentation_run / "best.pt", [image])[0] >= 0.5
    [area] = [m for m in at.metric if m.label == "Model area (px)"]
    assert area.value == str(int(pred.sum()))
    assert "Slice Dice" not in [m.label for m in at.metric]  # nothing to score against
    assert "Predicted tumour" in " ".join(m.value for m in at.markdown)


def test_bad_uploads_show_errors_not_tracebacks(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    # the browser's file picker offers only what the readers take (they still check: a
    # client may send anything, see test_uploads)
    slices_and_volumes = [".tif", ".tiff", ".png", ".jpg", ".jpeg", ".nii", ".nii.gz"]
    assert list(at.file_uploader(key="upload_image").proto.type) == slices_and_volumes
    assert list(at.file_uploader(key="upload_mask").proto.type) == slices_and_volumes
    cases = [
        (("scan.png", b"\x89PNG\r\n\x1a\n garbage", "image/png"), None, "scan.png: cannot read PNG"),
        (("scan.png", png_bytes(np.zeros((64, 64, 3), np.uint8)), "image/png"),
         ("mask.png", png_bytes(np.zeros((32, 32), np.uint8)), "image/png"),
         "mask.png: the mask is 32x32 but scan.png is 64x64"),
        (("brain.nii.gz", b"\x1f\x8b\x08 not gzip", "application/gzip"), None, "brain.nii.gz"),
    ]
    for image, mask, message in cases:
        at.file_uploader(key="upload_image").set_value(image)
        at.file_uploader(key="upload_mask").set_value(mask)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(message in plain(error.value) for error in at.error), [e.value for e in at.error]


def test_upload_nifti_volume_with_mask_volume(monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    """A 3-D volume is one MR sequence: refused, then read with the box ticked, a warning on
    the page and the downloads marked."""
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    downloads = record_downloads(monkeypatch)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 80, (64, 64, 3)).astype(np.int16)  # x, y, z: 3 axial slices
    truth = np.zeros((64, 64, 3), np.uint8)
    truth[20:40, 25:45, 1:] = 1
    data[truth == 1] = 300
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "brain.nii.gz")
    nib.save(nib.Nifti1Image(truth, affine), tmp_path / "brain_mask.nii.gz")
    at.file_uploader(key="upload_image").set_value(
        ("brain.nii.gz", (tmp_path / "brain.nii.gz").read_bytes(), "application/gzip"))
    at.file_uploader(key="upload_mask").set_value(
        ("brain_mask.nii.gz", (tmp_path / "brain_mask.nii.gz").read_bytes(), "application/gzip"))
    at.run()
    assert not at.exception
    assert [plain(e.value) for e in at.error] == [
        "brain.nii.gz: one MR sequence; the model reads three (pre-contrast, FLAIR, post-contrast): "
        "upload them as three sequences, or tick “Use this one sequence in all three channels”"]
    assert not downloads and not single_sequence_warnings(at)
    at.checkbox(key="upload_single").check().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert single_sequence_warnings(at)
    assert sequence_radio(at).options == ["One sequence (given)"]
    assert set(downloads) == {"brain_pred.nii.gz", "brain_pred.json"}
    mask = nifti_download(downloads["brain_pred.nii.gz"])
    assert mask.header["descrip"].item() == SINGLE_SEQUENCE_MARK.encode()
    np.testing.assert_allclose(mask.affine, affine)
    report = json.loads(downloads["brain_pred.json"]())
    assert report["single_sequence"] is True and report["input"] == "brain.nii.gz"
    assert report["tumour_voxels"] == int(np.asarray(mask.dataobj).sum())
    upload_metrics = {m.label: m.value for m in at.metric}
    assert "Volume Dice (3-D)" in upload_metrics
    assert upload_metrics["Model volume (mL)"] == f"{report['tumour_volume_ml']:.2f}"
    assert upload_metrics["Model lesions"] == str(report["n_lesions"])
    # 0.5 mm x 0.5 mm pixels: areas in mm², from the header
    assert upload_metrics["Expert area (mm²)"] == "100"
    slider = next(s for s in at.select_slider if s.label == "Axial slice")
    assert slider.options == ["1", "2", "3"]
    assert slider.value == 2  # the first slice with the largest expert tumour
    slider.set_value(1).run()  # inferior-most axial slice: no tumour in the mask volume
    assert {m.label: m.value for m in at.metric}["Expert area (mm²)"] == "0"


def upload_slider(at: AppTest):
    [slider] = [s for s in at.select_slider if str(s.key).startswith("upload_slice:")]
    return slider


def single_sequence_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "One MR sequence, repeated into all three" in w.value]


def nifti_download(make: Callable[[], bytes]) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(make()))


def sequence_files(tmp_path: Path, images: np.ndarray, masks: np.ndarray,
                   dicom_flair: bool = False) -> dict[str, Path]:
    """The kaggle slices' channels as pre/flair/post NIfTI files on SEQUENCE_AFFINE's grid (the
    FLAIR as a zipped DICOM series with ``dicom_flair``), and the masks as mask.nii.gz."""
    paths = {}
    for channel, key in enumerate(SEQUENCES):
        paths[key] = tmp_path / f"{key}.nii.gz"
        nib.save(nib.Nifti1Image(images[..., channel].transpose(2, 1, 0), SEQUENCE_AFFINE), paths[key])
    if dicom_flair:
        paths["flair"] = tmp_path / "flair.zip"
        paths["flair"].write_bytes(dicom_zip(tmp_path / "flair", images[..., 1]))
    paths["mask"] = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(masks.transpose(2, 1, 0), SEQUENCE_AFFINE), paths["mask"])
    return paths


def upload_sequences(at: AppTest, paths: dict[str, Path]) -> None:
    """Three-sequence mode, each path uploaded under its own name ("upload_sequence_mask" for
    the mask); the uploaders of the keys not given are emptied."""
    at.radio(key="upload_mode").set_value("Three sequences").run()
    for key in (*SEQUENCES, "mask"):
        uploader = at.file_uploader(key="upload_sequence_mask" if key == "mask" else f"upload_{key}")
        path = paths.get(key)
        uploader.set_value((path.name, path.read_bytes(), "application/octet-stream") if path else None)
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def check_sequence_upload(at: AppTest, downloads, segmentation_run: Path, paths: dict[str, Path],
                          threshold: float) -> dict:
    """The page's scores, areas, tumour volume and lesion count equal the library's over
    load_sequences(plan_sequences(...)) of the same files; its mask and report downloads
    equal what medseg predict writes for them. Returns the page's report."""
    sequences = {key: paths[key] for key in SEQUENCES}
    volume = load_sequences(plan_sequences(sequences))
    images = list(volume.slices)
    probs = library_probabilities(segmentation_run / "best.pt", images)
    pred = probs >= threshold
    truth = load_sequence_mask(paths["mask"], plan_sequences(sequences))
    position = upload_slider(at).value - 1
    shown = {m.label: m.value for m in at.metric}
    assert shown["Slice Dice"] == f"{dice_score(pred[position], truth[position]):.3f}"
    assert shown["Volume Dice (3-D)"] == f"{dice_score(pred, truth):.3f}"
    assert shown["Expert area (mm²)"] == f"{truth[position].sum() * 0.81:.0f}"
    assert shown["Model area (mm²)"] == f"{pred[position].sum() * 0.81:.0f}"
    lesions = lesion_report(pred, volume.affine, volume.slice_transform())
    assert shown["Model volume (mL)"] == f"{lesions['tumour_volume_ml']:.2f}"
    assert shown["Model lesions"] == str(lesions["n_lesions"])
    assert sequence_radio(at).options == ["FLAIR", "Pre-contrast", "Post-contrast", "RGB composite"]

    written = predict_paths(segmentation_run / "best.pt", [], paths["mask"].parent / "predicted",
                            sequences=sequences, threshold=threshold, reference=paths["mask"])[0]
    assert set(downloads) == {path.name for path in written.files if path.suffix in (".gz", ".json", ".dcm")}
    mask = nifti_download(downloads["flair_pred.nii.gz"])
    expected = nib.load(next(p for p in written.files if p.name == "flair_pred.nii.gz"))
    np.testing.assert_array_equal(np.asarray(mask.dataobj), np.asarray(expected.dataobj))
    np.testing.assert_allclose(mask.affine, expected.affine)
    assert mask.header["descrip"] == expected.header["descrip"]
    report = json.loads(downloads["flair_pred.json"]())
    from_cli = json.loads(next(p for p in written.files if p.suffix == ".json").read_text())
    assert report.pop("input") == paths["flair"].name and from_cli.pop("input") == str(paths["flair"])
    assert report.pop("sequences") == {key: path.name for key, path in sequences.items()}
    assert from_cli.pop("sequences") == {key: str(path) for key, path in sequences.items()}
    assert report["reference"].pop("mask") == paths["mask"].name  # the expert mask, scored alike
    assert from_cli["reference"].pop("mask") == str(paths["mask"])
    assert report == from_cli
    return report


def upload_patient_sequences(monkeypatch, segmentation_run, tiny_lgg, tmp_path, patient_index,
                             **files):
    """A tiny patient's slices as three sequence files, uploaded at a threshold where the
    model finds tumour; returns (page, downloads, paths, threshold)."""
    patient = list_patients(tiny_lgg)[patient_index]
    images = np.stack([read_slice_image(s.image_path) for s in patient.slices])
    masks = np.stack([read_mask(s.mask_path) for s in patient.slices])
    paths = sequence_files(tmp_path, images, masks, **files)
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    downloads = record_downloads(monkeypatch)
    threshold = some_tumour_threshold(segmentation_run, images)
    at.slider(key="threshold").set_value(threshold)
    upload_sequences(at, paths)
    assert not at.error, [e.value for e in at.error]
    return at, downloads, paths, threshold


def test_upload_three_nifti_sequences(monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    at, downloads, paths, threshold = upload_patient_sequences(
        monkeypatch, segmentation_run, tiny_lgg, tmp_path, 1)
    assert not single_sequence_warnings(at)
    report = check_sequence_upload(at, downloads, segmentation_run, paths, threshold)
    assert report["tumour_voxels"] > 0 and "dicom_seg" not in report


def test_upload_a_zipped_dicom_flair_offers_a_dicom_seg(monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    at, downloads, paths, threshold = upload_patient_sequences(
        monkeypatch, segmentation_run, tiny_lgg, tmp_path, 2, dicom_flair=True)
    assert upload_slider(at).label == "Slice (as stored)"  # a DICOM series is viewed as stored
    report = check_sequence_upload(at, downloads, segmentation_run, paths, threshold)
    assert report["dicom_seg"] == {"file": "flair_pred_seg.dcm"}
    seg = pydicom.dcmread(io.BytesIO(downloads["flair_pred_seg.dcm"]()))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.FrameOfReferenceUID == FRAME_OF_REFERENCE
    assert seg.ManufacturerModelName == "medseg predict"
    assert int(seg.NumberOfFrames) == len({s for lesion in report["lesions"]
                                           for s in range(lesion["slices"][0], lesion["slices"][1] + 1)})


def test_sequence_uploads_refused_then_one_accepted(monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 200, (3, 32, 32, 3)).astype(np.uint8)  # 3 slices of 32x32
    paths = sequence_files(tmp_path, images, np.zeros((3, 32, 32), np.uint8))
    nib.save(nib.Nifti1Image(images[1:, ..., 0].transpose(2, 1, 0), SEQUENCE_AFFINE), tmp_path / "t1_[x]_.nii")
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view=UPLOAD)
    upload_sequences(at, {**paths, "pre": tmp_path / "t1_[x]_.nii"})
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert "](" not in at.error[0].value and "\\_" in at.error[0].value  # escaped Markdown
    assert plain(at.error[0].value) == (
        "Pre-contrast T1 (t1_[x]_.nii) and FLAIR (flair.nii.gz) differ in shape: (32, 32, 2) vs "
        "(32, 32, 3); the three sequences must be co-registered on one voxel grid")

    upload_sequences(at, {"flair": paths["flair"]})
    assert not at.error  # the others may be on their way: checked when asked to run
    at.button(key="upload_run").click().run()
    assert [plain(e.value) for e in at.error] == [
        "FLAIR (flair.nii.gz): one MR sequence; the model reads three (pre-contrast, FLAIR, "
        "post-contrast): Pre-contrast T1 and Post-contrast T1 are missing; upload them, or tick "
        "“Use this one sequence in all three channels”"]
    at.checkbox(key="upload_single").check().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert single_sequence_warnings(at)
    assert sequence_radio(at).options == ["FLAIR"]
    assert upload_slider(at).label == "Axial slice" and upload_slider(at).options == ["1", "2", "3"]


def some_tumour_threshold(segmentation_run: Path, images: np.ndarray) -> float:
    """A threshold on the slider's 0.05 steps under which the tiny model marks some pixels."""
    probs = library_probabilities(segmentation_run / "best.pt", list(images))
    return round(float(np.clip(np.floor(np.quantile(probs, 0.9) * 20) / 20, 0.05, 0.95)), 2)


def test_pcam_mode_scores_match_the_library(monkeypatch, classification_run, tiny_pcam):
    import h5py

    at = start(monkeypatch, classification_run.parent, pcam=tiny_pcam)
    assert not at.error, [e.value for e in at.error]
    assert "pcam_count" not in [s.key for s in at.slider]  # 12 patches: all of them, no slider
    assert "All 12 patches of the split are scored." in [c.value for c in at.caption]
    with h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_x.h5") as f:
        patches = f["x"][:16]
    with h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_y.h5") as f:
        labels = f["y"][:16].reshape(-1)
    loaded = load_model(classification_run / "best.pt")
    from medseg.data.pcam import LoadPCamPatchd
    from medseg.data.transforms import pcam_transforms

    steps = pcam_transforms(LoadPCamPatchd("x", "y"), augment=False).transforms[1:]
    batch = []
    for patch in torch.from_numpy(patches).permute(0, 3, 1, 2).float():
        sample = {"image": patch}
        for step in steps:
            sample = step(sample)
        batch.append(sample["image"])
    probs = predict_probabilities(loaded.model, torch.stack(batch))
    meter = ClassificationMeter(threshold=0.5)
    meter.update(probs, torch.from_numpy(labels).float())
    expected = meter.compute()
    shown = shown_metrics(at)
    assert shown["Accuracy"] == f"{expected['accuracy']:.3f}"
    assert shown["AUC"] == f"{expected['auc']:.3f}"
    assert len(labels) == 12 and len(at.image) == 12  # every patch of the split, in the grid
    counts = sample_confusion_counts(probs, labels, 0.5)  # the confusion matrix at the threshold
    matrix = at.table[0].value
    assert matrix.to_numpy().tolist() == [[counts["tp"], counts["fn"]], [counts["fp"], counts["tn"]]]
    assert [spec["title"] for spec in chart_specs(at)] == ["ROC curve"]
    shown_patch = at.image[0]  # each patch shown with its centre square outlined, losslessly
    assert shown_patch.proto.imgs[0].url.endswith(".png")


def test_threshold_and_slice_changes_do_not_run_the_model_again(
        monkeypatch, segmentation_run, tiny_lgg):
    calls = count_model_runs(monkeypatch)
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert sum(calls) == 4  # the opened (test) patient's 4 slices, once
    opened = at.selectbox(key="patient").value
    at.slider(key="threshold").set_value(0.2).run()
    at.select_slider(key=f"slice:{tiny_lgg}:{opened}").set_value(1).run()
    at.radio(key="sequence").set_value("RGB composite").run()
    at.radio(key="patient_subset").set_value("all").run()  # the same patient stays open
    assert sum(calls) == 4
    other = next(p.name for p in list_patients(tiny_lgg) if p.name != opened)
    at.selectbox(key="patient").set_value(other).run()
    assert sum(calls) == 8  # a new patient: its slices, once
    assert not at.exception


def test_runs_side_by_side_show_each_runs_mask_and_patient_dice(monkeypatch, segmentation_run,
                                                                tiny_lgg, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(segmentation_run, models / "run_a", ignore=shutil.ignore_patterns("app_cache"))
    perturbed_copy(segmentation_run, models / "run_b", 0.5)
    at = start(monkeypatch, models, lgg=tiny_lgg, view="Runs side by side")
    at.multiselect(key="compare_runs").set_value(["run_a", "run_b"]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    name = at.selectbox(key="patient").value
    patient = next(p for p in list_patients(tiny_lgg) if p.name == name)
    dice = {run: patient_dice(models / run / "best.pt", patient) for run in ("run_a", "run_b")}
    assert dice["run_a"] != dice["run_b"]
    captions = [image.proto.imgs[0].caption for image in at.image]
    assert len(captions) == 5  # the MRI, the reference, one overlay per run, where they disagree
    for run, caption in zip(("run_a", "run_b"), captions[2:4], strict=True):
        assert caption.startswith(f"{run} (adam+znorm): slice Dice ")
        assert caption.endswith(f"patient Dice {dice[run]:.3f}")
    table = at.dataframe[1].value  # the chosen subset's patients (test), a column per run
    assert list(table.columns) == ["Patient", "Subset", "run_a", "run_b", "Δ run_b − run_a"]
    assert list(table["Patient"]) == [name]
    assert table["run_a"][0] == pytest.approx(dice["run_a"])
    assert table["Δ run_b − run_a"][0] == pytest.approx(dice["run_b"] - dice["run_a"])


def test_viewer_draws_one_large_lossless_view(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    big = at.image[0].proto
    # zoom 2 is asked, but a 64-px slice is drawn at least 192 px wide: 3x
    assert big.imgs[0].url.endswith(".png") and "3×" in big.imgs[0].caption
    assert "outline" in big.imgs[0].caption
    pictures = record_pictures(monkeypatch)
    at.select_slider(key="zoom").set_value(4).run()
    at.radio(key="overlay_style").set_value("Fill").run()
    big = at.image[0].proto
    assert "4×" in big.imgs[0].caption and "fill" in big.imgs[0].caption
    kind, data = pictures[-4]  # this run's: the overlay, the MRI, the two masks
    overlay = np.asarray(Image.open(io.BytesIO(data)))
    assert kind == "image/png" and overlay.shape == (4 * 64, 4 * 64, 3)
    assert (overlay[::4, ::4] == overlay[3::4, 3::4]).all()  # nearest neighbour: 4x4 blocks
    model_mask = np.asarray(Image.open(io.BytesIO(pictures[-1][1])))
    assert set(np.unique(model_mask)) <= {0, 255}  # lossless: two levels, no JPEG grey
    at.slider(key="window").set_value((40, 200)).run()
    at.multiselect(key="overlay_labels").set_value(["fn"]).run()
    assert not at.exception
    legend = " ".join(m.value for m in at.markdown)
    assert "False negative" in legend and "True positive" not in legend


def test_pcam_count_slider_is_bounded_by_the_split(monkeypatch, classification_run, tmp_path):
    pcam = write_pcam(tmp_path / "pcam", {"train": 4, "val": 4, "test": 40}).root
    at = start(monkeypatch, classification_run.parent, pcam=pcam)
    slider = at.slider(key="pcam_count")
    assert (slider.min, slider.max, slider.value) == (16, 40, 40)
    assert not at.error and len(at.image) == 32  # a grid of 4 rows of 8


def test_case_view_shows_the_patients_measures_and_lesions(monkeypatch, segmentation_run, tiny_lgg):
    """Below the slices: every measure of patient_measures (pixels and voxels) at the chosen
    threshold, and every reference and model lesion with its status and the slice where it is
    widest (the slice a click opens)."""
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    patient = list_patients(tiny_lgg)[1]
    at.radio(key="patient_subset").set_value("all").run()
    at.selectbox(key="patient").set_value(patient.name).run()
    masks = np.stack([read_mask(s.mask_path) for s in patient.slices])
    probs = library_probabilities(segmentation_run / "best.pt",
                                  [read_slice_image(s.image_path) for s in patient.slices])
    numbers = [s.index for s in patient.slices]
    for threshold in (0.5, 0.3):
        at.slider(key="threshold").set_value(threshold).run()
        assert not at.exception and not at.error
        pred = np.stack(probs) >= threshold
        expected = patient_measures(pred, masks)
        shown = at.dataframe[1].value.set_index("Measure")["Value"].to_dict()
        assert list(shown) == [measure_label(key) for key in expected]
        for key, value in expected.items():
            assert shown[measure_label(key)] == ("undefined" if np.isnan(value) else f"{value:.4g}")
        matching = match_lesions(pred, masks)
        lesions = at.dataframe[2].value
        assert len(lesions) == len(matching.reference) + len(matching.predicted)
        statuses = list(lesions["Status"])
        assert statuses.count("missed") == expected["missed_lesions"]
        assert statuses.count("spurious") == expected["spurious_lesions"]
        widest = [numbers[lesion.widest_slice - 1] for lesion in (*matching.reference, *matching.predicted)]
        assert list(lesions["Widest slice"]) == widest
