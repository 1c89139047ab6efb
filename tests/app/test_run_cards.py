"""Run discovery and run cards, from run folders written in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medseg.app.run_cards import find_runs, read_run
from medseg.config import config_from_dict, save_config
from medseg.data.folds import Folds, save_folds
from medseg.errors import MedsegError
from tests.imaging.hostile import fifo, no_hang


def write_run(folder, *, checkpoints=("best.pt", "last.pt"), mtime=None, epochs=3):
    folder.mkdir(parents=True)
    cfg = config_from_dict({"data": {"root": "demo_data/lgg", "image_size": 128},
                            "model": {"encoder": "resnet18"}, "train": {"epochs": epochs}})
    save_config(cfg, folder / "config.yaml")
    (folder / "history.csv").write_text(
        "epoch,train_loss,val_dice,val_iou,val_n_slices,lr\n"
        "1,0.9,0.50,0.40,30,0.001\n"
        "2,0.7,0.625,0.5,30,0.0005\n"
    )
    (folder / "metrics.json").write_text(json.dumps(
        {"split": "test", "checkpoint": "best.pt", "epoch": 1, "n": 30, "dice": 0.75, "patient_dice": 0.8,
         "per_patient": {"A": 0.8}}))
    for name in checkpoints:
        (folder / name).write_bytes(b"weights")
        if mtime is not None:
            os.utime(folder / name, (mtime, mtime))
    return folder


def test_card_reads_config_history_and_metrics(tmp_path):
    card = read_run(write_run(tmp_path / "lgg_run"))
    assert card.task == "segmentation"
    assert card.checkpoint.name == "best.pt"
    assert card.epochs_done == 2
    assert card.validation_metrics == {"dice": 0.625, "iou": 0.5}  # last epoch, no counts
    assert card.test_metrics == {"dice": 0.75, "patient_dice": 0.8}
    rows = dict(card.summary_rows())
    assert rows["Model"] == "unet / resnet18"
    assert rows["Optimizer"] == "adam+znorm, lr 0.001"
    assert rows["Data"] == "demo_data/lgg (lgg, 128 px)"
    assert rows["Epochs"] == "2 of 3"
    assert rows["Validation (epoch 2, the last)"] == "Dice 0.625, IoU 0.500"
    assert rows["Test"] == "Dice 0.750, patient Dice 0.800"
    assert not card.problems


def test_card_of_a_chosen_checkpoint_shows_its_own_epoch_and_metrics(tmp_path):
    card = read_run(write_run(tmp_path / "lgg_run"))
    assert card.scored == "best.pt"
    best = dict(card.summary_rows("best.pt", 1))  # best.pt saved at epoch 1
    assert best["Checkpoint"] == "best.pt, epoch 1"
    assert best["Validation (epoch 1)"] == "Dice 0.500, IoU 0.400"
    assert best["Test"] == "Dice 0.750, patient Dice 0.800"  # metrics.json scores best.pt
    last = dict(card.summary_rows("last.pt", 2))
    assert last["Validation (epoch 2)"] == "Dice 0.625, IoU 0.500"
    assert last["Test"] == "not scored for last.pt (metrics.json scores best.pt)"
    assert "Validation (epoch 7)" not in dict(card.summary_rows("best.pt", 7))  # not in the history


def test_last_checkpoint_alone_and_broken_side_files(tmp_path):
    folder = write_run(tmp_path / "run", checkpoints=("last.pt",))
    (folder / "metrics.json").write_text("{not json")
    (folder / "config.yaml").write_text("model: {arch: 7}\n")
    card = read_run(folder)
    assert card.checkpoint.name == "last.pt"
    assert card.config is None and card.test_metrics == {}
    assert any("metrics.json is not valid JSON" in p for p in card.problems)
    assert any("model.arch" in p for p in card.problems)
    assert dict(card.summary_rows())["Epochs"] == "2"


def test_folder_without_checkpoint_is_not_a_run(tmp_path):
    write_run(tmp_path / "models" / "empty", checkpoints=())
    with pytest.raises(MedsegError, match=r"no best\.pt or last\.pt"):
        read_run(tmp_path / "models" / "empty")
    assert find_runs(tmp_path / "models") == []
    assert find_runs(tmp_path / "missing") == []


def test_find_runs_nested_and_newest_first(tmp_path):
    models = tmp_path / "models"
    write_run(models / "old", mtime=1_000_000)
    write_run(models / "compare" / "adam_seed0", mtime=3_000_000)
    write_run(models / "new", mtime=2_000_000)
    write_run(models / "a" / "b" / "c" / "too_deep", mtime=4_000_000)
    assert [run.name for run in find_runs(models)] == ["compare/adam_seed0", "new", "old"]
    assert [run.name for run in find_runs(models / "new")] == ["new"]  # a run folder itself


def test_a_checkpoint_must_be_a_regular_file(tmp_path):
    models = tmp_path / "models"
    write_run(models / "folder_and_file", checkpoints=("last.pt",))
    (models / "folder_and_file" / "best.pt").mkdir()
    write_run(models / "folder_only", checkpoints=())
    (models / "folder_only" / "best.pt").mkdir()
    write_run(models / "fifo", checkpoints=())
    os.mkfifo(models / "fifo" / "best.pt")

    runs = {run.name: run for run in find_runs(models)}
    assert set(runs) == {"folder_and_file", "folder_only", "fifo"}
    assert [p.name for p in runs["folder_and_file"].checkpoints] == ["last.pt"]
    assert runs["folder_and_file"].problems == ("best.pt is not a regular file",)
    for name in ("folder_only", "fifo"):
        run = runs[name]
        assert run.checkpoints == () and run.checkpoint is None and run.created is None
        assert run.problems == ("best.pt is not a regular file",)
        assert dict(run.summary_rows())["Date"] == "unknown"
    assert list(runs) == ["folder_and_file", "fifo", "folder_only"]  # no date: listed last


def test_odd_side_files_become_problems(tmp_path):
    cases = {
        "binary_config": ("config.yaml", b"\xff\xfe\x00\x81 yaml?"),
        "deep_config": ("config.yaml", b"a: " + b"[" * 5000 + b"]" * 5000),
        "long_number_config": ("config.yaml", b"train: {epochs: " + b"9" * 5000 + b"}"),
        "huge_config": ("config.yaml", b"#" * (2 * 2**20 + 1)),
        "deep_metrics": ("metrics.json", b"[" * 100_000 + b"]" * 100_000),
        "long_number_metrics": ("metrics.json", b'{"dice": ' + b"9" * 5000 + b"}"),
        "binary_history": ("history.csv", bytes(range(256)) * 4),
        "nul_history": ("history.csv", b"epoch,val_dice\n1,\x000.5\n"),
    }
    models = tmp_path / "models"
    for name, (file, content) in cases.items():
        write_run(models / name)
        (models / name / file).write_bytes(content)
    write_run(models / "overflowing_metrics")
    (models / "overflowing_metrics" / "metrics.json").write_text(
        json.dumps({"dice": 10**400, "iou": 0.5}))
    write_run(models / "folder_config")
    (models / "folder_config" / "config.yaml").unlink()
    (models / "folder_config" / "config.yaml").mkdir()
    write_run(models / "fifo_metrics")
    (models / "fifo_metrics" / "metrics.json").unlink()
    os.mkfifo(models / "fifo_metrics" / "metrics.json")  # reading it would wait forever

    runs = {run.name: run for run in find_runs(models)}
    assert len(runs) == len(cases) + 3
    problems = {name: " | ".join(run.problems) for name, run in runs.items()}
    assert problems["binary_config"] == "config.yaml is not UTF-8 text"
    assert problems["deep_config"] == "config.yaml is not a readable config"
    assert problems["long_number_config"] == "config.yaml is not a readable config"
    assert problems["huge_config"] == "config.yaml is over 2 MB; not read"
    assert problems["folder_config"] == "config.yaml is not a regular file"
    assert problems["deep_metrics"] == "metrics.json is not valid JSON"
    assert problems["long_number_metrics"] == "metrics.json is not valid JSON"
    assert problems["fifo_metrics"] == "metrics.json is not a regular file"
    assert problems["binary_history"] == "history.csv is not UTF-8 text"
    assert runs["overflowing_metrics"].test_metrics == {"iou": 0.5}  # 10**400 is no float
    # history.csv is read by the one reader of medseg.runs: a cell that is no number is named
    assert problems["nul_history"] == (
        "history.csv: cannot read the run history: row 1 holds '\\x000.5' in val_dice, not a number")
    assert runs["nul_history"].history == ()
    for run in runs.values():
        assert run.summary_rows()  # every card can be shown


def test_unreadable_config_is_a_problem(tmp_path, monkeypatch):
    folder = write_run(tmp_path / "run")
    read_text = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "config.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)  # the tests run as root: chmod would not do
    card = read_run(folder)
    assert card.config is None
    assert card.problems == ("config.yaml cannot be read (Permission denied)",)


def test_a_date_out_of_range_is_a_problem(tmp_path, monkeypatch):
    folder = write_run(tmp_path / "run", checkpoints=("best.pt",))
    stat = Path.stat

    def far_future(self, *args, **kwargs):  # ext4 clamps mtimes; xfs or tmpfs would keep it
        result = stat(self, *args, **kwargs)
        if self.name != "best.pt":
            return result
        return os.stat_result((*tuple(result)[:8], 1e15, result.st_ctime))

    monkeypatch.setattr(Path, "stat", far_future)
    card = read_run(folder)
    assert card.created is None and card.checkpoints == (folder / "best.pt",)
    assert card.problems == ("the checkpoint's date cannot be read",)


def test_the_runs_split_labels_its_patients_and_a_broken_one_is_a_problem(tmp_path):
    folder = write_run(tmp_path / "run")
    assert read_run(folder).split == {}  # no split.json: nothing known
    (folder / "split.json").write_text(json.dumps(
        {"seed": 0, "train": ["A", "B"], "val": ["C"], "test": ["D"]}))
    card = read_run(folder)
    assert card.split == {"A": "train", "B": "train", "C": "val", "D": "test"}
    assert not card.problems
    (folder / "split.json").write_text(json.dumps(
        {"train": ["A"], "val": ["A"], "test": []}))
    card = read_run(folder)
    assert card.split == {}
    assert card.problems == ("split.json: patient A is in both 'train' and 'val'",)


@pytest.mark.parametrize("side_file", ["config.yaml", "history.csv", "metrics.json", "split.json"])
def test_a_fifo_side_file_is_a_problem_never_a_hang(tmp_path, side_file):
    run_dir = write_run(tmp_path / "run")
    (run_dir / side_file).unlink(missing_ok=True)
    fifo(run_dir / side_file)
    with no_hang():
        card = read_run(run_dir)
        assert card.problems == (f"{side_file} is not a regular file",)
        assert [run.name for run in find_runs(tmp_path)] == ["run"]


def write_split(path: Path, test: list[str], val: list[str], train: list[str]) -> None:
    path.write_text(json.dumps({"seed": 0, "test": test, "val": val, "train": train}))


def test_a_cv_folder_is_one_card_its_patients_test_or_train(tmp_path):
    from medseg.postprocessing import Postprocessing, save_postprocessing

    cv = tmp_path / "models" / "cv"
    for k, (val, train) in enumerate([(["A"], ["B"]), (["B"], ["A"])]):
        write_run(cv / f"fold_{k}", checkpoints=("last.pt",))
        write_split(cv / f"fold_{k}" / "split.json", ["T"], val, train)
    save_folds(Folds(seed=0, test_fraction=0.2, test=("T",), fold_patients=(("A",), ("B",))), cv / "folds.json")
    (cv / "config.yaml").write_bytes((cv / "fold_0" / "config.yaml").read_bytes())
    save_postprocessing(cv / "postprocessing.json", Postprocessing(min_voxels=25), {"rule": "test"})
    cards = {card.name: card for card in find_runs(tmp_path / "models")}
    assert set(cards) == {"cv", "cv/fold_0", "cv/fold_1"}  # the folds stay runs of their own
    card = cards["cv"]
    assert card.kind == "cv" and card.task == "segmentation" and not card.problems
    assert card.checkpoints == (cv / "fold_0" / "last.pt", cv / "fold_1" / "last.pt")
    assert card.split == {"T": "test", "A": "train", "B": "train"}
    rows = dict(card.summary_rows())
    assert rows["Ensemble"] == "mean of 2 folds' probabilities (last.pt of each)"
    assert rows["Postprocessing"] == "remove lesions under 25 voxels (postprocessing.json)"
    (cv / "fold_1" / "last.pt").unlink()  # an unfinished fold: listed, not loadable
    card = read_run_of(tmp_path / "models", "cv")
    assert card.checkpoints == () and card.problems == ("fold_1 has no last.pt yet",)


def read_run_of(models: Path, name: str):
    return next(card for card in find_runs(models) if card.name == name)


def test_an_export_card_states_its_record_and_reads_its_source_run(tmp_path):
    run = write_run(tmp_path / "runs" / "demo")
    write_split(run / "split.json", ["T"], ["V"], ["A"])
    export = tmp_path / "models" / "demo_onnx"
    export.mkdir(parents=True)
    (export / "model.onnx").write_bytes(b"onnx")
    (export / "export.json").write_text(json.dumps({
        "format": "onnx", "version": "0.1.0", "task": "segmentation", "image_size": 128,
        "threshold": 0.5, "checkpoint": str(run / "best.pt"), "epoch": 2, "files": {},
        "parity": {"engine": "ONNX Runtime 1.32.0", "max_abs_diff": 2.5e-7, "limit": 1e-4}}))
    (tmp_path / "models" / "loose.onnx").write_bytes(b"onnx")
    cards = {card.name: card for card in find_runs(tmp_path / "models")}
    assert set(cards) == {"demo_onnx", "loose.onnx"}
    card = cards["demo_onnx"]
    assert card.kind == "onnx" and card.checkpoints == (export / "model.onnx",)
    assert card.split == {"T": "test", "V": "val", "A": "train"} and card.config is not None
    rows = dict(card.summary_rows())
    assert rows["Source"] == f"{run / 'best.pt'}, epoch 2" and rows["Training size"] == "128 px"
    assert rows["Parity"] == "ONNX Runtime 1.32.0 vs PyTorch eager: max |Δp| 2.5e-07 (limit 1e-04)"
    assert cards["loose.onnx"].kind == "onnx" and cards["loose.onnx"].task == "segmentation"


@pytest.mark.parametrize("demo", [True, False])
def test_an_export_of_a_model_trained_on_demo_data_says_so(tmp_path, demo):
    data = tmp_path / "data"
    data.mkdir()
    if demo:  # the marker medseg demo-data writes
        (data / "medseg_demo.json").write_text(json.dumps(
            {"synthetic": True, "written_by": "medseg demo-data", "kind": "lgg", "files": {}}))
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    save_config(config_from_dict({"data": {"root": str(data)}}), run / "config.yaml")
    export = tmp_path / "models" / "exported"
    export.mkdir(parents=True)
    (export / "model.onnx").write_bytes(b"onnx")
    (export / "export.json").write_text(json.dumps(
        {"format": "onnx", "checkpoint": str(run / "best.pt"), "files": {}}))
    assert read_run_of(tmp_path / "models", "exported").synthetic is demo
