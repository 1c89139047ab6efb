"""Per-layer gradient norms of a run, before and after the optimizer's transform.

With ``train.log_grad_stats: true`` the engine computes :func:`medseg.optim.gradient_stats`
before the optimizer step (raw, unscaled gradients) and after it (what the inner optimizer
used: ZNorm-normalized, centralized or clipped) every ``train.log_every`` steps and hands
them to callbacks. :class:`GradStatsRecorder` appends them to ``grad_stats.jsonl``, one JSON
object per logged step: ``{"step", "epoch", "loss", "layers", "before", "after"}`` where
``before``/``after`` are L2 norms in the order of ``layers`` (``model.named_parameters()``,
input to output).

Example:
    >>> recorder = GradStatsRecorder(run_dir / "grad_stats.jsonl")
    >>> train(cfg, callbacks=[recorder])                                # doctest: +SKIP
    >>> snapshots = read_grad_stats(run_dir / "grad_stats.jsonl")       # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from medseg.compare.plots import GradSnapshot
from medseg.engine.callbacks import StepInfo, TrainCallback

GRAD_STATS_FILE = "grad_stats.jsonl"


class GradStatsRecorder(TrainCallback):
    """Append the engine's per-layer gradient norms to a JSON-lines file (rank 0 only).

    Args:
        path: the ``.jsonl`` file; appended to, so a resumed run continues it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_step_end(self, info: StepInfo) -> None:
        if info.rank != 0 or info.grad_stats_before is None or info.grad_stats_after is None:
            return
        layers = list(info.grad_stats_before)
        record = {
            "step": info.step,
            "epoch": info.epoch,
            "loss": info.loss,
            "layers": layers,
            "before": [info.grad_stats_before[name]["norm"] for name in layers],
            "after": [info.grad_stats_after.get(name, {}).get("norm") for name in layers],
        }
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_grad_stats(path: str | Path, *, weights_only: bool = True) -> list[GradSnapshot]:
    """Read ``grad_stats.jsonl`` back, one snapshot per step in step order.

    A step logged twice (a run interrupted after logging it and resumed from an earlier
    checkpoint) keeps its last record; a torn last line (killed mid-write) is skipped.

    Args:
        path: the file written by :class:`GradStatsRecorder`.
        weights_only: drop bias vectors (names ending in ``bias``), as gradient-flow plots
            usually do, so the x axis counts weight tensors from input to output.
    """
    by_step: dict[int, GradSnapshot] = {}
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        keep = [
            i for i, name in enumerate(record["layers"])
            if not (weights_only and name.endswith("bias")) and record["after"][i] is not None
        ]
        by_step[int(record["step"])] = GradSnapshot(
            step=int(record["step"]),
            layers=tuple(record["layers"][i] for i in keep),
            before=tuple(float(record["before"][i]) for i in keep),
            after=tuple(float(record["after"][i]) for i in keep),
        )
    return [by_step[step] for step in sorted(by_step)]
