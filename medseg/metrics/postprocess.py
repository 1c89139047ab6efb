"""Mask post-processing: keep the largest connected component (Buda et al., per 3-D volume).

Example:
    >>> volume_mask = largest_connected_component(np.stack(slice_masks))  # (N, H, W)
"""

from __future__ import annotations

import numpy as np
import torch


def largest_connected_component(
    mask: np.ndarray | torch.Tensor, connectivity: int | None = None
) -> np.ndarray | torch.Tensor:
    """Keep only the largest connected foreground component of a binary mask.

    Uses MONAI's ``KeepLargestConnectedComponent``. Pass a patient's stacked slice masks
    (N, H, W) to keep the largest 3-D component, as the LGG dataset's authors do before
    computing per-volume Dice; a single (H, W) slice works too.

    Args:
        mask: binary mask (H, W) or (N, H, W), numpy or torch; values above 0.5 are foreground.
        connectivity: the most orthogonal hops between neighbours, 1 to ``mask.ndim``
            (1: faces only); None means full connectivity (diagonals included).

    Returns:
        A mask of the same type, shape and dtype as ``mask``; an empty mask stays empty.
    """
    from monai.transforms import KeepLargestConnectedComponent

    keep_largest = KeepLargestConnectedComponent(
        applied_labels=[1], is_onehot=False, connectivity=connectivity
    )
    binary = (torch.as_tensor(mask) > 0.5).to(torch.uint8)
    kept = keep_largest(binary[None].cpu())[0].as_tensor()
    if isinstance(mask, np.ndarray):
        return kept.numpy().astype(mask.dtype)
    return kept.to(dtype=mask.dtype, device=mask.device)
