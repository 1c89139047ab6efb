"""The page opens what is not a run folder as one model: an ONNX export, a MONAI bundle, a
cross-validation folder (the ensemble of its folds, with flip TTA and its postprocessing).
Every score shown is checked against the model run by its own client (ONNX Runtime,
torch.jit) or against ``medseg evaluate``; a changed or corrupt export is one line on the page.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.app.scoring import read_patient_slices
from medseg.data.lgg import list_patients
from medseg.engine.ensemble import load_ensemble
from medseg.engine.evaluation import evaluate
from medseg.engine.inference import slice_probabilities
from medseg.export.run import export_checkpoint
from medseg.metrics import dice_score
from medseg.postprocessing import Postprocessing
from tests.app.page_driver import open_view, record_pictures, start
from tests.ensemble_support import shifted_checkpoint, write_cv_folder
from tests.support import one_thread

pytestmark = pytest.mark.slow
STEP = Postprocessing(min_voxels=12)


@pytest.fixture(scope="module")
def exports(segmentation_run, module_tmp) -> dict[str, Path]:
    """An ONNX export and a bundle of the tiny run's best.pt, each alone in a models folder."""
    root = module_tmp / "export_models"
    with one_thread():
        return {fmt: export_checkpoint(segmentation_run / "best.pt", fmt, root / fmt / f"demo_{fmt}").out
                for fmt in ("onnx", "bundle")}


@pytest.fixture(scope="module")
def cv_folder(segmentation_run, module_tmp) -> Path:
    """A 2-fold CV folder (the run's best.pt and a copy with logits 1.0 lower) with the
    run's config and a postprocessing record, alone in a models folder."""
    scratch = module_tmp
    best = segmentation_run / "best.pt"
    shifted = shifted_checkpoint(best, scratch / "shifted.pt", -1.0)
    folder = write_cv_folder(module_tmp / "cv_models" / "cv", [best, shifted], STEP)
    shutil.copyfile(segmentation_run / "config.yaml", folder / "config.yaml")
    return folder


def cohort_table(at, subset: str = "all"):
    """The Cohort view's table over ``subset``, as the page shows it."""
    at = open_view(at, "Cohort")
    at.radio(key="cohort_subset").set_value(subset).run()
    assert not at.exception, [e.value for e in at.exception]
    return at.dataframe[0].value.set_index("Patient")


def library_scores(tiny_lgg: Path, probabilities, step: Postprocessing | None = None) -> dict:
    """Each patient's 3-D Dice and model pixels at 0.5, from ``probabilities`` (slices ->
    (N, H, W)), the mask postprocessed by ``step`` when given."""
    scores = {}
    for patient in list_patients(tiny_lgg):
        case = read_patient_slices(patient)
        mask = (probabilities(case.images) >= 0.5).astype(np.uint8)
        if step is not None:
            mask = step.apply(mask)
        scores[patient.name] = (dice_score(mask, case.masks), int(mask.sum()))
    return scores


def assert_table_shows(table, scores: dict) -> None:
    assert set(table.index) == set(scores)
    for name, (dice, pixels) in scores.items():
        assert table.loc[name, "Dice (3-D)"] == pytest.approx(dice, abs=1e-6)
        assert table.loc[name, "Model px"] == pixels


def sidebar_text(at) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown).replace("\\", "")


def test_an_onnx_export_is_reviewed_through_onnx_runtime(monkeypatch, exports, tiny_lgg, segmentation_run):
    from medseg.predict.exported import OnnxSegmenter

    folder = exports["onnx"]
    at = start(monkeypatch, folder.parent, lgg=tiny_lgg)
    assert not at.error
    assert any(f"Export `{folder.name}` (onnx), `model.onnx`" in c.value for c in at.caption)
    card = sidebar_text(at)
    assert "Export:** ONNX (ONNX Runtime)" in card and "Threshold:** 0.5" in card
    assert f"Source:** {segmentation_run / 'best.pt'}, epoch" in card
    assert "Training size:** 32 px" in card and "vs PyTorch eager: max |Δp|" in card
    assert at.radio(key="patient_subset").value == "test"  # the source run's split
    engine = OnnxSegmenter.load(folder)
    assert_table_shows(cohort_table(at), library_scores(tiny_lgg, engine.probabilities))
    assert list((folder / "app_cache").glob("cohort-onnx-tta_none-raw-*.json"))


def test_a_bundle_is_reviewed_through_its_torchscript_network(monkeypatch, exports, tiny_lgg):
    folder = exports["bundle"]
    at = start(monkeypatch, folder.parent, lgg=tiny_lgg)
    assert not at.error
    assert any(f"Export `{folder.name}` (bundle), `models/model.ts`" in c.value for c in at.caption)
    assert "Export:** MONAI bundle" in sidebar_text(at)
    network = torch.jit.load(str(folder / "models" / "model.ts"))
    scores = library_scores(tiny_lgg, lambda slices: slice_probabilities(network, slices, 32))
    assert_table_shows(cohort_table(at), scores)


def test_changed_corrupt_and_foreign_exports_are_one_line_on_the_page(monkeypatch, exports, tiny_lgg,
                                                                      tmp_path):
    changed = shutil.copytree(exports["onnx"], tmp_path / "changed" / "onnx")
    with open(changed / "model.onnx", "ab") as file:
        file.write(b"\0")
    bundle = shutil.copytree(exports["bundle"], tmp_path / "bundle" / "bundle")
    (bundle / "configs" / "metadata.json").write_text("{not json")
    network = shutil.copytree(exports["bundle"], tmp_path / "network" / "bundle")
    with open(network / "models" / "model.ts", "ab") as file:
        file.write(b"\0")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "scan.onnx").write_bytes(b"not a model")
    cases = {changed.parent: "does not match its export record export.json (changed after export)",
             bundle.parent: "metadata.json: not a medseg bundle's metadata",
             network.parent: "model.ts: does not match its export record export.json",
             bare: "scan.onnx: not a readable ONNX model (corrupt, truncated or not ONNX)"}
    for models, message in cases.items():
        at = start(monkeypatch, models, lgg=tiny_lgg)
        [error] = at.error
        assert message in error.value.replace("\\", "") and "\n" not in error.value


def test_an_export_record_of_another_format_is_a_card_problem(monkeypatch, exports, tiny_lgg, tmp_path):
    folder = shutil.copytree(exports["onnx"], tmp_path / "models" / "odd")
    record = (folder / "export.json").read_text().replace('"format": "onnx"', '"format": "tflite"')
    (folder / "export.json").write_text(record)
    at = start(monkeypatch, folder.parent, lgg=tiny_lgg)
    assert any("unknown format 'tflite'" in w.value.replace("\\", "") for w in at.sidebar.warning)
    assert "no checkpoint file" in at.error[0].value


def test_a_cv_folder_is_one_model_with_tta_and_its_postprocessing(monkeypatch, cv_folder, tiny_lgg):
    at = start(monkeypatch, cv_folder.parent, lgg=tiny_lgg)
    at.selectbox(key="run").set_value("cv").run()
    caption = next(c.value for c in at.caption if c.value.startswith("Ensemble"))
    assert "mean of 2 members (`fold_0/last.pt`, `fold_1/last.pt`); TTA: none" in caption
    assert "postprocessing: remove lesions under 12 voxels, mask shown postprocessed" in caption
    assert "Postprocessing:** remove lesions under 12 voxels" in sidebar_text(at)
    ensemble = load_ensemble([cv_folder])
    plain, mirrored = ensemble.probability_model("none"), ensemble.probability_model("flip")
    post = library_scores(tiny_lgg, lambda s: slice_probabilities(plain, s, 32), STEP)
    raw = library_scores(tiny_lgg, lambda s: slice_probabilities(plain, s, 32))
    assert post != raw  # the step removes lesions here: the toggle has something to show
    assert_table_shows(cohort_table(at), post)

    at.toggle(key="postprocess").set_value(False).run()  # the raw mask
    assert_table_shows(cohort_table(at), raw)
    at.radio(key="tta").set_value("flip").run()
    assert any("TTA: flip (mean of 2 passes: as is, left-right)" in c.value for c in at.caption)
    table = cohort_table(at)
    assert_table_shows(table, library_scores(tiny_lgg, lambda s: slice_probabilities(mirrored, s, 32)))
    with one_thread():  # one number, one place: medseg evaluate's per-patient Dice
        result = evaluate(cv_folder, tiny_lgg, split="all", tta="flip", postprocess=False, device="cpu")
    for name, row in result["per_patient_measures"].items():
        assert table.loc[name, "Dice (3-D)"] == pytest.approx(row["dice"], abs=1e-6)

    at.toggle(key="postprocess").set_value(True).run()  # flip and postprocessing compose
    table = cohort_table(at)
    assert_table_shows(table, library_scores(tiny_lgg, lambda s: slice_probabilities(mirrored, s, 32), STEP))
    with one_thread():
        result = evaluate(cv_folder, tiny_lgg, split="all", tta="flip", postprocess=True, device="cpu")
    assert result["postprocessing"] == STEP.to_dict()
    for name, row in result["per_patient_measures"].items():
        assert table.loc[name, "Dice (3-D)"] == pytest.approx(row["dice"], abs=1e-6)
    caches = sorted(p.name.split("-")[1:4] for p in (cv_folder / "app_cache").glob("cohort-*.json"))
    assert caches == [["cv", "tta_flip", "post"], ["cv", "tta_flip", "raw"],
                      ["cv", "tta_none", "post"], ["cv", "tta_none", "raw"]]


def test_an_upload_to_a_cv_folder_is_postprocessed_like_the_cases(monkeypatch, cv_folder, tiny_lgg,
                                                                   tmp_path):
    import nibabel as nib

    from medseg.imaging.nifti import load_volume
    from tests.app.page_driver import record_downloads

    plain = load_ensemble([cv_folder]).probability_model("none")
    voxels = {}
    for patient in list_patients(tiny_lgg):  # a patient whose mask the step changes
        images = read_patient_slices(patient).images
        path = tmp_path / f"{patient.name}.nii.gz"
        nib.save(nib.Nifti1Image(images.transpose(2, 1, 0, 3), np.diag([1.0, 1.0, 3.0, 1.0])), path)
        mask = (slice_probabilities(plain, load_volume(path).slices, 32) >= 0.5).astype(np.uint8)
        voxels = {"post": int(STEP.apply(mask).sum()), "raw": int(mask.sum())}
        if voxels["post"] != voxels["raw"]:
            break
    assert voxels["post"] != voxels["raw"]
    at = start(monkeypatch, cv_folder.parent, lgg=tiny_lgg, view="Upload a scan")
    at.selectbox(key="run").set_value("cv").run()
    downloads = record_downloads(monkeypatch)
    at.file_uploader(key="upload_image").set_value((path.name, path.read_bytes(), "application/gzip"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    stem = path.name.removesuffix(".nii.gz")
    for shown in ("post", "raw"):
        report = json.loads(downloads[f"{stem}_pred.json"]())
        assert report["tumour_voxels"] == voxels[shown], shown
        at.toggle(key="postprocess").set_value(False).run()
    # the probability map shows the model's own probabilities, not the postprocessed 0/1 mask
    pictures = record_pictures(monkeypatch)
    at.radio(key="large_view").set_value("probability").run()
    raw_map = pictures[0][1]
    pictures.clear()
    at.toggle(key="postprocess").set_value(True).run()
    assert not at.exception
    assert pictures[0][1] == raw_map
