"""The engine callback that records a run's gradient norms (and, when the engine probed them,
the residual blocks' gradient overlap) into ``grad_stats.jsonl``.

Kept apart from :mod:`medseg.compare.grad_stats` (the file format and its reader) because
it subclasses :class:`medseg.engine.TrainCallback`, and importing the engine pulls in MONAI:
the report reads the file without it.

Example:
    >>> recorder = GradStatsRecorder(RunFolder(run_dir).grad_stats_file)
    >>> train(cfg, callbacks=[recorder])                                # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from medseg.compare.grad_stats import append_grad_stats
from medseg.engine.callbacks import StepInfo, TrainCallback


class GradStatsRecorder(TrainCallback):
    """Append the engine's per-layer gradient norms and overlap rows to a JSON-lines file
    (rank 0 only).

    Args:
        path: the ``.jsonl`` file; appended to, so a resumed run continues it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_step_end(self, info: StepInfo) -> None:
        if info.rank != 0 or info.grad_stats_before is None or info.grad_stats_after is None:
            return
        append_grad_stats(
            self.path, step=info.step, epoch=info.epoch, loss=info.loss,
            before=info.grad_stats_before, after=info.grad_stats_after, overlap=info.overlap,
        )
