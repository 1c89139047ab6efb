"""medseg export: each format is read back by a client that is not medseg (ONNX Runtime,
torch.jit, MONAI's bundle runner) and agrees with the checkpoint's probabilities and masks;
bad exports and occupied folders are refused in one line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tifffile
import torch

from medseg.cli.main import main
from medseg.engine.checkpoint import load_model
from medseg.engine.inference import slice_probabilities
from medseg.errors import CheckpointError, DataError, MedsegError
from medseg.export import run as export_run
from medseg.export.parity import PARITY_LIMIT, check_parity
from medseg.export.run import export_checkpoint
from medseg.locks import LOCK_NAME
from medseg.predict.exported import OnnxSegmenter
from medseg.predict.run import predict_paths
from tests.locking import held_by_another_process
from tests.support import LGG_PATIENTS

PATIENT = next(iter(LGG_PATIENTS))


def _slices(tiny_lgg: Path) -> np.ndarray:
    """The 4 (64, 64, 3) uint8 slices of one patient, read with tifffile (not medseg)."""
    folder = tiny_lgg / "kaggle_3m" / PATIENT
    return np.stack([tifffile.imread(folder / f"{PATIENT}_{k}.tif") for k in range(1, 5)])


def _odd_sized(tiny_lgg: Path) -> np.ndarray:
    """The slices cropped to 50 x 61: neither square nor the training size (32)."""
    return np.ascontiguousarray(_slices(tiny_lgg)[:, 7:57, :61])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("medseg: error: ") and "\n" not in err, err
    return err


def test_onnx_runs_in_onnx_runtime_like_the_checkpoint(onnx_export, best_checkpoint, tiny_lgg):
    model_file = onnx_export.out / "model.onnx"
    assert onnx_export.parity is not None and onnx_export.parity.max_abs_diff <= PARITY_LIMIT
    loaded = load_model(best_checkpoint)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    for slices in (_slices(tiny_lgg), _odd_sized(tiny_lgg)):
        expected = slice_probabilities(loaded.model, slices, loaded.config.data.image_size)
        got = session.run(None, {"image": slices.transpose(0, 3, 1, 2).astype(np.float32)})[0]
        assert got.shape == (len(slices), 1, *slices.shape[1:3])
        assert np.max(np.abs(got[:, 0] - expected)) <= 1e-4
    proto = onnx.load(str(model_file))
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    assert meta["medseg.task"] == "segmentation" and meta["medseg.image_size"] == "32"
    assert proto.opset_import[0].version >= 17
    shape = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in shape] == ["batch", 3, "height", "width"]


def test_the_record_lists_every_file_and_the_parity(onnx_export, bundle_export, best_checkpoint):
    import hashlib

    for result in (onnx_export, bundle_export):
        record = json.loads((result.out / "export.json").read_text())
        files = sorted(p.relative_to(result.out).as_posix() for p in result.out.rglob("*")
                       if p.is_file() and p.name != "export.json")
        assert sorted(record["files"]) == files
        for name, digest in record["files"].items():
            assert hashlib.sha256((result.out / name).read_bytes()).hexdigest() == digest
        assert record["checkpoint_sha256"] == hashlib.sha256(best_checkpoint.read_bytes()).hexdigest()
        assert record["parity"]["max_abs_diff"] <= record["parity"]["limit"] == 1e-4
        assert record["parity"]["random_slices"] == 4 and record["parity"]["real_slices"] == 4


def test_the_cli_states_the_parity_and_refuses_an_occupied_folder(best_checkpoint, onnx_export,
                                                                  tmp_path, capsys):
    out = tmp_path / "ts"
    assert main(["export", str(best_checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity: TorchScript vs PyTorch eager: max |Δp|" in printed and "(limit 1e-04)" in printed
    before = (out / "model.ts").read_bytes()
    assert main(["export", str(best_checkpoint), "--format", "torchscript", "--out", str(out)]) == 2
    assert "already holds an export (export.json)" in _one_line_error(capsys)
    assert (out / "model.ts").read_bytes() == before
    assert main(["export", str(best_checkpoint), "--format", "onnx", "--out", str(onnx_export.out)]) == 2
    assert "never overwritten" in _one_line_error(capsys)
    assert main(["export", str(best_checkpoint.parent), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "not a cross-validation folder (no folds.json)" in _one_line_error(capsys)


def test_torchscript_loads_with_torch_alone(torchscript_export, best_checkpoint, tiny_lgg):
    module = torch.jit.load(str(torchscript_export.out / "model.ts"))
    loaded = load_model(best_checkpoint)
    for slices in (_slices(tiny_lgg), _odd_sized(tiny_lgg)):
        expected = slice_probabilities(loaded.model, slices, loaded.config.data.image_size)
        with torch.no_grad():
            got = module(torch.from_numpy(slices).permute(0, 3, 1, 2).float())[:, 0].numpy()
        assert np.max(np.abs(got - expected)) <= 1e-4


def test_an_export_that_differs_is_not_kept(best_checkpoint, tmp_path, monkeypatch):
    real_write = export_run.write_onnx

    def write_perturbed(model, path, metadata):
        perturbed = copy.deepcopy(model)  # the checkpoint's network itself stays the reference
        with torch.no_grad():
            perturbed.probability.network.segmentation_head[0].bias += 0.05
        real_write(perturbed, path, metadata)

    monkeypatch.setattr(export_run, "write_onnx", write_perturbed)
    with pytest.raises(CheckpointError, match="differs from the checkpoint"):
        export_checkpoint(best_checkpoint, "onnx", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing kept: not even the folder it created


def test_parity_fails_beyond_the_limit(best_checkpoint):
    loaded = load_model(best_checkpoint)
    size = loaded.config.data.image_size

    def shifted(stack):
        return slice_probabilities(loaded.model, stack, size) + 2e-4

    with pytest.raises(CheckpointError, match=r"max \|Δp\| 2\.0e-04"):
        check_parity(shifted, loaded.model, size, "shifted")
    assert check_parity(lambda s: slice_probabilities(loaded.model, s, size), loaded.model, size,
                        "itself").max_abs_diff == 0.0


def test_corrupt_changed_and_foreign_onnx_models_are_refused(onnx_export, tmp_path):
    data = (onnx_export.out / "model.onnx").read_bytes()
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "export.json").write_bytes((onnx_export.out / "export.json").read_bytes())
    (changed / "model.onnx").write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="does not match its export record") as err:
        OnnxSegmenter.load(changed)
    assert "\n" not in str(err.value)

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable ONNX model") as err:
        OnnxSegmenter.load(truncated)
    assert "\n" not in str(err.value)

    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 1, 3), (torch.zeros(1, 3, 8, 8),), str(foreign),
                      dynamo=False, input_names=["image"], output_names=["probability"])
    with pytest.raises(CheckpointError, match="not a medseg segmentation export"):
        OnnxSegmenter.load(foreign)


def _volume(tiny_lgg: Path, path: Path) -> Path:
    """One patient's slices as a 4-D NIfTI volume (x, y, z, 3), stored left-right flipped and
    with slices along z, so only the right reorientation gives medseg's view."""
    slices = _slices(tiny_lgg)  # (z, rows, cols, 3)
    data = slices.transpose(2, 1, 0, 3)[::-1]  # x = columns (flipped), y = rows, z = slices
    affine = np.diag([-1.0, -1.0, 2.5, 1.0])
    affine[:3, 3] = [12.0, -30.0, 4.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), path)
    return path


def test_monai_runs_the_bundle_to_predict_s_mask(bundle_export, best_checkpoint, tiny_lgg, tmp_path):
    volume = _volume(tiny_lgg, tmp_path / "volumes" / "case.nii.gz")
    records = predict_paths(best_checkpoint, [volume], tmp_path / "predict", device="cpu")
    expected = np.asarray(nib.load(tmp_path / "predict" / "case_pred.nii.gz").dataobj)
    assert 0 < expected.sum() < expected.size and records[0].tumour_pixels == expected.sum()

    bundle = bundle_export.out
    command = [sys.executable, "-m", "monai.bundle", "run",
               "--config_file", str(bundle / "configs" / "inference.json"),
               "--meta_file", str(bundle / "configs" / "metadata.json"),
               "--bundle_root", str(bundle), "--dataset_dir", str(volume.parent),
               "--output_dir", str(tmp_path / "monai")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    written = nib.load(tmp_path / "monai" / "case_seg.nii.gz")
    assert np.allclose(written.affine, nib.load(volume).affine)
    assert np.array_equal(np.asarray(written.dataobj).reshape(expected.shape), expected)


def test_the_bundle_describes_its_network(bundle_export, best_checkpoint):
    meta = json.loads((bundle_export.out / "configs" / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["channel_def"] == {"0": "pre-contrast T1", "1": "FLAIR", "2": "post-contrast T1"}
    assert image["value_range"] == [0, 255] and image["spatial_shape"] == [32, 32]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "tumour"}
    assert meta["threshold"] == 0.5 and meta["intended_use"].startswith("Research use only")
    stored = load_model(best_checkpoint).metrics
    assert meta["eval_metrics"] == pytest.approx({key: stored[f"val_{key}"] for key in
                                                  ("dice", "iou", "patient_dice", "empty_fp_rate")})
    assert any("Buda" in ref for ref in meta["references"])
    inference = json.loads((bundle_export.out / "configs" / "inference.json").read_text())
    assert inference["network_def"]["_target_"] == "segmentation_models_pytorch.Unet"
    weights = torch.load(bundle_export.out / "models" / "model.pt", weights_only=True)
    assert weights.keys() == load_model(best_checkpoint).model.state_dict().keys()
    card = (bundle_export.out / "docs" / "README.md").read_text()
    assert "Research use only" in card and "## Limits" in card


def test_an_unknown_format_and_a_file_as_out_are_refused(best_checkpoint, tmp_path):
    with pytest.raises(DataError, match="unknown"):
        export_checkpoint(best_checkpoint, "tflite", tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="not a folder"):
        export_checkpoint(best_checkpoint, "onnx", tmp_path / "file")


def test_an_export_folder_another_medseg_process_writes_is_refused(best_checkpoint, tmp_path):
    out = tmp_path / "export"
    with held_by_another_process(out):
        with pytest.raises(MedsegError, match=r"export: in use by another medseg process"):
            export_checkpoint(best_checkpoint, "onnx", out)
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # the holder's lock, nothing else
