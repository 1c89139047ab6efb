"""The tasks medseg trains, each defined once: data format, loss, meter, metrics, labels.

Every layer reads this registry (the trainer, ``evaluate``, ``compare``, the CLI, the run
cards and the app); no other module branches on a task's name. Importing it is cheap (no
torch, no MONAI): the loss and the meter are built on demand.

Example:
    >>> task = get_task("segmentation")
    >>> task.selection_metric, [m.key for m in task.metrics][:2]
    ('dice', ['dice', 'iou'])
    >>> meter = task.build_meter(threshold=0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from medseg.errors import MedsegError

if TYPE_CHECKING:
    from torch import nn

    from medseg.metrics import ClassificationMeter, SegmentationMeter

TaskName = Literal["segmentation", "classification"]
#: a run has learned when its test selection metric beats the task's chance score by this much
LEARNED_MARGIN = 0.1
MeterT = TypeVar("MeterT", "SegmentationMeter", "ClassificationMeter")


@dataclass(frozen=True)
class Metric:
    """A validation or test metric: its key in every file, and its names on screen."""

    key: str
    label: str  # short: run cards, tables, plots ("Dice")
    description: str  # long: the ``medseg evaluate`` table ("Dice (mean over slices)")
    bounds: tuple[float, float] = (0.0, 1.0)  # the values it can take (every metric is a rate)


@dataclass(frozen=True)
class Task(Generic[MeterT]):
    """One task: what it reads, how it is trained and scored, and how its numbers are named.

    Attributes:
        name: "segmentation" or "classification".
        data_format: the ``data.format`` of the config that selects this task.
        unit: what one sample is called ("slices", "patches").
        selection_metric: the validation metric (higher is better) that picks ``best.pt``.
        metrics: every metric recorded (``history.csv`` as ``val_<key>``, ``metrics.json``,
            run cards, ``medseg evaluate``), in display order.
        headline: the metrics the paper reports: ``medseg train``'s summary and the
            comparison tables.
        positive: the name of the positive class ("tumour").
        patient_split: the data is split by patient and the split saved as ``split.json``
            in the run folder (LGG); otherwise the data's own splits are used (PCam).
        architectures: the ``model.arch`` values that serve this task (builders in
            :data:`medseg.models.factory.MODELS`).
        chance: what a model that learned nothing scores on the selection metric, in words
            (:meth:`chance_score` computes it from a split's metrics).
        tta_flips: the mirrorings that test-time augmentation (``--tta flip``) averages
            over, as the spatial dimensions flipped in each pass (-1 width, -2 height; ``()``
            the input as is): those the training augmentation used
            (:mod:`medseg.data.transforms`), so the model saw mirrored data.
    """

    name: TaskName
    data_format: str
    unit: str
    selection_metric: str
    metrics: tuple[Metric, ...]
    headline: tuple[str, ...]
    positive: str
    patient_split: bool
    architectures: tuple[str, ...]
    chance: str
    tta_flips: tuple[tuple[int, ...], ...]
    _loss: Callable[[], nn.Module]
    _meter: Callable[[float], MeterT]
    _chance: Callable[[Mapping[str, Any]], float]

    @property
    def metric_keys(self) -> tuple[str, ...]:
        return tuple(metric.key for metric in self.metrics)

    def label(self, key: str) -> str:
        """The short on-screen name of metric ``key`` (the key itself when unknown)."""
        return next((m.label for m in self.metrics if m.key == key), key)

    def bounds(self, key: str) -> tuple[float, float]:
        """The values metric ``key`` can take (an interval over seeds is clipped to them)."""
        return next(m.bounds for m in self.metrics if m.key == key)

    def build_loss(self) -> nn.Module:
        """The training loss, taking logits."""
        return self._loss()

    def build_meter(self, threshold: float) -> MeterT:
        """A fresh meter that scores probabilities at ``threshold`` (``>=`` is positive)."""
        return self._meter(threshold)

    def chance_score(self, metrics: Mapping[str, Any]) -> float:
        """The selection metric a model that learned nothing gets on the split that
        ``metrics`` (a meter's output, e.g. ``metrics.json``) describes; NaN when the
        metrics lack the counts it needs."""
        try:
            return float(self._chance(metrics))
        except (KeyError, TypeError, ZeroDivisionError):
            return math.nan

    def learned(self, metrics: Mapping[str, Any]) -> bool:
        """Whether a model scoring ``metrics`` beats :meth:`chance_score` by at least
        :data:`LEARNED_MARGIN` on the selection metric.

        Example:
            >>> get_task("classification").learned({"auc": 0.58})
            False
        """
        score = metrics.get(self.selection_metric, math.nan)
        return bool(score >= self.chance_score(metrics) + LEARNED_MARGIN)


# The builders import torch and MONAI only when called: the run cards and the CLI's help
# read this registry without paying for them.
def _dice_ce_loss() -> nn.Module:
    """MONAI ``DiceCELoss`` on one sigmoid channel: soft Dice pooled over the whole batch
    (``batch=True``, smoothing 1, so tumour-free slices neither divide by zero nor dominate)
    plus binary cross entropy."""
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)


def _bce_loss() -> nn.Module:
    from torch import nn

    return nn.BCEWithLogitsLoss()


def _segmentation_meter(threshold: float) -> SegmentationMeter:
    from medseg.metrics import SegmentationMeter

    return SegmentationMeter(threshold=threshold)


def _classification_meter(threshold: float) -> ClassificationMeter:
    from medseg.metrics import ClassificationMeter

    return ClassificationMeter(threshold=threshold)


SEGMENTATION: Task[SegmentationMeter] = Task(
    name="segmentation",
    data_format="lgg",
    unit="slices",
    selection_metric="dice",
    metrics=(
        Metric("dice", "Dice", "Dice (mean over slices)"),
        Metric("iou", "IoU", "IoU (mean over slices)"),
        Metric("patient_dice", "patient Dice", "Dice (mean over patients, 3-D)"),
        Metric("empty_fp_rate", "empty-slice FP rate", "false-positive rate on empty slices"),
    ),
    headline=("dice", "iou", "patient_dice"),
    positive="tumour",
    patient_split=True,
    architectures=("unet",),
    chance="Dice of predicting no tumour anywhere: the share of tumour-free slices",
    tta_flips=((), (-1,)),  # left-right only: brains are near-symmetric, not upside down
    _loss=_dice_ce_loss,
    _meter=_segmentation_meter,
    _chance=lambda metrics: metrics["n_empty_slices"] / metrics["n_slices"],
)

CLASSIFICATION: Task[ClassificationMeter] = Task(
    name="classification",
    data_format="pcam",
    unit="patches",
    selection_metric="auc",
    metrics=(
        Metric("accuracy", "accuracy", "accuracy"),
        Metric("auc", "AUC", "AUC"),
        Metric("sensitivity", "sensitivity", "sensitivity"),
        Metric("specificity", "specificity", "specificity"),
    ),
    headline=("accuracy", "auc"),
    positive="tumour",
    patient_split=False,
    architectures=("resnet", "deep_resnet"),
    chance="AUC of a constant score: 0.5",
    tta_flips=((), (-1,), (-2,), (-2, -1)),  # a patch has no up or left: every mirroring
    _loss=_bce_loss,
    _meter=_classification_meter,
    _chance=lambda metrics: 0.5,
)

#: every task, by name
TASKS: dict[str, Task[Any]] = {task.name: task for task in (SEGMENTATION, CLASSIFICATION)}


def get_task(name: str) -> Task[Any]:
    """The task called ``name``.

    Raises:
        MedsegError: for an unknown name (listing the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise MedsegError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def task_for_format(data_format: str) -> Task[Any]:
    """The task that a ``data.format`` trains ("lgg" -> segmentation, "pcam" -> classification).

    Raises:
        MedsegError: for a format no task reads.
    """
    for task in TASKS.values():
        if task.data_format == data_format:
            return task
    formats = ", ".join(task.data_format for task in TASKS.values())
    raise MedsegError(f"data.format: {data_format!r} is not one of {formats}")


def task_for_arch(arch: str) -> Task[Any]:
    """The task that ``model.arch`` serves.

    Raises:
        MedsegError: for an architecture no task lists.
    """
    for task in TASKS.values():
        if arch in task.architectures:
            return task
    known = ", ".join(name for task in TASKS.values() for name in task.architectures)
    raise MedsegError(f"model.arch: {arch!r} is unknown; choose one of {known}")


def metric_label(key: str) -> str:
    """The short on-screen name of any task's metric ``key`` (the key when unknown)."""
    for task in TASKS.values():
        if key in task.metric_keys:
            return task.label(key)
    return key


def scalar_metrics(metrics: dict[str, Any], task: Task[Any]) -> dict[str, float]:
    """The task's recorded metrics among ``metrics``, as floats, in display order."""
    return {key: float(metrics[key]) for key in task.metric_keys if metrics.get(key) is not None}
