"""The Streamlit page driven through ``streamlit.testing.v1.AppTest`` over tiny trained runs.

Every score the page shows is checked against the library computed directly: probabilities
from ``load_model`` + ``preprocess_image`` + ``predict_probabilities``, then
``dice_score`` / ``iou_score`` / ``ClassificationMeter``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from medseg.data import list_patients, preprocess_image, read_mask, read_slice_image
from medseg.engine import load_model, predict_probabilities
from medseg.metrics import ClassificationMeter, dice_score, iou_score
from tests.app.page_driver import plain, png_bytes, start

pytestmark = pytest.mark.slow


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


def test_case_browser_scores_match_the_library(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert not at.error
    assert at.selectbox(key="run").value == segmentation_run.name
    patient = list_patients(tiny_lgg)[1]
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
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    item = list_patients(tiny_lgg)[2].slices[-1]
    image, mask = read_slice_image(item.image_path), read_mask(item.mask_path)
    at.file_uploader(key="upload_image").set_value(("scan.png", png_bytes(image), "image/png"))
    at.file_uploader(key="upload_mask").set_value(("scan_mask.png", png_bytes(mask * 255),
                                                   "image/png"))
    at.run()
    assert not at.exception and not at.error
    pred = library_probabilities(segmentation_run / "best.pt", [image])[0] >= 0.5
    shown = shown_metrics(at)
    # the case browser's metrics come first; the upload tab's follow
    upload_metrics = at.metric[6:]
    assert upload_metrics[0].label == "Slice Dice"
    assert upload_metrics[0].value == f"{dice_score(pred, mask):.3f}"
    assert "Image Dice (3-D)" in shown
    download = at.get("download_button")
    assert download, "a download button for the predicted mask"


def test_upload_grey_slice_without_mask(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    item = list_patients(tiny_lgg)[0].slices[2]
    grey = read_slice_image(item.image_path)[..., 1]
    at.file_uploader(key="upload_image").set_value(("flair.png", png_bytes(grey), "image/png"))
    at.run()
    assert not at.exception and not at.error
    image = np.repeat(grey[..., None], 3, axis=2)
    pred = library_probabilities(segmentation_run / "best.pt", [image])[0] >= 0.5
    [area] = [m for m in at.metric[6:] if m.label == "Model area (px)"]
    assert area.value == str(int(pred.sum()))
    assert "Slice Dice" not in [m.label for m in at.metric[6:]]  # nothing to score against
    assert "Predicted tumour" in " ".join(m.value for m in at.markdown)


def test_bad_uploads_show_errors_not_tracebacks(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    cases = [
        (("scan.png", b"\x89PNG\r\n\x1a\n garbage", "image/png"), None, "scan.png: cannot read PNG"),
        (("notes.txt", b"hello", "text/plain"), None, "notes.txt: unsupported file type"),
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
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
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
    assert not at.exception and not at.error, [e.value for e in at.error]
    upload_metrics = {m.label: m.value for m in at.metric[6:]}
    assert "Volume Dice (3-D)" in upload_metrics
    # 0.5 mm x 0.5 mm pixels: areas in mm², from the header
    assert upload_metrics["Expert area (mm²)"] == "100"
    slider = next(s for s in at.select_slider if s.label == "Axial slice")
    assert slider.options == ["1", "2", "3"]
    assert slider.value == 2  # the first slice with the largest expert tumour
    slider.set_value(1).run()  # inferior-most axial slice: no tumour in the mask volume
    assert {m.label: m.value for m in at.metric[6:]}["Expert area (mm²)"] == "0"


def test_pcam_mode_scores_match_the_library(monkeypatch, classification_run, tiny_pcam):
    import h5py

    at = start(monkeypatch, classification_run.parent, pcam=tiny_pcam)
    assert not at.error, [e.value for e in at.error]
    at.slider(key="pcam_count").set_value(16).run()
    with h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_x.h5") as f:
        patches = f["x"][:16]
    with h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_y.h5") as f:
        labels = f["y"][:16].reshape(-1)
    loaded = load_model(classification_run / "best.pt")
    from medseg.data import pcam_transforms
    from medseg.data.pcam import LoadPCamPatchd

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


def test_threshold_and_slice_changes_do_not_run_the_model_again(
        monkeypatch, segmentation_run, tiny_lgg):
    import medseg.app.streamlit_app as page

    calls = []
    original = page.slice_probabilities

    def counting(model, images, image_size):
        calls.append(len(images))
        return original(model, images, image_size)

    monkeypatch.setattr(page, "slice_probabilities", counting)
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert sum(calls) == 4  # the first patient's 4 slices, once
    patient = list_patients(tiny_lgg)[0]
    at.slider(key="threshold").set_value(0.2).run()
    at.select_slider(key=f"slice:{tiny_lgg}:{patient.name}").set_value(1).run()
    at.radio(key="sequence").set_value("RGB composite").run()
    assert sum(calls) == 4
    at.selectbox(key="patient").set_value(list_patients(tiny_lgg)[3].name).run()
    assert sum(calls) == 8  # a new patient: its slices, once
    assert not at.exception
