"""The task registry: each task's loss on hand-computed examples, its meter and metric names."""

from __future__ import annotations

import math

import pytest
import torch

from medseg.errors import MedsegError
from medseg.tasks import LEARNED_MARGIN, TASKS, get_task, task_for_arch, task_for_format

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75, sigmoid(-ln 3) = 0.25


def _two_image_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels (2, 1, 1, 2): image A all tumour predicted at 0.75, image B empty
    predicted at 0.25."""
    logits = torch.tensor([[[[LN3, LN3]]], [[[-LN3, -LN3]]]])
    labels = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
    return logits, labels


def test_segmentation_loss_is_batch_pooled_soft_dice_plus_bce() -> None:
    logits, labels = _two_image_batch()
    # soft Dice with smoothing 1, sums pooled over the whole batch:
    #   intersection 0.75 + 0.75 = 1.5; sum of probabilities 1.5 + 0.5 = 2; labels 2
    #   Dice (2 * 1.5 + 1) / (2 + 2 + 1) = 0.8
    # (per image it would be A: 4 / 4.5, B: 1 / 1.5, mean loss 2/9, not 0.2)
    dice_loss = 1 - 0.8
    bce = math.log(4 / 3)  # every pixel: -ln 0.75 (A: y=1, p=0.75; B: y=0, p=0.25)
    loss = get_task("segmentation").build_loss()(logits, labels)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(dice_loss + bce, rel=1e-6)


def test_segmentation_loss_of_an_all_empty_batch_is_finite() -> None:
    # no tumour anywhere: smoothing keeps Dice defined; p = 0.5 everywhere
    # Dice (0 + 1) / (4 * 0.5 + 0 + 1) = 1/3, BCE -ln 0.5
    loss = get_task("segmentation").build_loss()(torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
    assert loss.item() == pytest.approx(1 - 1 / 3 + math.log(2), rel=1e-6)


def test_segmentation_loss_gradient_flows_to_the_logits() -> None:
    logits, labels = _two_image_batch()
    logits.requires_grad_(True)
    get_task("segmentation").build_loss()(logits, labels).backward()
    # raising A's logits (tumour) and lowering B's (empty) lowers the loss
    assert (logits.grad[0] < 0).all() and (logits.grad[1] > 0).all()


def test_classification_loss_is_bce_with_logits() -> None:
    logits = torch.tensor([[LN3], [-LN3], [0.0]])  # p = 0.75, 0.25, 0.5
    labels = torch.tensor([[1.0], [1.0], [0.0]])
    expected = (-math.log(0.75) - math.log(0.25) - math.log(0.5)) / 3
    loss = get_task("classification").build_loss()(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_unknown_task_and_format_are_medseg_errors() -> None:
    with pytest.raises(MedsegError, match=r"'detection'.*segmentation, classification"):
        get_task("detection")
    with pytest.raises(MedsegError, match=r"data\.format: 'dicom' is not one of lgg, pcam"):
        task_for_format("dicom")


def test_formats_map_to_their_tasks() -> None:
    assert task_for_format("lgg") is get_task("segmentation")
    assert task_for_format("pcam") is get_task("classification")
    for name, task in TASKS.items():
        assert get_task(name) is task and task.name == name
        assert task_for_format(task.data_format) is task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_selection_and_headline_metrics_are_recorded_metrics(name: str) -> None:
    task = get_task(name)
    keys = task.metric_keys
    assert len(set(keys)) == len(keys)
    assert task.selection_metric in keys
    assert set(task.headline) <= set(keys)


def test_every_metric_key_is_computed_by_the_task_s_meter() -> None:
    segmentation = get_task("segmentation").build_meter(threshold=0.5)
    probs = torch.tensor([[[[0.9, 0.1]]], [[[0.2, 0.7]]]])
    labels = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])
    segmentation.update(probs, labels, ["P", "P"], [1, 2])
    scores = segmentation.compute()
    assert set(get_task("segmentation").metric_keys) <= set(scores)
    assert scores["dice"] == pytest.approx(0.5)  # slice 1: 1.0; slice 2: FP on empty, 0.0

    classification = get_task("classification").build_meter(threshold=0.5)
    classification.update(torch.tensor([0.9, 0.2, 0.6, 0.4]), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    scores = classification.compute()
    assert set(get_task("classification").metric_keys) <= set(scores)
    assert scores["accuracy"] == pytest.approx(0.5) and scores["auc"] == pytest.approx(0.75)


def test_every_registered_architecture_serves_exactly_one_task() -> None:
    from medseg.models.factory import MODELS

    listed = [arch for task in TASKS.values() for arch in task.architectures]
    assert sorted(listed) == sorted(MODELS)  # no arch in two tasks, none left out
    for arch, entry in MODELS.items():
        assert arch in get_task(entry.task).architectures
        assert task_for_arch(arch).name == entry.task
    with pytest.raises(MedsegError, match=r"model\.arch: 'vit' is unknown"):
        task_for_arch("vit")


def test_a_segmenter_learned_when_it_beats_predicting_no_tumour_by_the_margin() -> None:
    task = get_task("segmentation")
    # 18 of 27 slices tumour-free: an all-background prediction scores Dice 18 / 27
    split = {"n_empty_slices": 18, "n_slices": 27}
    assert task.chance_score(split) == pytest.approx(2 / 3)
    assert task.learned({**split, "dice": 2 / 3 + LEARNED_MARGIN + 1e-9})
    assert not task.learned({**split, "dice": 2 / 3 + LEARNED_MARGIN - 1e-6})
    assert not task.learned({**split, "dice": 0.70})
    # without the counts chance is unknown: nothing counts as learned
    assert math.isnan(task.chance_score({"dice": 0.9})) and not task.learned({"dice": 0.9})


def test_a_classifier_learned_when_its_auc_beats_half_by_the_margin() -> None:
    task = get_task("classification")
    assert task.chance_score({}) == 0.5
    assert task.learned({"auc": 0.5 + LEARNED_MARGIN}) and not task.learned({"auc": 0.59})
    assert not task.learned({"accuracy": 0.99})  # judged on the selection metric only
