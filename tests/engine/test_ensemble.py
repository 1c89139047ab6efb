"""load_ensemble on real tiny checkpoints: one checkpoint, several, or a CV folder; the
ensemble's probability is the mean of its members'; members that differ are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from medseg.engine.ensemble import load_ensemble
from medseg.errors import CheckpointError, MedsegError
from medseg.postprocessing import Postprocessing
from medseg.runs import CvFolder
from tests.ensemble_support import changed_checkpoint, shifted_checkpoint, write_cv_folder


@pytest.fixture(scope="module")
def members(segmentation_run, module_tmp) -> list[Path]:
    """Three segmenters of one task and input: the run's best.pt and two shifted copies."""
    best = segmentation_run / "best.pt"
    folder = module_tmp
    return [best, shifted_checkpoint(best, folder / "up.pt", 1.5),
            shifted_checkpoint(best, folder / "down.pt", -2.0)]


def _images(size: int) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_one_checkpoint_is_an_ensemble_of_one_without_postprocessing(segmentation_run) -> None:
    ensemble = load_ensemble([segmentation_run / "best.pt"])
    assert ensemble.checkpoints == (segmentation_run / "best.pt",)
    assert ensemble.postprocessing == Postprocessing() and ensemble.postprocessing_file is None
    assert ensemble.task.name == "segmentation" and ensemble.image_size == 32
    images = _images(32)
    with torch.inference_mode():
        expected = torch.sigmoid(ensemble.members[0].model(images))
        torch.testing.assert_close(ensemble.probability_model()(images), expected)


def test_the_ensemble_probability_is_the_mean_of_its_members(members) -> None:
    ensemble = load_ensemble(members)
    assert ensemble.checkpoints == tuple(members)
    images = _images(ensemble.image_size)
    with torch.inference_mode():
        each = [torch.sigmoid(member.model(images)) for member in ensemble.members]
        got = ensemble.probability_model()(images)
        torch.testing.assert_close(got, sum(each) / 3)
        assert not torch.allclose(each[0], each[1])  # the members really differ
        # flip TTA composes: the ensemble's mean over the input as is and mirrored back
        mirrored = ensemble.probability_model(tta="flip")(images)
        torch.testing.assert_close(mirrored, (got + ensemble.probability_model()(images.flip(-1)).flip(-1)) / 2)


def test_a_cv_folder_gives_its_folds_members_in_order_and_its_postprocessing(members, tmp_path) -> None:
    step = Postprocessing(min_voxels=7)
    folder = write_cv_folder(tmp_path / "cv", members, step)
    ensemble = load_ensemble([folder])
    cv = CvFolder(folder)
    assert ensemble.checkpoints == tuple(cv.member_checkpoint(k) for k in range(3))
    assert ensemble.sources == (folder,)
    assert ensemble.postprocessing == step and ensemble.postprocessing_file == cv.postprocessing_file
    images = _images(ensemble.image_size)
    with torch.inference_mode():  # fold order kept: fold 1 is the one shifted up
        torch.testing.assert_close(ensemble.members[1].model(images),
                                   load_ensemble([members[1]]).members[0].model(images))


def test_a_cv_folder_without_a_record_postprocesses_nothing(members, tmp_path) -> None:
    ensemble = load_ensemble([write_cv_folder(tmp_path / "cv", members[:2])])
    assert len(ensemble.members) == 2 and ensemble.postprocessing.is_identity


def test_a_cv_folder_lacking_a_fold_member_is_refused_naming_it(members, tmp_path) -> None:
    folder = write_cv_folder(tmp_path / "cv", members)
    CvFolder(folder).member_checkpoint(1).unlink()
    with pytest.raises(CheckpointError, match=r"fold_1 has no last\.pt") as err:
        load_ensemble([folder])
    assert "\n" not in str(err.value)


def test_a_fold_listed_in_folds_json_but_never_started_is_refused(members, tmp_path) -> None:
    folder = write_cv_folder(tmp_path / "cv", members)
    shutil.rmtree(folder / "fold_2")
    with pytest.raises(CheckpointError, match="fold_2"):
        load_ensemble([folder])


def test_a_cv_folder_has_as_many_members_as_its_folds_json_lists(members, tmp_path) -> None:
    folder = write_cv_folder(tmp_path / "cv", members)
    shutil.copytree(folder / "fold_2", folder / "fold_3")  # a stray folder joins nothing
    assert len(load_ensemble([folder]).members) == 3


def test_a_cv_folder_with_an_unreadable_folds_json_is_refused_naming_it(members, tmp_path) -> None:
    folder = write_cv_folder(tmp_path / "cv", members[:2])
    CvFolder(folder).folds_file.write_text('{"seed": 0, "folds": [[], []]}')
    with pytest.raises(MedsegError, match=r"folds\.json: not a folds record") as err:
        load_ensemble([folder])
    assert "\n" not in str(err.value)


def test_a_cv_folder_with_other_checkpoints_is_refused(members, tmp_path) -> None:
    folder = write_cv_folder(tmp_path / "cv", members[:2])
    with pytest.raises(CheckpointError, match="give it alone"):
        load_ensemble([folder, members[2]])


def test_members_of_another_input_size_are_refused_naming_both(segmentation_run, tmp_path) -> None:
    best = segmentation_run / "best.pt"
    other = changed_checkpoint(best, tmp_path / "other.pt", "data", image_size=64)
    with pytest.raises(CheckpointError) as err:
        load_ensemble([best, other])
    message = str(err.value)
    assert str(other) in message and str(best) in message and "image size 64 differs from 32" in message


def test_members_of_another_task_are_refused(segmentation_run, classification_run) -> None:
    with pytest.raises(CheckpointError, match="task classification differs from segmentation"):
        load_ensemble([segmentation_run / "best.pt", classification_run / "best.pt"])


def test_a_classifier_ensemble_averages_its_members(classification_run, tmp_path) -> None:
    best = classification_run / "best.pt"
    ensemble = load_ensemble([best, shifted_checkpoint(best, tmp_path / "up.pt", 1.0)])
    images = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = sum(torch.sigmoid(member.model(images)) for member in ensemble.members) / 2
        torch.testing.assert_close(ensemble.probability_model()(images), expected)
        flips = [images, images.flip(-1), images.flip(-2), images.flip((-2, -1))]
        torch.testing.assert_close(ensemble.probability_model("flip")(images),
                                   sum(ensemble.probability_model()(x) for x in flips) / 4)
