"""Per-layer gradient norms of a run, before and after the optimizer's transform, and the
gradient overlap of its residual blocks: the ``grad_stats.jsonl`` file, written step by step
and read back for the gradient-flow and overlap plots.

With ``train.log_grad_stats: true`` the engine computes :func:`medseg.optim.gradient_stats`
before the optimizer step (raw, unscaled gradients) and after it (what the inner optimizer
used: ZNorm-normalized, centralized or clipped) every ``train.log_every`` steps and hands
them to callbacks; :class:`medseg.compare.grad_recorder.GradStatsRecorder` passes them to
:func:`append_grad_stats`. The file holds one JSON object per logged step:
``{"step", "epoch", "loss", "layers", "before", "after"}`` where ``before``/``after`` are L2
norms in the order of ``layers`` (``model.named_parameters()``, input to output). When the
engine probed the residual blocks (:class:`medseg.analysis.OverlapProbe`), the object also
holds ``"overlap"``: one ``{"block", "skip_norm", "branch_norm", "total_norm", "cosine"}`` per
block, input to output, read back by :func:`read_overlap`.

Example:
    >>> append_grad_stats(path, step=1, epoch=1, loss=0.7,
    ...                   before={"conv.weight": {"norm": 2.0}},
    ...                   after={"conv.weight": {"norm": 1.0}})            # doctest: +SKIP
    >>> read_grad_stats(path)[0].after                                   # doctest: +SKIP
    (1.0,)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.analysis.overlap import OVERLAP_VALUES
from medseg.paths import regular_file


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
    overlap: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Append one step's norms (``gradient_stats`` dicts, layer -> {"norm", ...}) to ``path``.

    The layers are those of ``before``; a layer missing from ``after`` is recorded as null.
    ``overlap`` (the rows of :meth:`medseg.analysis.OverlapProbe.rows`) is stored when given;
    NaN cosines are stored as null.
    """
    layers = list(before)
    record: dict[str, Any] = {
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "layers": layers,
        "before": [before[name]["norm"] for name in layers],
        "after": [after.get(name, {}).get("norm") for name in layers],
    }
    if overlap is not None:
        record["overlap"] = [
            {"block": row["block"], **{key: _json_number(row[key]) for key in OVERLAP_VALUES}}
            for row in overlap
        ]
    with Path(path).open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _lines(path: str | Path) -> list[str]:
    """The lines of ``grad_stats.jsonl``, read only when it is a regular file (a FIFO would
    block; :func:`medseg.paths.regular_file` names it)."""
    return regular_file(path).read_text().splitlines()


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
    for line in _lines(path):
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


def read_overlap(path: str | Path) -> list[dict[str, Any]]:
    """The overlap rows of ``grad_stats.jsonl``: one dict per logged step and block, with
    ``step``, ``block`` and :data:`OVERLAP_VALUES` (null read back as NaN), in step order.

    Duplicate steps and a torn last line are handled as in :func:`read_grad_stats`; steps
    logged without overlap rows give none.
    """
    by_step: dict[int, list[dict[str, Any]]] = {}
    for line in _lines(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        by_step[int(record["step"])] = [
            {"step": int(record["step"]), "block": row["block"],
             **{key: math.nan if row[key] is None else float(row[key]) for key in OVERLAP_VALUES}}
            for row in record.get("overlap", [])
        ]
    return [row for step in sorted(by_step) for row in by_step[step]]


def _json_number(value: float) -> float | None:
    """``value``, or None for NaN and infinities (JSON has no such numbers)."""
    return value if math.isfinite(value) else None
