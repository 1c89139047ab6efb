"""Checkpoints: atomic writes, plain-value payloads, refusal of anything else."""

from __future__ import annotations

import math
import os
import pickle
import stat
import warnings

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from PIL import Image

from medseg.cli.main import main
from medseg.config import Config
from medseg.engine import load_checkpoint, load_model, save_checkpoint
from medseg.engine.checkpoint import copy_checkpoint
from medseg.errors import CheckpointError


def _payload(**extra):
    cfg = Config()
    cfg.model.encoder = "resnet18"
    return {
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "config": cfg.to_dict(),
        "task": "segmentation",
        "epoch": 3,
        "metrics": {"val_dice": 0.5},
        "medseg_version": "0.1.0",
        "rng": [{"python": [3, [1, 2, 3], None]}],
        "betas": (0.9, 0.999),
        **extra,
    }


class WritesAFile:
    """Unpickling this would create ``target`` (if anything from the file were run)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_round_trip_loads_with_weights_only(tmp_path):
    path = save_checkpoint(_payload(), tmp_path / "sub" / "last.pt")
    raw = torch.load(path, weights_only=True)
    assert torch.equal(raw["model"]["w"], torch.arange(6.0).reshape(2, 3))
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["betas"] == (0.9, 0.999)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint(_payload(), tmp_path / "last.pt")
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot write it: disk full"):
        save_checkpoint(_payload(epoch=4), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_non_plain_values_are_rejected_before_writing(tmp_path):
    with pytest.raises(TypeError, match=r"payload\['extra'\] is a WritesAFile"):
        save_checkpoint(_payload(extra=WritesAFile(tmp_path / "x")), tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("writer", ["torch", "pickle2", "pickle5"])
def test_pickled_objects_are_refused_and_never_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = _payload(model=WritesAFile(marker))
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    assert not marker.exists()
    # protocol 5 stops at an opcode the safe unpickler does not know, before the object
    reason = ("not a readable checkpoint: a plain pickle \\(protocol 5\\)" if writer == "pickle5"
              else "refused: the file holds a pickled .*open object")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected pickle protocol" warning stays silent
        with pytest.raises(CheckpointError, match=rf"evil\.pt: {reason}"):
            load_checkpoint(path)
    assert not marker.exists()


class RunsAShellCommand:
    """Unpickling this would run ``touch target`` through os.system."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_blocked_global_is_named_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(_payload(model=RunsAShellCommand(marker)), tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=rf"evil\.pt: refused: the file holds a pickled "
                                              rf"{os.system.__module__}\.system object"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_a_plain_pickle_is_named_without_torch_s_warning(tmp_path, capsys, protocol):
    path = tmp_path / "model.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"model": {"w": [1.0, 2.0]}, "epoch": 3}, handle, protocol=protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
    assert str(err.value) == (f"{path}: not a readable checkpoint: a plain pickle (protocol {protocol}), "
                              "not a torch.save file as medseg train writes")
    assert capsys.readouterr().err == ""


def test_a_checkpoint_loads_after_its_encoder_weights_file_is_gone(tmp_path):
    from medseg.models import build_model

    weights = tmp_path / "resnet18_encoder.pt"
    torch.save(smp.encoders.get_encoder("resnet18", weights=None).state_dict(), weights)
    cfg = Config()
    cfg.model.encoder, cfg.model.encoder_weights = "resnet18", str(weights)
    model = build_model(cfg.model, cfg.task).eval()
    payload = _payload(model=model.state_dict(), config=cfg.to_dict())
    path = save_checkpoint(payload, tmp_path / "best.pt")
    weights.unlink()

    loaded = load_model(path)
    assert loaded.config.model.encoder_weights == str(weights)  # recorded as trained
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(images), model(images))


def test_missing_corrupt_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "best.pt").mkdir()
    with pytest.raises(CheckpointError, match=r"best\.pt: not a checkpoint file \(a folder"):
        load_checkpoint(tmp_path / "best.pt")
    good = save_checkpoint(_payload(), tmp_path / "good.pt").read_bytes()
    for name, data in (("truncated.pt", good[: len(good) // 2]), ("garbage.pt", b"not a checkpoint" * 8),
                       ("empty.pt", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"{name}: not a readable checkpoint"):
            load_checkpoint(tmp_path / name)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not a medseg checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_weights_that_do_not_fit_the_stored_model(tmp_path):
    path = save_checkpoint(_payload(), tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"odd\.pt: the weights do not fit unet/resnet18"):
        load_model(path)


def test_load_model_restores_weights_in_eval_mode(trained_lgg):
    loaded = load_model(trained_lgg.run_dir / "best.pt")
    state = load_checkpoint(trained_lgg.run_dir / "best.pt")["model"]
    assert not loaded.model.training and loaded.task == "segmentation"
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert loaded.metrics["val_dice"] == trained_lgg.best_metric


def test_a_mapped_checkpoint_is_neither_changed_nor_pinned_by_its_model(tmp_path):
    """load_model maps the file's tensors (copy-on-write): writing to the model leaves the
    file alone, and the next checkpoint can replace the file while the model lives."""
    cfg = Config()
    cfg.model.encoder = "resnet18"
    cfg.data.image_size = 32
    network = smp.Unet("resnet18", encoder_weights=None, classes=1)
    payload = {**_payload(), "model": network.state_dict(), "config": cfg.to_dict()}
    path = save_checkpoint(payload, tmp_path / "best.pt")
    loaded = load_model(path)
    weight = loaded.model.segmentation_head[0].weight
    original = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    stored = load_checkpoint(path)["model"]["segmentation_head.0.weight"]
    assert torch.equal(stored, original)  # the file still holds the saved weights
    save_checkpoint({**payload, "model": {k: v + 2 for k, v in payload["model"].items()}}, path)
    assert torch.equal(weight, original + 1)  # the live model kept its (changed) weights
    assert torch.equal(load_model(path).model.segmentation_head[0].weight, original + 2)


@pytest.mark.parametrize("content", [b"", b"\x80\x02garbage"])
def test_cli_turns_a_bad_checkpoint_into_exit_code_2(tmp_path, capsys, content, tiny_lgg):
    bad = tmp_path / "best.pt"
    bad.write_bytes(content)
    assert main(["evaluate", str(bad), "--data", str(tiny_lgg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medseg: error: ") and "best.pt" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_copy_survives_the_source_being_replaced(tmp_path):
    last = save_checkpoint(_payload(epoch=1), tmp_path / "last.pt")
    copy_checkpoint(last, tmp_path / "best.pt")
    save_checkpoint(_payload(epoch=2), last)
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert load_checkpoint(last)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_checkpoints_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        last = save_checkpoint(_payload(), tmp_path / "last.pt")
        best = copy_checkpoint(last, tmp_path / "best.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(last.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE(best.stat().st_mode) == 0o644


def test_copy_is_a_hard_link_where_possible_else_a_copy(tmp_path, monkeypatch):
    last = save_checkpoint(_payload(epoch=1), tmp_path / "last.pt")
    assert copy_checkpoint(last, tmp_path / "best.pt").stat().st_ino == last.stat().st_ino

    def no_links(source, target):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    copy = copy_checkpoint(last, tmp_path / "copy.pt")
    assert copy.stat().st_ino != last.stat().st_ino and copy.read_bytes() == last.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "copy.pt", "last.pt"]


def test_a_failed_copy_leaves_the_old_target_intact(tmp_path):
    best = save_checkpoint(_payload(epoch=1), tmp_path / "best.pt")
    before = best.read_bytes()
    with pytest.raises(CheckpointError, match=r"best\.pt: cannot copy .*missing\.pt to it: no such file"):
        copy_checkpoint(tmp_path / "missing.pt", best)
    assert best.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


# --- every field checked by type and range when loading ------------------------------------


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("model", 5, "must be a mapping of parameter names to tensors, got 5"),
    ("model", {"w": [1.0, 2.0]}, "must be a mapping of parameter names to tensors, got "
                                 "{'w': [1.0, 2.0]}"),
    ("config", [], "must be a mapping of config sections, got []"),
    ("task", 5, "must be one of 'segmentation', 'classification', got 5"),
    ("task", "detection", "must be one of 'segmentation', 'classification', got 'detection'"),
    ("epoch", "x", "must be a whole number >= 1, got 'x'"),
    ("epoch", True, "must be a whole number >= 1, got True"),
    ("epoch", 0, "must be a whole number >= 1, got 0"),
    ("metrics", 5, "must be a mapping of metric names to numbers, got 5"),
    ("metrics", {"val_dice": "high"}, "must be a mapping of metric names to numbers, got "
                                      "{'val_dice': 'high'}"),
    ("metrics", {"val_dice": None}, "must be a mapping of metric names to numbers, got "
                                    "{'val_dice': None}"),
    ("medseg_version", 1, "must be a string, got 1"),
], ids=lambda value: repr(value)[:30])
def test_a_field_of_the_wrong_type_is_refused_by_name(tmp_path, field, value, problem):
    path = save_checkpoint(_payload(**{field: value}), tmp_path / "best.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: checkpoint field '{field}' {problem}"


def test_metrics_of_the_wrong_type_exit_2_in_predict(trained_lgg, tmp_path, capsys):
    payload = load_checkpoint(trained_lgg.run_dir / "best.pt")
    bad = save_checkpoint({**payload, "metrics": 5}, tmp_path / "run" / "best.pt")
    image = tmp_path / "slice.png"
    Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(image)
    assert main(["predict", str(bad), str(image), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"medseg: error: {bad}: checkpoint field 'metrics' must be a "
                                       "mapping of metric names to numbers, got 5\n")


def _unet(dtype=torch.float32):
    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, classes=1).eval().to(dtype)


def _unet_payload(model):
    cfg = Config()
    cfg.model.encoder = "resnet18"
    cfg.data.image_size = 32
    return {**_payload(), "model": model.state_dict(), "config": cfg.to_dict()}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_cast_exactly_to_float32(tmp_path, dtype):
    stored = _unet(dtype)
    path = save_checkpoint(_unet_payload(stored), tmp_path / "best.pt")
    loaded = load_model(path)
    assert {t.dtype for t in loaded.model.parameters()} == {torch.float32}
    reference = _unet().eval()  # the stored values, widened: float32 holds each exactly
    reference.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in stored.state_dict().items()})
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(images), reference(images))


def test_float64_weights_are_refused_not_rounded(tmp_path):
    weights = {"a": torch.zeros(2), "b": torch.full((2,), 0.1, dtype=torch.float64)}
    path = save_checkpoint(_payload(model=weights), tmp_path / "best.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"{path}: checkpoint field 'model' holds b in float64; medseg models "
                              "are float32, which holds float16 and bfloat16 exactly but not "
                              "float64 (refused, not rounded): save the weights in float32")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_weight_is_refused(tmp_path, bad):
    weights = {"a": torch.zeros(3), "b.weight": torch.tensor([0.5, bad, 1.0])}
    path = save_checkpoint(_payload(model=weights), tmp_path / "best.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"{path}: checkpoint field 'model' holds a non-finite value in "
                              "b.weight; a non-finite model is refused, not scored")


def test_a_nan_model_exits_2_in_predict_instead_of_finding_no_lesion(trained_lgg, tmp_path, capsys):
    payload = load_checkpoint(trained_lgg.run_dir / "best.pt")
    nan = {key: torch.full_like(value, math.nan) if value.is_floating_point() else value
           for key, value in payload["model"].items()}
    bad = tmp_path / "run" / "best.pt"
    bad.parent.mkdir()
    torch.save({**payload, "model": nan}, bad)
    image = tmp_path / "slice.png"
    Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(image)
    assert main(["predict", str(bad), str(image), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"medseg: error: {bad}: checkpoint field 'model' holds a "
                                   "non-finite value in ")
    assert captured.err.endswith("; a non-finite model is refused, not scored\n")
    assert captured.err.count("\n") == 1 and "lesion" not in captured.out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
