"""Statistics over seeds: mean, standard deviation, t confidence intervals (clipped to what
the quantity can take), paired t-tests with their effect size, Holm's correction for testing
many methods, and the area under a validation curve.

With the handful of seeds a comparison can afford, the t-distribution (not the normal) gives
the interval: for n = 3 the 95% half-width is 4.30 standard errors, not 1.96.

Example:
    >>> paired = paired_difference([0.9, 0.8, 0.7], [0.8, 0.6, 0.4])
    >>> round(paired.mean, 4), round(paired.sd, 4), round(paired.t, 4)
    (0.2, 0.1, 3.4641)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
#: the values a quantity can take, (low, high): a t-interval is clipped to them
Bounds = tuple[float, float]
UNBOUNDED: Bounds = (-math.inf, math.inf)


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one metric over ``n`` seeds.

    ``std`` is the sample standard deviation (ddof=1); ``ci_low``/``ci_high`` bound the 95%
    t-interval of the mean, clipped to the quantity's bounds (so it may not be symmetric about
    the mean). Both are NaN when ``n < 2``.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class PairedDifference:
    """A method minus the baseline over the same seeds (positive: the method scores higher).

    ``mean``/``sd`` describe the per-seed differences, ``ci_low``/``ci_high`` the 95%
    t-interval of their mean, ``t``/``p`` the two-sided paired t-test
    (:func:`scipy.stats.ttest_rel`). Everything but ``n`` and ``mean`` is NaN when ``n < 2``;
    ``t`` and ``p`` are NaN when the differences do not vary.
    """

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    t: float
    p: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    @property
    def effect_size(self) -> float:
        """Cohen's d_z: the mean difference in standard deviations of the differences (NaN
        when fewer than 2 pairs or the differences do not vary)."""
        if not self.sd > 0:  # NaN or zero
            return math.nan
        return self.mean / self.sd


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def t_half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t confidence interval of a mean of ``n`` values with sample sd ``sd``."""
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sd / math.sqrt(n))


def summarize(values: Sequence[float], confidence: float = CONFIDENCE, bounds: Bounds = UNBOUNDED) -> Summary:
    """Summarize one metric over seeds; NaN or missing values (a run without it) are dropped.

    Args:
        values: one value per seed (or patient).
        confidence: of the t-interval.
        bounds: the values the quantity can take; the interval is clipped to them (a Dice
            interval never passes 1, a distance's never goes below 0).

    Example:
        >>> s = summarize([0.1, 0.2, 0.3])
        >>> round(s.mean, 4), round(s.std, 4), round(s.half_width, 4)
        (0.2, 0.1, 0.2484)
        >>> summarize([0.1, 0.2, 0.3], bounds=(0.0, 1.0)).ci_low
        0.0
    """
    array = _finite(values)
    n = int(array.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    std = float(array.std(ddof=1)) if n >= 2 else math.nan
    half = t_half_width(std, n, confidence)
    if math.isnan(half):
        return Summary(n, mean, std, math.nan, math.nan)
    low, high = bounds
    return Summary(n, mean, std, max(low, mean - half), min(high, mean + half))


def paired_difference(
    values: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> PairedDifference:
    """Compare ``values`` with ``baseline`` paired by position (the same seed).

    Pairs where either value is NaN are dropped.

    Raises:
        ValueError: when the two sequences have different lengths.
    """
    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n == 0:
        return PairedDifference(0, *([math.nan] * 6))
    diff = a - b
    mean = float(diff.mean())
    if n < 2:
        return PairedDifference(n, mean, *([math.nan] * 5))
    sd = float(diff.std(ddof=1))
    half = t_half_width(sd, n, confidence)
    if sd == 0.0:
        t_stat, p_value = math.nan, math.nan
    else:
        result = stats.ttest_rel(a, b)
        t_stat, p_value = float(result.statistic), float(result.pvalue)
    return PairedDifference(n, mean, sd, mean - half, mean + half, t_stat, p_value)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The k-th smallest of the m finite p-values is multiplied by ``m - k + 1``, then made
    non-decreasing in that order and capped at 1; comparing the adjusted values with 0.05
    keeps the chance of any false "difference" among the m tests at 5%. NaN entries (tests
    that could not be run) stay NaN and do not count in m.

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03, math.nan])]
        [0.03, 0.06, 0.06, nan]
    """
    finite = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted


def curve_area(values: Sequence[float]) -> float:
    """The area under a validation curve over epochs, divided by its length: the curve's
    average height, in the metric's own units (trapezoid rule, epochs 1 apart).

    A method that gets good sooner has a larger area at the same final score. Missing (NaN)
    epochs are skipped; one finite value is its own area; none gives NaN.

    Example:
        >>> round(curve_area([0.2, 0.6, 0.8]), 4)
        0.55
    """
    array = np.asarray(values, dtype=float)
    epochs = np.flatnonzero(np.isfinite(array))
    if epochs.size == 0:
        return math.nan
    if epochs.size == 1:
        return float(array[epochs[0]])
    return float(np.trapezoid(array[epochs], epochs) / (epochs[-1] - epochs[0]))

