"""The deployed model: one module from raw slices to tumour probabilities.

:class:`SliceModel` holds, in tensor operations a graph can record, what ``medseg predict``
does around the network (:func:`medseg.engine.inference.slice_probabilities`): resize each
slice bilinearly to ``image_size`` (no anti-aliasing, ``align_corners=False``), z-score each
channel of each slice (population std; a constant channel becomes 0), the network, the
sigmoid (or, for a :class:`~medseg.engine.probability.ProbabilityModel` such as a CV
folder's fold ensemble, its own probabilities), and the bilinear resize of the probabilities
back to the slice's own size. The rule
itself is defined by :mod:`medseg.data.preprocess`; this is its batched form, and every
export is checked against it (:mod:`medseg.export.parity`) before it is kept.

Example:
    >>> SliceModel(network, 256)(torch.zeros(2, 3, 240, 200)).shape
    torch.Size([2, 1, 240, 200])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medseg.engine.probability import as_probability_model


class SliceModel(nn.Module):
    """Tumour probabilities (N, 1, H, W) in [0, 1] of slices (N, 3, H, W): float32 values
    0..255, channels pre-contrast T1, FLAIR, post-contrast T1, any H and W.

    Args:
        network: the segmenter (logits (N, 1, S, S) for inputs (N, 3, S, S)), or a
            probability model of segmenters (:class:`~medseg.engine.probability.Ensemble`).
        image_size: the side S the network was trained at.
    """

    def __init__(self, network: nn.Module, image_size: int) -> None:
        super().__init__()
        self.probability = as_probability_model(network)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[-2:]
        resized = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                align_corners=False)
        mean = resized.mean(dim=(2, 3), keepdim=True)
        std = resized.std(dim=(2, 3), keepdim=True, unbiased=False)
        std = torch.where(std == 0, torch.ones_like(std), std)
        probs = self.probability((resized - mean) / std).float()
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        return probs.clamp(0, 1)
