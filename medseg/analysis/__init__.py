"""Gradient analysis tools: the gradient-overlap probe of residual blocks (Yun 2024b).

Example:
    >>> from medseg.analysis import OverlapProbe
    >>> with OverlapProbe(model) as probe:
    ...     loss_fn(model(images), labels).backward()
    >>> probe.rows()
"""

from __future__ import annotations

from medseg.analysis.overlap import (
    OVERLAP_VALUES,
    RESIDUAL_SPLITS,
    OverlapProbe,
    OverlapRow,
    ResidualSplit,
)

__all__ = ["OVERLAP_VALUES", "RESIDUAL_SPLITS", "OverlapProbe", "OverlapRow", "ResidualSplit"]
