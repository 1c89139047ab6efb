"""Score a finished cross-validation: out of fold, and on the held-out test patients.

Out of fold: fold k's member checkpoint (:meth:`medseg.runs.CvFolder.member_checkpoint`, its
``last.pt``) scores fold k's patients, the ones it never trained on, with every measure
``medseg evaluate`` reports (:class:`~medseg.metrics.measures.PatientMeasureMeter`); each
non-test patient is thus scored exactly once. Test: the ensemble of every fold (their
probabilities averaged before the threshold) and each fold alone, each without and with flip
TTA (the task's mirrorings, :attr:`medseg.tasks.Task.tta_flips`), through
:func:`medseg.engine.probability.probability_model`.

Example:
    >>> scores = score_cv(cv, folds, fold_configs, device="cpu")
    >>> scores.oof_rows["TCGA_CS_4941"]["dice"], scores.test[("ensemble", "flip")]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from monai.data import Dataset
from torch import nn

from medseg.config import Config
from medseg.data.datasets import build_datasets
from medseg.data.folds import Folds
from medseg.engine.checkpoint import load_model
from medseg.engine.distributed import resolve_device
from medseg.engine.inference import score_loader
from medseg.engine.loaders import build_eval_loader
from medseg.engine.probability import TTA_MODES, probability_model
from medseg.metrics.measures import PatientMeasureMeter
from medseg.runs import CvFolder
from medseg.tasks import get_task

#: the name of the fold ensemble among the test's models (the others are ``fold_<k>``)
ENSEMBLE = "ensemble"


@dataclass
class CvScores:
    """What a cross-validation's checkpoints scored.

    Attributes:
        oof_meters: fold k's meter holds fold k's patients (out of fold), raw masks.
        oof_rows: every non-test patient's measures (raw masks), with its ``fold``.
        test: (model, tta) -> {patient: measures}; model is :data:`ENSEMBLE` or ``fold_<k>``,
            tta one of :data:`medseg.engine.probability.TTA_MODES`.
        ensemble_meter: the ensemble's test masks without TTA (to score a postprocessing).
        epochs: the epoch each member checkpoint saved.
    """

    oof_meters: list[PatientMeasureMeter]
    oof_rows: dict[str, dict[str, Any]]
    test: dict[tuple[str, str], dict[str, dict[str, Any]]]
    ensemble_meter: PatientMeasureMeter
    epochs: list[int | None]


def _eval_datasets(cfg: Config) -> dict[str, Dataset]:
    """The fold's val and test datasets with the evaluation transform (its own split file)."""
    data = dataclasses.replace(cfg.data, augment=False, cache=False, max_samples=None)
    return build_datasets(data, seed=cfg.seed)


def score_cv(cv: CvFolder, folds: Folds, fold_configs: Sequence[Config], *, device: str = "auto",
             progress: Callable[[str], None] = lambda line: None) -> CvScores:
    """Score every fold out of fold and every model on test (module docstring).

    Raises:
        CheckpointError: when a member checkpoint is missing or unreadable.
        DataError: when the data no longer hold a patient of the folds.
    """
    task = get_task(fold_configs[0].task)
    torch_device = resolve_device(device, option="--device")
    networks: list[nn.Module] = []
    epochs: list[int | None] = []
    oof_meters: list[PatientMeasureMeter] = []
    oof_rows: dict[str, dict[str, Any]] = {}

    def loader(dataset: Dataset, cfg: Config) -> Any:
        return build_eval_loader(dataset, cfg.train.batch_size, cfg.data.num_workers, torch_device)

    for index, cfg in enumerate(fold_configs):
        loaded = load_model(cv.member_checkpoint(index), torch_device)
        networks.append(loaded.model)
        epochs.append(loaded.epoch)
        meter = PatientMeasureMeter()
        rows = score_loader(loaded.model, loader(_eval_datasets(cfg)["val"], cfg), task, meter=meter)
        oof_meters.append(meter)
        oof_rows.update({patient: {"fold": index, **row} for patient, row in rows["per_patient_measures"].items()})
        progress(f"fold_{index}: scored {len(rows['per_patient_measures'])} patients out of fold")
    test_loader = loader(_eval_datasets(fold_configs[0])["test"], fold_configs[0])
    models = {ENSEMBLE: networks, **{f"fold_{index}": [net] for index, net in enumerate(networks)}}
    test: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    ensemble_meter = PatientMeasureMeter()
    for tta in TTA_MODES:
        for name, members in models.items():
            meter = ensemble_meter if (name, tta) == (ENSEMBLE, "none") else PatientMeasureMeter()
            model = probability_model(members, tta=tta, flips=task.tta_flips)
            test[(name, tta)] = score_loader(model, test_loader, task, meter=meter)["per_patient_measures"]
        progress(f"test: {len(folds.test)} patients scored by the ensemble and each fold, tta {tta}")
    return CvScores(oof_meters, oof_rows, test, ensemble_meter, epochs)
