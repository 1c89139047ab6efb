"""Postprocessing chosen on out-of-fold predictions: a step is kept only when the mean patient
Dice rises and the mean lesion sensitivity does not fall (medseg.cv.choice.RULE); scores are
hand-computed from masks built voxel by voxel."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.cv.choice import RULE, choose_postprocessing, pooled_measures
from medseg.metrics.measures import PatientMeasureMeter
from medseg.postprocessing import Postprocessing

SHAPE = (3, 32, 32)


def _stack(*boxes):
    """A (3, 32, 32) mask holding the given (slice, row0, row1, col0, col1) boxes."""
    mask = np.zeros(SHAPE, dtype=np.float32)
    for z, r0, r1, c0, c1 in boxes:
        mask[z, r0:r1, c0:c1] = 1
    return mask


BIG = (1, 4, 14, 4, 14)  # 100 voxels
SMALL = (1, 20, 22, 20, 23)  # 6 voxels: under every size of the grid
SPURIOUS = [(0, 26, 28, 2, 6), (2, 26, 28, 12, 16), (0, 2, 4, 26, 30)]  # 8 voxels each


def _meter(*patients):
    """One meter of (name, prediction, reference) patients."""
    meter = PatientMeasureMeter()
    for name, pred, ref in patients:
        meter.update(pred, ref, [name] * len(pred), list(range(len(pred))))
    return meter


def test_a_step_that_lowers_the_out_of_fold_dice_is_not_kept():
    # perfect predictions with a small true lesion: removing it (or keeping the largest)
    # lowers Dice from 1 to 200 / 206; removing under 200 voxels removes everything
    exact = _stack(BIG, SMALL)
    step, evidence = choose_postprocessing([_meter(("A", exact, exact)), _meter(("B", exact, exact))])
    assert step == Postprocessing()
    assert evidence["baseline"]["dice"] == 1.0 and evidence["patients"] == 2
    assert [entry["dice"] for entry in evidence["candidates"]] == pytest.approx([200 / 206] * 4 + [0.0, 200 / 206])
    assert not any(entry["passes"] for entry in evidence["candidates"])
    assert evidence["rule"] == RULE


def test_a_step_that_changes_no_score_is_not_kept():
    # one large lesion predicted exactly: removing small lesions changes nothing, keeping the
    # largest neither; Dice must rise for a step to be kept
    exact = _stack(BIG)
    step, evidence = choose_postprocessing([_meter(("A", exact, exact))])
    assert [entry["dice"] for entry in evidence["candidates"]] == [1.0] * 4 + [0.0, 1.0]
    assert step == Postprocessing()


def test_a_step_that_raises_dice_but_misses_a_lesion_is_not_kept():
    # spurious blobs (8 voxels) and a true 6-voxel lesion: removing lesions under 10 voxels
    # raises Dice (212 / 236 -> 200 / 206) but misses one of two lesions
    ref = _stack(BIG, SMALL)
    pred = _stack(BIG, SMALL, *SPURIOUS)
    step, evidence = choose_postprocessing([_meter(("A", pred, ref))])
    assert evidence["baseline"] == {"dice": pytest.approx(212 / 236), "lesion_sensitivity": 1.0}
    first = evidence["candidates"][0]
    assert first["step"] == {"min_voxels": 10, "keep_largest": False}
    assert first["dice"] == pytest.approx(200 / 206) and first["lesion_sensitivity"] == 0.5
    assert not first["passes"] and step == Postprocessing()


def test_a_step_that_raises_dice_and_keeps_every_lesion_is_kept():
    # spurious blobs only: every candidate reaches Dice 1 without losing the lesion; the
    # first listed wins the tie, and keep-largest is not preferred
    ref = _stack(BIG)
    pred = _stack(BIG, *SPURIOUS)
    step, evidence = choose_postprocessing([_meter(("A", pred, ref)), _meter(("B", ref, ref))])
    assert step == Postprocessing(min_voxels=10)
    assert evidence["baseline"]["dice"] == pytest.approx((200 / 224 + 1) / 2)
    # removing under 200 voxels also removes the 100-voxel tumour
    assert [entry["passes"] for entry in evidence["candidates"]] == [True] * 4 + [False, True]


def test_the_best_passing_step_is_kept():
    # blobs of 30 voxels are spurious too: only removing under 50, 100 or 200 removes them
    blob30 = (2, 20, 25, 2, 8)
    ref = _stack(BIG)
    pred = _stack(BIG, SPURIOUS[0], blob30)
    step, evidence = choose_postprocessing([_meter(("A", pred, ref))])
    assert step == Postprocessing(min_voxels=50)
    scores = {entry["described"]: entry["dice"] for entry in evidence["candidates"]}
    assert scores["remove lesions under 10 voxels"] == pytest.approx(200 / 230)


def test_pooled_measures_hold_each_patient_of_every_meter_once():
    exact = _stack(BIG)
    rows = pooled_measures([_meter(("A", exact, exact)), _meter(("B", _stack(BIG, SMALL), exact))])
    assert sorted(rows) == ["A", "B"]
    assert rows["B"]["dice"] == pytest.approx(200 / 206)
