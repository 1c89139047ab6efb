"""Where runs disagree on one slice, and which of them is right there.

On a slice, every pixel where the runs' masks differ is coloured by the run that is right
against the reference: a run's own colour (:func:`medseg.app.palette.run_colours`, the
colours of the training curves) where it alone is right, :data:`~medseg.app.palette.SEVERAL_RUNS_RIGHT`
where more than one run is right but not all (three runs or more). Pixels where the runs agree
are left alone, except where they are all wrong alike
(:data:`~medseg.app.palette.ALL_RUNS_WRONG`): an error no run avoids.

Example:
    >>> import numpy as np
    >>> reference = np.array([[1, 1, 0, 0]])
    >>> found = disagreement({"a": np.array([[1, 0, 1, 0]]), "b": np.array([[1, 1, 1, 0]])}, reference)
    >>> found.only_right["b"].astype(int).tolist(), found.all_wrong.astype(int).tolist()
    ([[0, 1, 0, 0]], [[0, 0, 1, 0]])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from medseg.app.palette import ALL_RUNS_WRONG, SEVERAL_RUNS_RIGHT, rgb, run_colours
from medseg.imaging.palette import Layer, LegendEntry


@dataclass(frozen=True)
class Disagreement:
    """The disagreement map of one slice; every mask is (H, W) boolean.

    Attributes:
        only_right: per run (in order), the pixels where the runs differ and it alone is right.
        several_right: where the runs differ and more than one of them is right.
        all_wrong: where the runs agree and all of them differ from the reference.
        labels: the runs' names as the legend shows them.
    """

    only_right: dict[str, np.ndarray]
    several_right: np.ndarray
    all_wrong: np.ndarray
    labels: dict[str, str]

    @property
    def differ(self) -> np.ndarray:
        """Every pixel where the runs' masks differ."""
        return np.logical_or.reduce([*self.only_right.values(), self.several_right])

    def legend(self) -> tuple[LegendEntry, ...]:
        """The map's colours and their meanings (several right only for three runs or more)."""
        colours = run_colours(list(self.only_right))
        entries = [LegendEntry(f"{self.labels[run]} right", rgb(colours[run]),
                               "the runs differ; only this run matches the reference")
                   for run in self.only_right]
        if len(self.only_right) > 2:
            entries.append(LegendEntry("Several right", rgb(SEVERAL_RUNS_RIGHT),
                                       "the runs differ; more than one (not all) matches the reference"))
        entries.append(LegendEntry("All wrong", rgb(ALL_RUNS_WRONG),
                                   "the runs agree, and all differ from the reference"))
        return tuple(entries)

    def layers(self) -> list[Layer]:
        """The map as (mask, rgb) layers for :func:`medseg.app.viewer.compose`, in the legend's
        order (the masks never overlap)."""
        masks = [*self.only_right.values(), *([self.several_right] if len(self.only_right) > 2 else []),
                 self.all_wrong]
        return [(mask, entry.rgb) for mask, entry in zip(masks, self.legend(), strict=True)]


def disagreement(masks: Mapping[str, np.ndarray], reference: np.ndarray,
                 labels: Mapping[str, str] | None = None) -> Disagreement:
    """The disagreement map of two or more runs' masks on one slice.

    Args:
        masks: each run's (H, W) mask (nonzero: tumour), in the order the page shows the runs.
        reference: the (H, W) reference mask.
        labels: the runs' names in the legend (default: the keys of ``masks``).

    Raises:
        ValueError: for fewer than two runs, or masks whose shapes differ.
    """
    if len(masks) < 2:
        raise ValueError(f"a disagreement needs two runs or more, got {len(masks)}")
    target = np.asarray(reference) > 0
    predicted = {run: np.asarray(mask) > 0 for run, mask in masks.items()}
    shapes = {mask.shape for mask in predicted.values()} | {target.shape}
    if len(shapes) != 1:
        raise ValueError(f"the masks differ in size: {sorted(shapes)}")
    right = np.stack([mask == target for mask in predicted.values()])
    count = right.sum(axis=0)
    differ = (count > 0) & (count < len(predicted))
    only = {run: differ & right[i] & (count == 1) for i, run in enumerate(predicted)}
    return Disagreement(only, differ & (count > 1), count == 0,
                        {run: (labels or {}).get(run, run) for run in predicted})
