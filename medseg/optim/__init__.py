"""Optimizers for medseg: ZNorm (Z-score gradient normalization, Yun 2024), the baselines it is
compared with (Gradient Centralization, gradient-norm clipping, adaptive gradient clipping,
block-normalized gradients, LAMB) and a name-based factory.

Example:
    >>> from medseg.optim import build_optimizer
    >>> opt = build_optimizer("adam+znorm", model.parameters(), lr=1e-3)
"""

from __future__ import annotations

from medseg.optim.factory import OPTIMIZER_NAMES, build_optimizer
from medseg.optim.functional import blocknorm_, centralize_, znorm_
from medseg.optim.stats import gradient_stats
from medseg.optim.wrappers import (
    AdaptiveGradClip,
    BlockNorm,
    ClipGradNorm,
    GradCentralization,
    GradientTransform,
    ZNorm,
)

__all__ = [
    "OPTIMIZER_NAMES",
    "AdaptiveGradClip",
    "BlockNorm",
    "ClipGradNorm",
    "GradCentralization",
    "GradientTransform",
    "ZNorm",
    "blocknorm_",
    "build_optimizer",
    "centralize_",
    "gradient_stats",
    "znorm_",
]
