"""Optimizers for medseg: ZNorm (Z-score gradient normalization, Yun 2024), the baselines it is
compared with (Gradient Centralization, gradient-norm clipping, adaptive gradient clipping,
block-normalized gradients, LAMB) and a name-based factory.

The names below are imported on first use (PEP 562): the run config reads
:mod:`medseg.optim.settings` without loading torch.

Example:
    >>> from medseg.optim import build_optimizer
    >>> opt = build_optimizer("adam+znorm", model.parameters(), lr=1e-3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy import lazy_exports

if TYPE_CHECKING:
    from medseg.optim.factory import OPTIMIZER_NAMES, build_optimizer
    from medseg.optim.functional import blocknorm_, centralize_, znorm_
    from medseg.optim.settings import ZNORM_DEFAULTS, ZNormSettings
    from medseg.optim.stats import gradient_stats
    from medseg.optim.wrappers import (
        AdaptiveGradClip,
        BlockNorm,
        ClipGradNorm,
        GradCentralization,
        GradientTransform,
        ZNorm,
    )

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "OPTIMIZER_NAMES": "medseg.optim.factory",
    "build_optimizer": "medseg.optim.factory",
    "blocknorm_": "medseg.optim.functional",
    "centralize_": "medseg.optim.functional",
    "znorm_": "medseg.optim.functional",
    "ZNORM_DEFAULTS": "medseg.optim.settings",
    "ZNormSettings": "medseg.optim.settings",
    "gradient_stats": "medseg.optim.stats",
    "AdaptiveGradClip": "medseg.optim.wrappers",
    "BlockNorm": "medseg.optim.wrappers",
    "ClipGradNorm": "medseg.optim.wrappers",
    "GradCentralization": "medseg.optim.wrappers",
    "GradientTransform": "medseg.optim.wrappers",
    "ZNorm": "medseg.optim.wrappers",
}

__all__ = [
    "OPTIMIZER_NAMES",
    "ZNORM_DEFAULTS",
    "AdaptiveGradClip",
    "BlockNorm",
    "ClipGradNorm",
    "GradCentralization",
    "GradientTransform",
    "ZNorm",
    "ZNormSettings",
    "blocknorm_",
    "build_optimizer",
    "centralize_",
    "gradient_stats",
    "znorm_",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
