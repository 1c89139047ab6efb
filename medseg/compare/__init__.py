"""Reproduce the paper's optimizer comparison: every method x seed under identical settings.

:func:`run_comparison` trains each run with :func:`medseg.engine.train` and writes
``results.csv``, ``results.md`` (mean ± std, 95% t-intervals, paired t-tests against Adam)
and PNG plots (validation curves, training loss, per-layer gradient flow).
"""

from medseg.compare.runner import RunSpec, run_comparison
from medseg.compare.stats import PairedDifference, Summary, paired_difference, summarize

__all__ = [
    "PairedDifference",
    "RunSpec",
    "Summary",
    "paired_difference",
    "run_comparison",
    "summarize",
]
