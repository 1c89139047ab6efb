"""Probability models: what every reader of a model calls to turn images into probabilities.

A :class:`ProbabilityModel` maps a preprocessed batch (N, 3, S, S) to float32 probabilities
in [0, 1] ((N, 1, S, S) for a segmenter, (N, 1) for a classifier). They compose, the way
nnU-Net's predictor composes its fold ensemble and its test-time mirroring:

- :class:`Sigmoid`: one trained network (its logits through a sigmoid);
- :class:`Ensemble`: the mean of several members' probabilities (a CV folder's folds);
- :class:`Mirrored`: the mean over mirrored inputs, each output mirrored back (TTA);
- :class:`Autocast`: any of them with the forward pass in bf16 (or fp16), float32 out;

and :func:`probability_model` builds the usual stack from networks and a TTA name.
:func:`medseg.engine.inference.predict_probabilities` accepts a plain network (it wraps it in
:class:`Sigmoid`) or any of these, so evaluation, prediction, export and the app share them.

Which mirrorings make sense is the task's (:attr:`medseg.tasks.Task.tta_flips`): the flips
its training augmentation used, so the model saw mirrored data while training.

Example:
    >>> model = probability_model([fold0, fold1, fold2], flips=SEGMENTATION.tta_flips)
    >>> probs = predict_probabilities(model, batch, size=(256, 256))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: ``--tta`` choices: "none" predicts once; "flip" averages over the task's mirrorings
TTA_MODES = ("none", "flip")


class ProbabilityModel(nn.Module):
    """A module whose forward gives float32 probabilities in [0, 1] (not logits)."""


class Sigmoid(ProbabilityModel):
    """The probabilities of one network that outputs logits.

    Args:
        network: a medseg segmenter or classifier.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.network(images).float())


class Ensemble(ProbabilityModel):
    """The mean of its members' probabilities (nnU-Net's fold ensemble: probabilities are
    averaged before any threshold).

    Args:
        members: probability models of one task and input (at least one).

    Raises:
        ValueError: for no member.
    """

    def __init__(self, members: Sequence[ProbabilityModel]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = self.members[0](images)
        for member in self.members[1:]:
            total = total + member(images)
        return total / len(self.members)


class Mirrored(ProbabilityModel):
    """The mean of ``model``'s probabilities over mirrored copies of the input, each mirrored
    back (a classifier's outputs need no mirroring back).

    Args:
        model: the probability model to mirror.
        flips: the spatial dimensions flipped in each pass (negative: -1 is width, -2 is
            height); ``()`` is the unflipped pass. E.g. ``((), (-1,))``: as is and
            left-right.

    Raises:
        ValueError: for no pass, a repeated pass, or a dimension that is not spatial.
    """

    def __init__(self, model: ProbabilityModel, flips: Sequence[tuple[int, ...]]) -> None:
        super().__init__()
        passes = [tuple(sorted(dims)) for dims in flips]
        if not passes or len(set(passes)) != len(passes):
            raise ValueError(f"flips must be distinct passes, got {list(flips)}")
        if any(dim not in (-1, -2) for dims in passes for dim in dims):
            raise ValueError(f"flips name spatial dimensions -1 (width) and -2 (height), got {list(flips)}")
        self.model = model
        self.flips = tuple(passes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = None
        for dims in self.flips:
            probs = self.model(images.flip(dims) if dims else images)
            if dims and probs.ndim == images.ndim:
                probs = probs.flip(dims)
            total = probs if total is None else total + probs
        assert total is not None  # at least one pass (checked in __init__)
        return total / len(self.flips)


class Autocast(ProbabilityModel):
    """``model``'s probabilities with its forward pass under autocast to a low precision (bf16 on
    a GPU or a CPU with native bf16), optionally on channels-last images; float32 out.

    Args:
        model: a probability model, or a network of logits (wrapped in :class:`Sigmoid`).
        dtype: ``torch.bfloat16`` or ``torch.float16``.
        channels_last: feed channels-last images; the model's 4-D weights are converted to
            channels-last memory in place (as :meth:`torch.nn.Module.to` does).

    Raises:
        ValueError: for a ``dtype`` autocast does not lower to.

    Example:
        >>> model = Autocast(probability_model([network]), torch.bfloat16, channels_last=True)
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16, *,
                 channels_last: bool = False) -> None:
        super().__init__()
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"Autocast runs in torch.bfloat16 or torch.float16, got {dtype}")
        self.model = as_probability_model(model)
        self.dtype = dtype
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=self.dtype):
            return self.model(images)  # float32: Sigmoid takes the logits to float32 first


def as_probability_model(model: nn.Module) -> ProbabilityModel:
    """``model`` itself when it gives probabilities, else the network wrapped in :class:`Sigmoid`."""
    return model if isinstance(model, ProbabilityModel) else Sigmoid(model)


def probability_model(networks: Sequence[nn.Module], *, tta: str = "none",
                      flips: Sequence[tuple[int, ...]] = ((),)) -> ProbabilityModel:
    """The probability model of one or more networks of one task: their ensemble when there
    are several, mirrored over ``flips`` when ``tta`` is "flip".

    Args:
        networks: trained networks (logits), in eval mode on one device.
        tta: "none" or "flip" (:data:`TTA_MODES`).
        flips: the task's mirrorings (:attr:`medseg.tasks.Task.tta_flips`), used with "flip".

    Raises:
        ValueError: for no network or an unknown ``tta``.

    Example:
        >>> model = probability_model(fold_networks, tta="flip", flips=task.tta_flips)
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    members = [Sigmoid(network) for network in networks]
    if not members:
        raise ValueError("probability_model needs at least one network")
    model: ProbabilityModel = members[0] if len(members) == 1 else Ensemble(members)
    return Mirrored(model, flips) if tta == "flip" else model
