"""The one predictor: probabilities at the data's native size, for every reader of a model.

Validation, ``medseg evaluate``, ``medseg predict``, ``medseg compare`` and the app all get
their probabilities here. A segmenter trained at S x S sees each slice resized to S x S
(the evaluation transform); its probabilities are resized bilinearly back to the slice's own
height and width, in :func:`predict_probabilities` only, so every reported score is computed
against the reference mask at its native resolution (256 x 256 for LGG).

Example:
    >>> probs = slice_probabilities(loaded.model, slices_hwc, image_size=128)  # (N, 256, 256)
    >>> metrics = score_loader(loaded.model, loader, get_task("segmentation"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from medseg.data.preprocess import preprocess_image, preprocess_patch
from medseg.engine.probability import as_probability_model
from medseg.metrics import SegmentationMeter
from medseg.tasks import Task

_CHUNK = 16  # images per forward pass


def predict_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    *,
    size: tuple[int, int] | None = None,
    batch_size: int = _CHUNK,
) -> torch.Tensor:
    """Probabilities of ``model`` for preprocessed ``images`` (N, 3, S, S).

    Runs in eval mode under :func:`torch.inference_mode`, ``batch_size`` images at a time on
    the model's device.

    Args:
        model: a medseg segmenter or classifier (logits, read through a sigmoid), or a
            :class:`~medseg.engine.probability.ProbabilityModel` (an ensemble, mirrored).
        images: preprocessed batch, e.g. from :func:`medseg.data.preprocess_image`.
        size: for a segmenter, the (H, W) to resize the probabilities to bilinearly: the
            native size of the slices; None keeps (S, S).
        batch_size: images per forward pass.

    Returns:
        float32 CPU tensor in [0, 1]: (N, 1, H, W) for a segmenter, (N, 1) for a classifier.

    Raises:
        ValueError: for an empty or non-4-D batch.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probability = as_probability_model(model)
    outputs = []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            probs = probability(chunk.to(device, non_blocking=True)).float()
            if size is not None and probs.ndim == 4 and tuple(probs.shape[-2:]) != tuple(size):
                probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
            outputs.append(probs.clamp_(0, 1).cpu())
    model.train(was_training)
    return torch.cat(outputs)


def slice_probabilities(
    model: nn.Module, slices: np.ndarray | Sequence[np.ndarray], image_size: int
) -> np.ndarray:
    """Tumour probabilities of RGB slices in memory, at the slices' own size.

    Args:
        model: a segmenter.
        slices: (H, W, 3) uint8 slices of one size (pre-contrast, FLAIR, post-contrast), or
            an (N, H, W, 3) array of them.
        image_size: the model's input size (``config.data.image_size``).

    Returns:
        float32 array (N, H, W) in [0, 1].

    Raises:
        ValueError: when the slices differ in size or there are none.
        DataError: when a slice is not (H, W, 3) uint8.
    """
    if len(slices) == 0:
        raise ValueError("slice_probabilities needs at least one slice")
    height, width = slices[0].shape[:2]
    if any(image.shape[:2] != (height, width) for image in slices):
        raise ValueError("slice_probabilities needs slices of one size")
    outputs = []
    for start in range(0, len(slices), _CHUNK):
        batch = torch.stack([preprocess_image(image, image_size) for image in slices[start : start + _CHUNK]])
        outputs.append(predict_probabilities(model, batch, size=(height, width))[:, 0])
    return torch.cat(outputs).numpy()


def patch_probabilities(model: nn.Module, patches: np.ndarray) -> np.ndarray:
    """Tumour probability of each (96, 96, 3) uint8 PCam patch, with the evaluation transform.

    Returns:
        float32 array (N,).
    """
    batch = torch.stack([preprocess_patch(patch) for patch in patches])
    return predict_probabilities(model, batch)[:, 0].numpy()


def score_loader(model: nn.Module, loader: DataLoader, task: Task, threshold: float = 0.5,
                 meter: Any = None, postprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
    """Run ``model`` over ``loader`` and return ``task``'s metrics.

    Segmentation batches carry their masks at native size (the evaluation datasets do not
    resize them): probabilities are resized to each mask's size before scoring.

    Args:
        model: the network (unwrapped), or a probability model (an ensemble, mirrored).
        loader: evaluation batches (``image``, ``label``; ``patient`` and ``slice`` for LGG).
        task: the task whose meter scores the batches.
        threshold: probability at or above which a pixel (patch) is positive.
        meter: the meter to fill instead of ``task.build_meter(threshold)`` (``medseg
            evaluate``'s :class:`~medseg.metrics.measures.PatientMeasureMeter`).
        postprocess: applied to each patient's mask stack before scoring (a
            :class:`~medseg.metrics.measures.PatientMeasureMeter`'s ``compute(postprocess=)``).
    """
    if meter is None:
        meter = task.build_meter(threshold)
    for batch in loader:
        labels = batch["label"]
        if isinstance(meter, SegmentationMeter):
            patients, slices = list(batch["patient"]), [int(n) for n in batch["slice"]]
            if isinstance(labels, list):  # slices of several sizes: one at a time
                for i, label in enumerate(labels):
                    probs = predict_probabilities(model, batch["image"][i : i + 1], size=label.shape[-2:])
                    meter.update(probs, label[None], patients[i : i + 1], slices[i : i + 1])
            else:
                probs = predict_probabilities(model, batch["image"], size=labels.shape[-2:])
                meter.update(probs, labels, patients, slices)
        else:
            meter.update(predict_probabilities(model, batch["image"]), labels)
    return meter.compute() if postprocess is None else meter.compute(postprocess=postprocess)
