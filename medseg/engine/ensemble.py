"""Ensembles: several trained models of one task and input read as one predictor.

``medseg predict``, ``medseg evaluate`` and the app accept one checkpoint, several, or a
cross-validation's folder (:class:`medseg.runs.CvFolder`: its folds' member checkpoints, in
fold order, and the postprocessing the cross-validation chose). :func:`load_ensemble` loads
them all, checks that they can be averaged (same task, data format and model input), and
:meth:`LoadedEnsemble.probability_model` builds the mean of their probabilities, mirrored at
test time on request (:mod:`medseg.engine.probability`), after nnU-Net's fold ensemble.

Example:
    >>> ensemble = load_ensemble(["models/cv_demo_lgg"], "cpu")
    >>> len(ensemble.members), ensemble.postprocessing.describe()
    (5, 'remove lesions under 25 voxels')
    >>> probs = slice_probabilities(ensemble.probability_model(tta="flip"), slices, ensemble.image_size)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medseg.config import Config
from medseg.data.folds import read_folds
from medseg.engine.checkpoint import LoadedModel, load_model
from medseg.engine.probability import ProbabilityModel, probability_model
from medseg.errors import CheckpointError
from medseg.paths import is_regular_file
from medseg.postprocessing import Postprocessing, load_postprocessing
from medseg.runs import CvFolder
from medseg.tasks import Task, get_task

#: what members of one ensemble must share, each read from a member's config: (what, reader)
_SHARED: tuple[tuple[str, Callable[[Config], Any]], ...] = (
    ("task", lambda cfg: cfg.task),
    ("data format", lambda cfg: cfg.data.format),
    ("image size", lambda cfg: cfg.data.image_size),
    ("input channels", lambda cfg: cfg.model.in_channels),
)


@dataclass(frozen=True)
class LoadedEnsemble:
    """The models of one ensemble, loaded, with what they share.

    Attributes:
        members: the loaded models (one for a single checkpoint), in the order given (a CV
            folder's in fold order).
        sources: the paths given: checkpoints, or the one CV folder.
        postprocessing: the step applied to every predicted mask stack: a CV folder's
            recorded choice, else the identity.
        postprocessing_file: the record it was read from (None: the identity, no record).
    """

    members: tuple[LoadedModel, ...]
    sources: tuple[Path, ...]
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    postprocessing_file: Path | None = None

    @property
    def config(self) -> Config:
        """The first member's config (every member shares its task and input)."""
        return self.members[0].config

    @property
    def task(self) -> Task:
        return get_task(self.members[0].task)

    @property
    def image_size(self) -> int:
        """The side of the square input every member takes (``data.image_size``)."""
        return self.config.data.image_size

    @property
    def checkpoints(self) -> tuple[Path, ...]:
        """Each member's checkpoint file."""
        return tuple(member.checkpoint_path for member in self.members)

    def probability_model(self, tta: str = "none") -> ProbabilityModel:
        """The mean of the members' probabilities, averaged over the task's mirrorings
        (:attr:`~medseg.tasks.Task.tta_flips`) when ``tta`` is "flip".

        Raises:
            ValueError: for a ``tta`` not in :data:`~medseg.engine.probability.TTA_MODES`.
        """
        return probability_model([member.model for member in self.members], tta=tta,
                                 flips=self.task.tta_flips).eval()


def ensemble_checkpoints(sources: Sequence[str | Path]) -> tuple[list[Path], Path | None]:
    """The member checkpoints that ``sources`` name, and the postprocessing record that
    comes with them (a CV folder's, when it has one).

    Args:
        sources: one or more checkpoints, or one CV folder (:meth:`CvFolder.is_cv_folder`).

    Raises:
        CheckpointError: for no source, a CV folder among other sources, or a CV folder
            with a fold lacking its member checkpoint (named).
        MedsegError: for a CV folder whose ``folds.json`` is not a folds record
            (:func:`~medseg.data.folds.read_folds`).
    """
    paths = [Path(source) for source in sources]
    if not paths:
        raise CheckpointError("no checkpoint given")
    folders = [path for path in paths if CvFolder.is_cv_folder(path)]
    if not folders:
        return paths, None
    if len(paths) > 1:
        raise CheckpointError(f"{folders[0]}: a cross-validation folder is an ensemble by itself; "
                              "give it alone, not with other checkpoints")
    cv = CvFolder(paths[0])
    members = [cv.member_checkpoint(k) for k in range(read_folds(cv.folds_file).k)]
    for member in members:
        if not is_regular_file(member):
            raise CheckpointError(f"{cv.path}: fold {member.parent.name} has no {member.name} "
                                  f"(missing {member}); finish the cross-validation first")
    record = cv.postprocessing_file
    return members, record if record.exists() else None


def check_members(members: Sequence[LoadedModel]) -> None:
    """Refuse members that cannot be averaged: another task, data format or model input
    (image size, channels) than the first member's.

    Raises:
        CheckpointError: one line naming both checkpoints and what differs.
    """
    first = members[0]
    for member in members[1:]:
        for what, read in _SHARED:
            if read(member.config) != read(first.config):
                raise CheckpointError(
                    f"{member.checkpoint_path}: cannot join an ensemble with {first.checkpoint_path}: "
                    f"{what} {read(member.config)} differs from {read(first.config)}"
                )


def load_ensemble(sources: Sequence[str | Path], device: str | torch.device = "cpu") -> LoadedEnsemble:
    """Load the models that ``sources`` name, as one ensemble.

    Args:
        sources: one checkpoint, several checkpoints (of one task and input), or one CV
            folder (its folds' :meth:`~medseg.runs.CvFolder.member_checkpoint`, in fold
            order, and its ``postprocessing.json`` when it has one).
        device: where the models go.

    Raises:
        CheckpointError: for an unreadable checkpoint, a CV folder lacking a fold's member,
            or members that differ in task, data format or input.
        MedsegError: for an unreadable postprocessing record.
    """
    checkpoints, record = ensemble_checkpoints(sources)
    members = tuple(load_model(path, device) for path in checkpoints)
    check_members(members)
    return LoadedEnsemble(
        members=members,
        sources=tuple(Path(source) for source in sources),
        postprocessing=load_postprocessing(record) if record is not None else Postprocessing(),
        postprocessing_file=record,
    )
