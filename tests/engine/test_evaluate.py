"""``medseg evaluate``: JSON and table output, splits, and agreement with a direct computation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from medseg.cli.main import main
from medseg.data.lgg import find_lgg_root
from medseg.data.preprocess import preprocess_image
from medseg.engine import load_model
from medseg.imaging.images import read_mask, read_slice_image
from medseg.metrics import ClassificationMeter, SegmentationMeter, dice_from_counts
from medseg.metrics.measures import patient_measures
from medseg.postprocessing import Postprocessing
from medseg.runs import CvFolder
from tests.ensemble_support import hand_probabilities, shifted_checkpoint, write_cv_folder
from tests.support import LGG_SLICES, PCAM_SIZES


def _evaluate_json(capsys, *args) -> dict:
    assert main(["evaluate", *map(str, args), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object on one line
    return json.loads(out)


def _direct_scores(checkpoint, root, patients):
    """Score the slices of ``patients`` by hand: read, preprocess at the training size,
    sigmoid, resize the probabilities to the slice's own size, count against the mask."""
    loaded = load_model(checkpoint)
    size = loaded.config.data.image_size
    meter = SegmentationMeter()
    counts = {}
    for patient in patients:
        folder = find_lgg_root(root) / patient
        for k in range(1, LGG_SLICES + 1):
            image = read_slice_image(folder / f"{patient}_{k}.tif")
            label = torch.from_numpy(read_mask(folder / f"{patient}_{k}_mask.tif")).float()[None, None]
            with torch.no_grad():
                prob = torch.sigmoid(loaded.model(preprocess_image(image, size)[None]))
            prob = F.interpolate(prob, size=image.shape[:2], mode="bilinear", align_corners=False)
            meter.update(prob, label, [patient], [k])
            pred, gt = prob[0, 0].numpy() >= 0.5, label[0, 0].numpy() > 0
            tp, fp, fn = counts.get(patient, (0, 0, 0))
            counts[patient] = (tp + int((pred & gt).sum()), fp + int((pred & ~gt).sum()),
                               fn + int((~pred & gt).sum()))
    by_hand = {p: 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn) for p, (tp, fp, fn) in counts.items()}
    return meter.compute(), by_hand


def test_json_matches_a_direct_meter_computation(trained_lgg, tiny_lgg, capsys):
    best = trained_lgg.run_dir / "best.pt"
    result = _evaluate_json(capsys, best, "--data", tiny_lgg)
    split = json.loads((trained_lgg.run_dir / "split.json").read_text())
    assert result["split"] == "test" and result["n"] == LGG_SLICES and result["note"] is None
    assert "per_slice" not in result
    direct, by_hand = _direct_scores(best, tiny_lgg, split["test"])
    for key in ("dice", "iou", "patient_dice", "empty_fp_rate"):
        assert result[key] == pytest.approx(direct[key], abs=1e-6), key
    assert result["per_patient"] == pytest.approx(by_hand, abs=1e-6)
    assert result["patient_dice"] == pytest.approx(np.mean(list(by_hand.values())), abs=1e-6)
    metrics = json.loads((trained_lgg.run_dir / "metrics.json").read_text())
    assert result["dice"] == pytest.approx(metrics["dice"], abs=1e-6)


def test_evaluate_scores_equal_those_of_predicts_masks(trained_lgg, tiny_lgg, tmp_path, capsys):
    """One scorer at native resolution: a model trained smaller than its slices gets the same
    per-patient Dice from ``evaluate`` as its ``predict`` masks against the expert masks."""
    best = trained_lgg.run_dir / "best.pt"
    slice_size = read_slice_image(next(find_lgg_root(tiny_lgg).glob("*/*_1.tif"))).shape[0]
    assert load_model(best).config.data.image_size < slice_size
    result = _evaluate_json(capsys, best, "--data", tiny_lgg, "--split", "all")
    out = tmp_path / "predicted"
    folders = sorted(p for p in find_lgg_root(tiny_lgg).iterdir() if p.is_dir())
    assert main(["predict", str(best), *map(str, folders), "--out", str(out)]) == 0
    from_masks = {}
    for folder in folders:
        tp = fp = fn = 0
        for k in range(1, LGG_SLICES + 1):
            pred = np.asarray(Image.open(out / folder.name / f"{folder.name}_{k}_pred.png")) > 0
            gt = read_mask(folder / f"{folder.name}_{k}_mask.tif") > 0
            tp, fp, fn = tp + int((pred & gt).sum()), fp + int((pred & ~gt).sum()), fn + int((~pred & gt).sum())
        from_masks[folder.name] = dice_from_counts(tp, fp, fn)
    assert result["per_patient"] == pytest.approx(from_masks, abs=1e-9)
    assert len({round(d, 6) for d in from_masks.values()}) > 1  # the model is not trivial


def test_splits_and_the_missing_split_file_note(trained_lgg, tiny_lgg, tmp_path, capsys):
    best = trained_lgg.run_dir / "best.pt"
    split = json.loads((trained_lgg.run_dir / "split.json").read_text())
    val = _evaluate_json(capsys, best, "--data", tiny_lgg, "--split", "val")
    assert val["split"] == "val" and list(val["per_patient"]) == split["val"]
    every = _evaluate_json(capsys, best, "--data", tiny_lgg, "--split", "all")
    assert every["n"] == 5 * LGG_SLICES and len(every["per_patient"]) == 5

    alone = tmp_path / "best.pt"
    shutil.copyfile(best, alone)  # no split.json beside it
    result = _evaluate_json(capsys, alone, "--data", tiny_lgg)
    assert result["split"] == "all" and result["n"] == 5 * LGG_SLICES
    assert "no split.json" in result["note"]
    assert result["dice"] == pytest.approx(every["dice"])


def test_table_output(trained_lgg, tiny_lgg, capsys):
    assert main(["evaluate", str(trained_lgg.run_dir / "best.pt"), "--data", str(tiny_lgg)]) == 0
    out = capsys.readouterr().out
    split = json.loads((trained_lgg.run_dir / "split.json").read_text())
    assert "Dice (mean over slices)" in out and "Dice (mean over patients, 3-D)" in out
    assert f"split test, {LGG_SLICES} slices" in out and split["test"][0] in out


def test_classification_scores(trained_pcam, tiny_pcam, capsys):
    best = trained_pcam.run_dir / "best.pt"
    result = _evaluate_json(capsys, best, "--data", tiny_pcam, "--threshold", "0.3")
    assert result["split"] == "test" and result["n"] == PCAM_SIZES["test"] and result["threshold"] == 0.3
    import h5py

    with h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_x.h5") as fx, \
            h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_y.h5") as fy:
        patches, labels = fx["x"][:], fy["y"][:].reshape(-1, 1).astype(np.float32)
    images = torch.from_numpy(patches).permute(0, 3, 1, 2).float()
    mean, std = images.mean(dim=(2, 3), keepdim=True), images.std(dim=(2, 3), keepdim=True, unbiased=False)
    model = load_model(best).model
    with torch.no_grad():
        probs = torch.sigmoid(model((images - mean) / std))
    meter = ClassificationMeter(threshold=0.3)
    meter.update(probs, torch.from_numpy(labels))
    direct = meter.compute()
    assert result["accuracy"] == pytest.approx(direct["accuracy"])
    assert result["accuracy"] == pytest.approx(float(((probs >= 0.3).float() == torch.from_numpy(labels)).float().mean()))
    assert result["auc"] == pytest.approx(direct["auc"], abs=1e-6)


def test_wrong_task_and_bad_options_exit_2(trained_lgg, tiny_pcam, tiny_lgg, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    assert main(["evaluate", best, "--data", str(tiny_pcam)]) == 2
    assert "segmentation checkpoint" in capsys.readouterr().err
    for bad in ("1.5", "0", "nan"):  # metrics.threshold.check_threshold's rule and words
        assert main(["evaluate", best, "--data", str(tiny_lgg), "--threshold", bad]) == 2
        assert f"--threshold: {float(bad)} must be between 0 and 1" in capsys.readouterr().err
    assert main(["evaluate", best, "--data", str(tiny_lgg / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


@pytest.mark.parametrize(("device", "problem"), [("tpu", "is not a device"), ("cuda:0", "no CUDA GPU")])
def test_device_errors_name_the_option(trained_lgg, tiny_lgg, capsys, device, problem):
    if problem == "no CUDA GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["evaluate", str(trained_lgg.run_dir / "best.pt"), "--data", str(tiny_lgg),
                 "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medseg: error: --device: {device!r} ") and problem in err
    assert "train.device" not in err


@pytest.mark.parametrize("count", [-1, 0])
def test_a_sample_count_below_one_is_refused_not_sliced(trained_lgg, tiny_lgg, count):
    from medseg.engine.evaluation import evaluate
    from medseg.errors import MedsegError

    # [:-1] would score every slice but the last without a word
    with pytest.raises(MedsegError) as err:
        evaluate(trained_lgg.run_dir / "best.pt", tiny_lgg, max_samples=count)
    assert str(err.value) == f"--max-samples must be >= 1, got {count}"


def test_every_patient_gets_every_measure_from_the_one_definition(trained_lgg, tiny_lgg, capsys):
    """The per-patient rows of ``--json`` are :func:`patient_measures` of the patient's stacked
    predicted and expert masks (no spacing: pixels and voxels), and the summary counts every
    patient, defined or not."""
    best = trained_lgg.run_dir / "best.pt"
    result = _evaluate_json(capsys, best, "--data", tiny_lgg)
    split = json.loads((trained_lgg.run_dir / "split.json").read_text())
    loaded = load_model(best)
    for patient in split["test"]:
        folder = find_lgg_root(tiny_lgg) / patient
        preds, refs = [], []
        for k in range(1, LGG_SLICES + 1):
            image = read_slice_image(folder / f"{patient}_{k}.tif")
            with torch.no_grad():
                prob = torch.sigmoid(loaded.model(preprocess_image(image, loaded.config.data.image_size)[None]))
            prob = F.interpolate(prob, size=image.shape[:2], mode="bilinear", align_corners=False)
            preds.append(prob[0, 0].numpy() >= 0.5)
            refs.append(read_mask(folder / f"{patient}_{k}_mask.tif"))
        expected = patient_measures(np.stack(preds), np.stack(refs))
        row = {key: np.nan if value is None else value
               for key, value in result["per_patient_measures"][patient].items()}
        assert list(row) == list(expected) and "hd95_px" in row and "pred_volume_voxels" in row
        assert row == pytest.approx(expected, abs=1e-6, nan_ok=True)
    for stats in result["measure_summary"].values():
        assert stats["n"] + stats["n_undefined"] == len(split["test"])
    assert main(["evaluate", str(best), "--data", str(tiny_lgg)]) == 0
    table = capsys.readouterr().out
    assert "HD95 (px)" in table and "NSD (2 px)" in table and "lesions found" in table
    summary_head = next(line for line in table.splitlines() if line.startswith("measure "))
    assert summary_head.split()[1:] == ["mean", "median", "25th", "pct", "75th", "pct", "patients", "undefined"]
    assert any(line.startswith("Lesion F1 ") for line in table.splitlines())


# --- ensembles, test-time mirroring and postprocessing ----------------------------------


def _hand_patient_dice(checkpoints, root, patients, *, flip=False, step=None):
    """Each patient's 3-D Dice by hand: per slice the mean over members (and over the input
    as is and mirrored left-right, flipped back) of sigmoid probabilities at the training
    size, resized to the slice, thresholded; the patient's stack through ``step``."""
    models = [load_model(checkpoint) for checkpoint in checkpoints]
    dice = {}
    for patient in patients:
        folder = find_lgg_root(root) / patient
        preds, truths = [], []
        for k in range(1, LGG_SLICES + 1):
            image = read_slice_image(folder / f"{patient}_{k}.tif")
            preds.append(hand_probabilities(models, image, flip=flip) >= 0.5)
            truths.append(read_mask(folder / f"{patient}_{k}_mask.tif") > 0)
        pred = np.stack(preds) if step is None else step.apply(np.stack(preds)) > 0
        truth = np.stack(truths)
        tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
        dice[patient] = dice_from_counts(tp, fp, fn)
    return dice


@pytest.fixture(scope="module")
def lgg_members(trained_lgg, module_tmp):
    """The run's best.pt and a copy whose output bias is 2 higher (it predicts more tumour)."""
    best = trained_lgg.run_dir / "best.pt"
    return [best, shifted_checkpoint(best, module_tmp / "up.pt", 2.0)]


def test_an_ensemble_scores_the_mean_of_its_members_probabilities(lgg_members, trained_lgg, tiny_lgg, capsys):
    result = _evaluate_json(capsys, *lgg_members, "--data", tiny_lgg, "--split", "all")
    assert result["members"] == [str(path) for path in lgg_members] and result["tta"] == "none"
    patients = sorted(result["per_patient"])
    expected = _hand_patient_dice(lgg_members, tiny_lgg, patients)
    assert result["per_patient"] == pytest.approx(expected, abs=1e-9)
    for member in lgg_members:  # the ensemble is neither member
        alone = _hand_patient_dice([member], tiny_lgg, patients)
        assert alone != pytest.approx(expected, abs=1e-9)


def test_flip_tta_scores_the_mean_over_mirrored_inputs_flipped_back(lgg_members, tiny_lgg, capsys):
    result = _evaluate_json(capsys, *lgg_members, "--data", tiny_lgg, "--split", "all", "--tta", "flip")
    assert result["tta"] == "flip"
    patients = sorted(result["per_patient"])
    expected = _hand_patient_dice(lgg_members, tiny_lgg, patients, flip=True)
    assert result["per_patient"] == pytest.approx(expected, abs=1e-9)
    assert expected != pytest.approx(_hand_patient_dice(lgg_members, tiny_lgg, patients), abs=1e-9)


def test_a_cv_folders_postprocessing_is_applied_to_every_score_unless_turned_off(
        lgg_members, trained_lgg, tiny_lgg, tmp_path, capsys):
    step = Postprocessing(min_voxels=10**7)  # removes every predicted lesion
    folder = write_cv_folder(tmp_path / "cv", lgg_members, step)
    result = _evaluate_json(capsys, folder, "--data", tiny_lgg)
    assert result["postprocessing"] == step.to_dict()
    assert result["postprocessing_file"] == str(CvFolder(folder).postprocessing_file)
    test = json.loads((trained_lgg.run_dir / "split.json").read_text())["test"]
    assert list(result["per_patient"]) == test
    raw = _hand_patient_dice(lgg_members, tiny_lgg, test)
    assert result["per_patient"] == pytest.approx(_hand_patient_dice(lgg_members, tiny_lgg, test, step=step))
    assert result["per_patient"] != pytest.approx(raw)  # the step changed the score
    for row in result["per_patient_measures"].values():
        assert row["pred_volume_voxels"] == 0
    unprocessed = _evaluate_json(capsys, folder, "--data", tiny_lgg, "--postprocessing", "none")
    assert unprocessed["per_patient"] == pytest.approx(raw, abs=1e-9)
    assert unprocessed["postprocessing"] == Postprocessing().to_dict() and unprocessed["postprocessing_file"] is None
    assert main(["evaluate", str(folder), "--data", str(tiny_lgg)]) == 0
    table = capsys.readouterr().out
    assert "ensemble    mean of 2 members" in table and "remove lesions under 10000000 voxels" in table


def test_members_whose_splits_differ_on_the_split_scored_are_refused(trained_lgg, tiny_lgg, tmp_path, capsys):
    best = trained_lgg.run_dir / "best.pt"
    other = shifted_checkpoint(best, tmp_path / "other.pt", 0.5)
    split = json.loads((tmp_path / "split.json").read_text())
    split["train"], split["val"] = split["train"][1:] + split["val"], split["train"][:1]
    (tmp_path / "split.json").write_text(json.dumps(split))
    assert main(["evaluate", str(best), str(other), "--data", str(tiny_lgg), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "split.json") in err and "val patients differ" in err
    result = _evaluate_json(capsys, best, other, "--data", str(tiny_lgg))  # both test on the same patients
    assert list(result["per_patient"]) == split["test"]


def test_a_classifier_ensemble_with_tta_scores_the_mean_over_members_and_flips(trained_pcam, tiny_pcam, tmp_path, capsys):
    best = trained_pcam.run_dir / "best.pt"
    members = [best, shifted_checkpoint(best, tmp_path / "up.pt", 1.0)]
    result = _evaluate_json(capsys, *members, "--data", tiny_pcam, "--tta", "flip")
    import h5py

    with h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_x.h5") as fx, \
            h5py.File(tiny_pcam / "camelyonpatch_level_2_split_test_y.h5") as fy:
        patches, labels = fx["x"][:], fy["y"][:].reshape(-1, 1).astype(np.float32)
    images = torch.from_numpy(patches).permute(0, 3, 1, 2).float()
    mean, std = images.mean(dim=(2, 3), keepdim=True), images.std(dim=(2, 3), keepdim=True, unbiased=False)
    x = (images - mean) / std
    with torch.no_grad():
        probs = sum(torch.sigmoid(load_model(member).model(x.flip(dims) if dims else x))
                    for member in members for dims in [(), (-1,), (-2,), (-2, -1)]) / 8
    meter = ClassificationMeter()
    meter.update(probs, torch.from_numpy(labels))
    direct = meter.compute()
    assert result["auc"] == pytest.approx(direct["auc"], abs=1e-6)
    assert result["accuracy"] == pytest.approx(direct["accuracy"])
    assert result["postprocessing"] == Postprocessing().to_dict()
