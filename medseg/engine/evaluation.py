"""``medseg evaluate``: score a checkpoint on a split of a dataset.

LGG: the split comes from the ``split.json`` of the checkpoint's run folder (the run's own
patient split, :attr:`medseg.runs.RunFolder.split_file`); without one, every patient is scored
and the result says so. PCam: the official splits. Images go through the evaluation transform of the run's config; masks stay
at their native size and the probabilities are resized to it, so scores equal those of
``medseg predict``'s masks and of the app, whatever the training size.

An ensemble (several checkpoints, or a cross-validation folder: :mod:`medseg.engine.ensemble`)
is scored by the mean of its members' probabilities, optionally mirrored (``tta="flip"``);
its postprocessing (a CV folder's recorded step) is applied to every patient's masks before
any score, unless ``postprocess=False``. The members' patient splits must agree on the split
scored (a CV folder's folds share their test patients).

Example:
    >>> result = evaluate("models/demo_lgg/best.pt", "demo_data/lgg", split="test")
    >>> result["dice"], result["patient_dice"]
    >>> evaluate("models/cv_demo_lgg", "demo_data/lgg", tta="flip")["members"]
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset
from torch.utils.data import ConcatDataset

from medseg.config import Config, DataConfig
from medseg.data.datasets import build_datasets
from medseg.data.formats import detect_format as data_format
from medseg.data.lgg import list_patients
from medseg.data.splits import read_split_file, save_split
from medseg.engine.distributed import resolve_device
from medseg.engine.ensemble import LoadedEnsemble, load_ensemble
from medseg.engine.inference import score_loader
from medseg.engine.loaders import build_eval_loader
from medseg.engine.probability import TTA_MODES
from medseg.errors import CheckpointError, DataError, MedsegError
from medseg.metrics.measures import PatientMeasureMeter
from medseg.metrics.threshold import check_threshold
from medseg.postprocessing import Postprocessing
from medseg.runs import RunFolder, split_path

SPLITS = ("test", "val", "train", "all")
#: the rule for ``max_samples``: the config's for ``data.max_samples`` (the data config is
#: changed with :func:`dataclasses.replace`, which checks nothing)
_MAX_SAMPLES = next(f for f in dataclasses.fields(DataConfig) if f.name == "max_samples").metadata["range"]


def check_data_matches(cfg: Config, checkpoint: Path, data_root: Path) -> None:
    """Raise :class:`CheckpointError` when ``data_root`` holds the other task's data."""
    found = data_format(data_root)
    if found is not None and found != cfg.data.format:
        raise CheckpointError(
            f"{checkpoint}: a {cfg.task} checkpoint (trained on {cfg.data.format} data) cannot "
            f"score {data_root}, which holds {found} data"
        )


def members_split_file(checkpoints: Sequence[Path], split: str) -> Path | None:
    """The ``split.json`` beside the first checkpoint, once every member's split is checked
    to hold the same patients in ``split`` ("all" needs none); None when no member has one.

    Raises:
        CheckpointError: when some members have a split file and others not, or two members'
            splits differ in ``split`` (naming both files).
    """
    files = [RunFolder.of_checkpoint(checkpoint).split_file for checkpoint in checkpoints]
    present = [file.is_file() for file in files]
    if not any(present):
        return None
    if not all(present):
        missing = files[present.index(False)]
        raise CheckpointError(f"{missing}: missing, while {files[present.index(True)]} exists: "
                              "the ensemble's members must share one patient split")
    if split != "all":
        first = set(read_split_file(files[0])[0][split])
        for file in files[1:]:
            if set(read_split_file(file)[0][split]) != first:
                raise CheckpointError(f"{file}: its {split} patients differ from those of {files[0]}: "
                                      f"the ensemble's members do not share the {split} split")
    return files[0]


def _lgg_split_dataset(data_cfg: Any, checkpoints: Sequence[Path], split: str,
                       seed: int) -> tuple[Dataset, str, str | None]:
    """The dataset of an LGG split, the split actually used, and a note for the user."""
    split_file = members_split_file(checkpoints, split) or RunFolder.of_checkpoint(checkpoints[0]).split_file
    note = None
    if split != "all" and not split_file.is_file():
        note = f"no {split_file.name} beside {checkpoints[0].name}: scoring all patients of {data_cfg.root}"
        split = "all"
    if split != "all":
        datasets = build_datasets(dataclasses.replace(data_cfg, split_file=str(split_file)), seed=seed)
        return datasets[split], split, note
    patients = [patient.name for patient in list_patients(data_cfg.root)]
    with tempfile.TemporaryDirectory() as tmp:
        every = split_path(tmp)
        save_split({"train": [], "val": [], "test": patients}, every)
        datasets = build_datasets(dataclasses.replace(data_cfg, split_file=str(every)), seed=seed)
    return datasets["test"], split, note


def _pcam_split_dataset(data_cfg: Any, split: str, seed: int) -> Dataset | ConcatDataset:
    datasets = build_datasets(data_cfg, seed=seed)
    if split == "all":
        return ConcatDataset([datasets["train"], datasets["val"], datasets["test"]])
    return datasets[split]


def evaluate(
    checkpoint_path: str | Path | Sequence[str | Path],
    data_root: str | Path,
    split: str = "test",
    *,
    threshold: float = 0.5,
    max_samples: int | None = None,
    device: str = "auto",
    tta: str = "none",
    postprocess: bool = True,
) -> dict[str, Any]:
    """Score a checkpoint, or an ensemble, on one split of the data under ``data_root``.

    Args:
        checkpoint_path: a ``best.pt`` / ``last.pt`` written by ``medseg train``; or a list
            of them (an ensemble: the mean of their probabilities); or a CV folder.
        data_root: an LGG folder (``kaggle_3m`` layout) or a PCam folder.
        split: "test", "val", "train" or "all".
        threshold: probability at or above which a pixel (patch) is called tumour.
        max_samples: score only the first N samples of the split.
        device: "auto" (a GPU when there is one), "cpu", "cuda", ...
        tta: "none", or "flip": the mean over the task's mirrorings
            (:attr:`~medseg.tasks.Task.tta_flips`).
        postprocess: apply the ensemble's postprocessing (a CV folder's record) to every
            patient's masks before scoring; False scores the raw masks.

    Returns:
        ``split``, ``n`` (slices or patches), ``threshold``, ``task``, ``checkpoint`` (the
        source given; several joined by ", "), ``members`` (each member's checkpoint),
        ``tta``, ``postprocessing`` (the step applied, :meth:`Postprocessing.to_dict`),
        ``postprocessing_file`` (its record, None when none was applied), ``data``, ``note``
        (or None); segmentation: ``dice``, ``iou`` (means over slices), ``patient_dice``,
        ``per_patient``, ``per_slice`` (with each slice's HD95, ASSD and NSD),
        ``empty_fp_rate`` ..., ``per_patient_measures`` ({patient: every measure of
        :func:`medseg.metrics.measures.patient_measures`}) and ``measure_summary`` (mean,
        median, quartiles, ``n`` and ``n_undefined`` of each measure over the patients);
        classification: ``accuracy``, ``auc``, ``sensitivity``, ``specificity``.

    Raises:
        CheckpointError: for an unreadable checkpoint, one of the other task, members that
            cannot form an ensemble or whose patient splits disagree on ``split``.
        DataError: for missing or malformed data.
        MedsegError: for an unknown split or ``tta``, a threshold outside (0, 1) or
            ``max_samples`` outside the config's range for ``data.max_samples`` (a negative
            count would drop samples from the end).
    """
    if split not in SPLITS:
        raise MedsegError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    if tta not in TTA_MODES:
        raise MedsegError(f"--tta: {tta!r} is not one of {', '.join(TTA_MODES)}")
    check_threshold(threshold, "--threshold")
    if max_samples is not None:
        _MAX_SAMPLES.check(max_samples, "--max-samples")
    sources = [checkpoint_path] if isinstance(checkpoint_path, str | Path) else list(checkpoint_path)
    data_root = Path(data_root)
    ensemble = load_ensemble(sources, "cpu")
    cfg = ensemble.config
    check_data_matches(cfg, ensemble.checkpoints[0], data_root)
    data_cfg = dataclasses.replace(
        cfg.data, root=str(data_root), augment=False, cache=False, split_file=None, max_samples=max_samples
    )
    note = None
    task = ensemble.task
    dataset: Dataset | ConcatDataset
    if task.patient_split:
        dataset, split, note = _lgg_split_dataset(data_cfg, ensemble.checkpoints, split, cfg.seed)
    else:
        dataset = _pcam_split_dataset(data_cfg, split, cfg.seed)
    if len(dataset) == 0:
        raise DataError(f"{data_root}: the {split} split holds no samples")

    torch_device = resolve_device(device, option="--device")
    model = ensemble.probability_model(tta).to(torch_device)
    loader = build_eval_loader(dataset, cfg.train.batch_size, cfg.data.num_workers, torch_device)
    # LGG: every patient also scored by boundary, volume and lesion-wise measures; kaggle_3m
    # slices carry no spacing, so distances are in pixels and volumes in voxels
    meter = PatientMeasureMeter(threshold) if task.patient_split else None
    step = ensemble.postprocessing if postprocess and meter is not None else Postprocessing()
    metrics = score_loader(model, loader, task, threshold=threshold, meter=meter,
                           postprocess=None if step.is_identity else step.apply)
    return {
        "checkpoint": ", ".join(str(source) for source in sources),
        "members": [str(path) for path in ensemble.checkpoints],
        "tta": tta,
        "postprocessing": step.to_dict(),
        "postprocessing_file": _record(ensemble, step),
        "data": str(data_root),
        "task": cfg.task,
        "split": split,
        "n": len(dataset),
        "threshold": threshold,
        "note": note,
        **metrics,
    }


def _record(ensemble: LoadedEnsemble, applied: Postprocessing) -> str | None:
    """The record of the postprocessing applied (None: the identity was)."""
    if ensemble.postprocessing_file is None or applied.is_identity:
        return None
    return str(ensemble.postprocessing_file)
