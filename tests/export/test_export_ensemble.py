"""medseg export of a cross-validation folder: the mean of its folds' probabilities inside the
ONNX and TorchScript graphs, equal to the mean of each member checkpoint's own probabilities;
the record names the members; a bundle of an ensemble is refused in one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tifffile
import torch

from medseg.cli.main import main
from medseg.engine.checkpoint import load_model
from medseg.engine.inference import slice_probabilities
from medseg.errors import CheckpointError
from medseg.export.parity import PARITY_LIMIT
from medseg.export.run import ExportResult, export_checkpoint
from medseg.postprocessing import Postprocessing
from medseg.runs import CvFolder
from tests.ensemble_support import shifted_checkpoint, write_cv_folder
from tests.support import LGG_PATIENTS
from tests.support import one_thread as _one_thread

PATIENT = next(iter(LGG_PATIENTS))
STEP = Postprocessing(min_voxels=3)


@pytest.fixture(scope="module")
def cv_folder(best_checkpoint, module_tmp) -> Path:
    """A 2-fold CV folder: the tiny run's best.pt and a copy whose logits are 1.5 higher
    (members that predict differently), with a postprocessing record."""
    scratch = module_tmp
    shifted = shifted_checkpoint(best_checkpoint, scratch / "shifted.pt", 1.5)
    return write_cv_folder(module_tmp / "cv", [best_checkpoint, shifted], STEP)


@pytest.fixture(scope="module")
def onnx_ensemble(cv_folder, module_tmp) -> ExportResult:
    with _one_thread():
        return export_checkpoint(cv_folder, "onnx", module_tmp / "exports" / "onnx")


def _slices(tiny_lgg: Path) -> np.ndarray:
    folder = tiny_lgg / "kaggle_3m" / PATIENT
    return np.stack([tifffile.imread(folder / f"{PATIENT}_{k}.tif") for k in range(1, 5)])


def _members_mean(cv_folder: Path, slices: np.ndarray) -> np.ndarray:
    """The mean of each fold member's probabilities, each computed from its own checkpoint."""
    cv = CvFolder(cv_folder)
    probs = []
    for k in range(2):
        loaded = load_model(cv.member_checkpoint(k))
        probs.append(slice_probabilities(loaded.model, slices, loaded.config.data.image_size))
    assert np.max(np.abs(probs[0] - probs[1])) > 0.05  # the members differ: a mean is not a member
    return np.mean(probs, axis=0)


def test_the_onnx_graph_holds_the_mean_of_the_folds(onnx_ensemble, cv_folder, tiny_lgg):
    assert onnx_ensemble.parity is not None and onnx_ensemble.parity.max_abs_diff <= PARITY_LIMIT
    slices = _slices(tiny_lgg)[:, 5:58, :61]  # neither square nor the training size
    session = ort.InferenceSession(str(onnx_ensemble.out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": np.ascontiguousarray(slices.transpose(0, 3, 1, 2), np.float32)})[0]
    assert got.shape == (4, 1, 53, 61)
    assert np.max(np.abs(got[:, 0] - _members_mean(cv_folder, slices))) <= 1e-4


def test_the_torchscript_module_holds_the_mean_of_the_folds(cv_folder, tiny_lgg, tmp_path):
    with _one_thread():
        result = export_checkpoint(cv_folder, "torchscript", tmp_path / "ts")
    module = torch.jit.load(str(result.out / "model.ts"))
    slices = _slices(tiny_lgg)
    with torch.no_grad():
        got = module(torch.from_numpy(slices).permute(0, 3, 1, 2).float())[:, 0].numpy()
    assert np.max(np.abs(got - _members_mean(cv_folder, slices))) <= 1e-4


def test_the_record_names_the_members_and_the_postprocessing(onnx_ensemble, cv_folder):
    record = json.loads((onnx_ensemble.out / "export.json").read_text())
    cv = CvFolder(cv_folder)
    members = [cv.member_checkpoint(k) for k in range(2)]
    assert record["checkpoint"] == str(cv_folder) and record["checkpoint_sha256"] is None
    assert [m["checkpoint"] for m in record["members"]] == [str(p) for p in members]
    assert [m["sha256"] for m in record["members"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in members]
    assert record["ensemble"] == "mean of the members' probabilities"
    assert record["postprocessing"] == {"min_voxels": 3, "keep_largest": False}
    assert record["postprocessing_file"] == str(cv.postprocessing_file)
    assert record["task"] == "segmentation" and record["image_size"] == 32


def test_a_bundle_of_a_cv_folder_is_refused_in_one_line(cv_folder, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="a MONAI bundle holds one network"):
        export_checkpoint(cv_folder, "bundle", tmp_path / "bundle")
    assert main(["export", str(cv_folder), "--format", "bundle", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medseg: error: ") and "\n" not in err and "--format onnx" in err
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "b").exists()


def test_a_folder_that_is_not_a_cv_folder_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="not a cross-validation folder"):
        export_checkpoint(tmp_path / "plain", "onnx", tmp_path / "out")
