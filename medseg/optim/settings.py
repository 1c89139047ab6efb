"""ZNorm's settings, defined once: their defaults and valid values, read by the transforms
(:mod:`medseg.optim.functional`), the wrappers (:mod:`medseg.optim.wrappers`) and the run
config (:class:`medseg.config.OptimConfig`). Block normalization shares ``eps`` and
``min_ndim``. Without torch, so the config loads fast.

Example:
    >>> ZNORM_DEFAULTS
    ZNormSettings(granularity='tensor', eps=1e-08, min_ndim=2)
    >>> ZNormSettings(eps=0.0)
    Traceback (most recent call last):
    ValueError: znorm eps must be a positive finite number, got 0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Granularity = Literal["tensor", "channel"]
GRANULARITIES: tuple[Granularity, ...] = ("tensor", "channel")


@dataclass(frozen=True)
class ZNormSettings:
    """ZNorm's settings, checked on creation.

    Attributes:
        granularity: ``"tensor"`` (one mean and std per gradient tensor) or ``"channel"``
            (per slice along dim 0: per output channel of a conv or linear weight).
        eps: added to the std (ZNorm) or the norm (block normalization); positive and finite.
        min_ndim: gradients with fewer dims (biases, norm-layer weights with 2) are left
            untouched.

    Raises:
        ValueError: naming the first invalid setting (:func:`check_znorm_settings`).
    """

    granularity: Granularity = "tensor"
    eps: float = 1e-8
    min_ndim: int = 2

    def __post_init__(self) -> None:
        check_znorm_settings(self.granularity, self.eps, self.min_ndim)


def check_znorm_settings(granularity: str, eps: float, min_ndim: int, prefix: str = "znorm ") -> None:
    """Raise ``ValueError`` naming the first invalid ZNorm setting, ``prefix`` before its name
    (``"optim."`` gives ``optim.eps must be ...``)."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"{prefix}granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}"
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
        raise ValueError(f"{prefix}eps must be a positive finite number, got {eps!r}")
    if isinstance(min_ndim, bool) or not isinstance(min_ndim, int) or min_ndim < 1:
        raise ValueError(f"{prefix}min_ndim must be an integer >= 1, got {min_ndim!r}")


#: the settings ZNorm, ``znorm_``, block normalization and the run config default to
ZNORM_DEFAULTS = ZNormSettings()
