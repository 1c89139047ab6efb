"""The folds of a cross-validation: disjoint, covering every non-test patient, balanced,
seeded, the test patients those of a run's split, and folds.json read back or refused."""

from __future__ import annotations

import json

import pytest

from medseg.data.folds import make_folds, read_folds, save_folds
from medseg.data.splits import split_patients
from medseg.errors import MedsegError

PATIENTS = [f"TCGA_{i:02d}" for i in range(23)]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_are_disjoint_balanced_and_cover_every_non_test_patient(k):
    folds = make_folds(PATIENTS, 0.2, k, seed=7)
    dealt = [p for fold in folds.fold_patients for p in fold]
    assert len(dealt) == len(set(dealt))  # disjoint
    assert sorted(dealt + list(folds.test)) == PATIENTS  # together with test: everyone once
    assert not set(dealt) & set(folds.test)
    sizes = [len(fold) for fold in folds.fold_patients]
    assert folds.k == k and max(sizes) - min(sizes) <= 1
    # the held-out patients are those any run of this seed and test fraction tests on
    assert list(folds.test) == split_patients(PATIENTS, 0.0, 0.2, seed=7)["test"]


def test_each_fold_validates_on_itself_and_trains_on_the_others():
    folds = make_folds(PATIENTS, 0.2, 4, seed=0)
    for index, patients in enumerate(folds.fold_patients):
        split = folds.split(index)
        assert split["val"] == list(patients)
        assert set(split["train"]) == set(folds.fold_of()) - set(patients)
        assert split["test"] == list(folds.test)


def test_folds_are_seeded():
    assert make_folds(PATIENTS, 0.2, 5, seed=3) == make_folds(list(reversed(PATIENTS)), 0.2, 5, seed=3)
    assert make_folds(PATIENTS, 0.2, 5, seed=3) != make_folds(PATIENTS, 0.2, 5, seed=4)


@pytest.mark.parametrize("k, problem", [(1, "at least 2 folds"), (19, "only 18 patients")])
def test_a_fold_count_that_cannot_split_is_refused(k, problem):
    with pytest.raises(MedsegError, match=problem):
        make_folds(PATIENTS, 0.2, k, seed=0)


def test_folds_json_round_trips(tmp_path):
    folds = make_folds(PATIENTS, 0.2, 3, seed=1)
    path = save_folds(folds, tmp_path / "folds.json")
    assert read_folds(path) == folds
    assert [len(fold) for fold in json.loads(path.read_text())["folds"]] == [6, 6, 6]


@pytest.mark.parametrize("edit", [
    lambda raw: raw["folds"][1].append(raw["folds"][0][0]),  # a patient twice
    lambda raw: raw["folds"][1].append(raw["test"][0]),  # a test patient in a fold
    lambda raw: raw.update(folds=raw["folds"][:1]),  # one fold
    lambda raw: raw["folds"].append([]),  # an empty fold
    lambda raw: raw.pop("test"),
])
def test_a_damaged_folds_file_is_refused_by_name(tmp_path, edit):
    raw = make_folds(PATIENTS, 0.2, 3, seed=1).to_dict()
    edit(raw)
    path = tmp_path / "folds.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MedsegError, match=f"^{path}: not a folds record"):
        read_folds(path)
