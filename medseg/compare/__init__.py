"""Reproduce the paper's optimizer comparison: every method x seed under identical settings.

:func:`run_comparison` trains each run with :func:`medseg.engine.train` and writes
``results.csv``, ``results.md`` (mean ± std, 95% t-intervals, paired t-tests against Adam)
and PNG plots (validation curves, training loss, per-layer gradient flow).

Modules: :mod:`~medseg.compare.spec` (a planned run and its record),
:mod:`~medseg.compare.planning` (checks and run layout), :mod:`~medseg.compare.execution`
(training, the GPU pool, :func:`run_comparison`, and the job-scheduler path
:func:`plan_comparison` / :func:`run_planned` / :func:`collect_comparison`), :mod:`~medseg.compare.worker` (one run in a
subprocess), :mod:`~medseg.compare.results` (finished runs to rows and outputs),
:mod:`~medseg.compare.report` (tables), :mod:`~medseg.compare.plots` (figures),
:mod:`~medseg.compare.stats` (statistics over seeds), :mod:`~medseg.compare.grad_stats` and
:mod:`~medseg.compare.grad_recorder` (gradient norms per layer).
"""

from medseg.compare.execution import (
    collect_comparison,
    plan_comparison,
    run_comparison,
    run_planned,
)
from medseg.compare.spec import RunSpec
from medseg.compare.stats import PairedDifference, Summary, paired_difference, summarize

__all__ = [
    "PairedDifference",
    "RunSpec",
    "Summary",
    "collect_comparison",
    "paired_difference",
    "plan_comparison",
    "run_comparison",
    "run_planned",
    "summarize",
]
