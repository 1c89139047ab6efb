"""Per-layer gradient norms of a run, before and after the optimizer's transform: the
``grad_stats.jsonl`` file, written step by step and read back for the gradient-flow plot.

With ``train.log_grad_stats: true`` the engine computes :func:`medseg.optim.gradient_stats`
before the optimizer step (raw, unscaled gradients) and after it (what the inner optimizer
used: ZNorm-normalized, centralized or clipped) every ``train.log_every`` steps and hands
them to callbacks; :class:`medseg.compare.grad_recorder.GradStatsRecorder` passes them to
:func:`append_grad_stats`. The file holds one JSON object per logged step:
``{"step", "epoch", "loss", "layers", "before", "after"}`` where ``before``/``after`` are L2
norms in the order of ``layers`` (``model.named_parameters()``, input to output).

Example:
    >>> append_grad_stats(path, step=1, epoch=1, loss=0.7,
    ...                   before={"conv.weight": {"norm": 2.0}},
    ...                   after={"conv.weight": {"norm": 1.0}})            # doctest: +SKIP
    >>> read_grad_stats(path)[0].after                                   # doctest: +SKIP
    (1.0,)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GRAD_STATS_FILE = "grad_stats.jsonl"


@dataclass(frozen=True)
class GradSnapshot:
    """Per-layer gradient norms at one optimizer step, ordered from input to output.

    ``after`` holds the norms the inner optimizer received (after ZNorm, GC or clipping);
    for plain Adam/AdamW it equals ``before``.
    """

    step: int
    layers: tuple[str, ...]
    before: tuple[float, ...]
    after: tuple[float, ...]


def append_grad_stats(
    path: str | Path, *, step: int, epoch: int, loss: float,
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
) -> None:
    """Append one step's norms (``gradient_stats`` dicts, layer -> {"norm", ...}) to ``path``.

    The layers are those of ``before``; a layer missing from ``after`` is recorded as null.
    """
    layers = list(before)
    record = {
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "layers": layers,
        "before": [before[name]["norm"] for name in layers],
        "after": [after.get(name, {}).get("norm") for name in layers],
    }
    with Path(path).open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_grad_stats(path: str | Path, *, weights_only: bool = True) -> list[GradSnapshot]:
    """Read ``grad_stats.jsonl`` back, one snapshot per step in step order.

    A step logged twice (a run interrupted after logging it and resumed from an earlier
    checkpoint) keeps its last record; a torn last line (killed mid-write) is skipped.

    Args:
        path: the file written by :func:`append_grad_stats`.
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
