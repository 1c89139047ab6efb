"""The comparison's tables: ``results.csv`` (one row per run), ``results.md`` (per method) and
``overlap.csv`` (the residual blocks' gradient overlap, per run, logged step and block).

A row is a flat dict: ``method``, ``seed``, ``test_<metric>`` for every scalar test metric,
``val_metric`` (the monitored validation metric's name), ``best_val_metric``, ``best_epoch``,
``target_metric``, ``epochs_to_target`` (empty when never reached), ``wall_time_s``,
``run_dir``, ``status`` ("ok", or "diverged": the training guard stopped the run) and
``note`` (the guard's message). Diverged runs carry no test metrics and are left out of every
statistic; the report lists them on their own.

Example:
    >>> rows = [{"method": "adam", "seed": 0, "test_auc": 0.8}]
    >>> table_metrics("classification", rows)
    ['auc']
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medseg.compare.grad_stats import OVERLAP_VALUES
from medseg.compare.stats import paired_difference, summarize
from medseg.files import atomic_write, write_text
from medseg.tasks import get_task

LEADING_COLUMNS = ("method", "seed")
TRAILING_COLUMNS = (
    "val_metric",
    "best_val_metric",
    "best_epoch",
    "target_metric",
    "epochs_to_target",
    "wall_time_s",
    "run_dir",
    "status",
    "note",
)
OVERLAP_COLUMNS = ("method", "seed", "step", "block", *OVERLAP_VALUES)


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Columns in a stable order: method, seed, the test metrics (sorted), then run facts."""
    test_columns = sorted({key for row in rows for key in row if key.startswith("test_")})
    return [*LEADING_COLUMNS, *test_columns, *TRAILING_COLUMNS]


def write_results_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write one line per run; a missing value (e.g. a target never reached) is left empty."""
    columns = csv_columns(rows)
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in columns})


def write_overlap_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write one line per run, logged step and residual block (:data:`OVERLAP_COLUMNS`); a
    NaN cosine (a zero part) is left empty."""
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=OVERLAP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in OVERLAP_COLUMNS})


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def table_metrics(task: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The task's headline metrics (:attr:`medseg.tasks.Task.headline`) that the rows
    actually carry (as ``test_<name>``), in table order.

    Raises:
        MedsegError: for an unknown task.
    """
    present = {key.removeprefix("test_") for row in rows for key in row if key.startswith("test_")}
    return [name for name in get_task(task).headline if name in present]


def _values(rows: Iterable[dict[str, Any]], key: str) -> list[float]:
    values = []
    for row in rows:
        value = row.get(key)
        values.append(math.nan if value is None or value == "" else float(value))
    return values


def _by_seed(rows: Iterable[dict[str, Any]], method: str, key: str) -> dict[int, float]:
    return {
        int(row["seed"]): _values([row], key)[0]
        for row in rows if row["method"] == method and _learned(row)
    }


def _learned(row: dict[str, Any]) -> bool:
    """Whether the run finished (not stopped by the divergence guard)."""
    return row.get("status", "ok") == "ok"


def format_summary(values: Sequence[float], digits: int) -> str:
    """``mean ± std [low, high]``, or just the mean for one value, or ``n/a`` for none."""
    summary = summarize(values)
    if summary.n == 0:
        return "n/a"
    if summary.n == 1:
        return f"{summary.mean:.{digits}f} (1 seed)"
    return (
        f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f} "
        f"[{summary.ci_low:.{digits}f}, {summary.ci_high:.{digits}f}]"
    )


def _format_target(rows: Sequence[dict[str, Any]]) -> str:
    values = _values(rows, "epochs_to_target")
    reached = [value for value in values if math.isfinite(value)]
    text = format_summary(reached, 1) if reached else "—"
    return f"{text} ({len(reached)}/{len(values)} reached)"


def _format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def render_results_md(
    rows: Sequence[dict[str, Any]],
    *,
    task: str,
    methods: Sequence[str],
    baseline: str,
    setup_lines: Sequence[str] = (),
    images: Sequence[str] = (),
) -> str:
    """The per-method report as Markdown.

    Args:
        rows: one dict per run (see the module docstring).
        task: "segmentation" or "classification"; picks the headline metrics and their
            on-screen names (:mod:`medseg.tasks`).
        methods: the methods in table order.
        baseline: the method every other one is paired against (same seeds).
        setup_lines: bullet points describing the comparison (config, data, epochs...).
        images: PNG file names (relative to the report) to show at the end.
    """
    metrics = table_metrics(task, rows)
    labels = {metric: get_task(task).label(metric) for metric in metrics}
    seeds = sorted({int(row["seed"]) for row in rows})
    n_seeds = len(seeds)
    lines = ["# Optimizer comparison", ""]
    lines += [f"- {line}" for line in setup_lines]
    lines += [
        f"- Seeds: {n_seeds} ({', '.join(map(str, seeds))}); every method ran with the same "
        "seeds, data split, schedule and epochs.",
        f"- Cells: mean ± sample std over seeds [95% t-interval of the mean, df = n - 1]. "
        f"With {n_seeds} seed{'s' if n_seeds != 1 else ''} the intervals are wide: read "
        "overlapping intervals as 'no evidence of a difference', not as a tie.",
        "",
        "## Test metrics per method",
        "",
    ]
    header = ["method", "runs", *labels.values(), "best val", "epochs to target", "wall time (s)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for method in methods:
        all_rows = [row for row in rows if row["method"] == method]
        method_rows = [row for row in all_rows if _learned(row)]
        diverged = len(all_rows) - len(method_rows)
        cells = [f"`{method}`", f"{len(method_rows)}" + (f" ({diverged} diverged)" if diverged else "")]
        cells += [format_summary(_values(method_rows, f"test_{m}"), 4) for m in metrics]
        cells.append(format_summary(_values(method_rows, "best_val_metric"), 4))
        cells.append(_format_target(method_rows))
        cells.append(format_summary(_values(method_rows, "wall_time_s"), 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_target_note(rows), *_diverged_section(rows)]
    lines += ["", f"## Paired difference against `{baseline}`", ""]
    lines += _paired_table(rows, methods, baseline, labels)
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def _diverged_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The runs the divergence guard stopped: listed, never averaged into a cell or a test."""
    stopped = [row for row in rows if not _learned(row)]
    if not stopped:
        return []
    lines = ["", "## Runs that diverged", "",
             "The training guard stopped these runs (see docs/training.md); they have no test "
             "metrics and are left out of every mean, interval and paired test above and below.",
             "", "| method | seed | what the guard saw |", "|---|---|---|"]
    lines += [f"| `{row['method']}` | {row['seed']} | {row.get('note', '')} |" for row in stopped]
    return lines


def _target_note(rows: Sequence[dict[str, Any]]) -> list[str]:
    names = sorted({str(row.get("val_metric")) for row in rows if row.get("val_metric")})
    targets = sorted({float(row["target_metric"]) for row in rows if row.get("target_metric")})
    if not names or not targets:
        return []
    return [
        f"'best val' is the best validation `{', '.join(names)}` of each run; 'epochs to "
        f"target' counts epochs until it first reached {targets[0]:.4f} (mean over the runs "
        "that reached it)."
    ]


def _paired_table(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], baseline: str,
    metrics: dict[str, str],
) -> list[str]:
    """The paired-test rows; ``metrics`` maps each metric key to its on-screen label."""
    lines = [
        f"Per-seed difference `method - {baseline}` on the same seed (positive: the method "
        "scores higher), its mean [95% t-interval], and the two-sided paired t-test "
        "(scipy.stats.ttest_rel). 'n/a' when fewer than 2 seeds are paired or the differences "
        "do not vary.",
        "",
        "| method | metric | seeds paired | mean difference [95% CI] | t | p |",
        "|---|---|---|---|---|---|",
    ]
    for method in methods:
        if method == baseline:
            continue
        for metric, metric_label in metrics.items():
            key = f"test_{metric}"
            ours, theirs = _by_seed(rows, method, key), _by_seed(rows, baseline, key)
            common = sorted(set(ours) & set(theirs))
            paired = paired_difference([ours[s] for s in common], [theirs[s] for s in common])
            if paired.n < 2:
                difference = f"{paired.mean:+.4f}" if paired.n == 1 else "n/a"
                t_text, p_text = "n/a", "n/a"
            else:
                difference = (
                    f"{paired.mean:+.4f} [{paired.ci_low:+.4f}, {paired.ci_high:+.4f}]"
                )
                t_text = "n/a" if math.isnan(paired.t) else f"{paired.t:.3f}"
                p_text = _format_p(paired.p)
            lines.append(
                f"| `{method}` | {metric_label} | {paired.n} | {difference} | {t_text} | {p_text} |"
            )
    return lines


def write_results_md(path: str | Path, rows: Sequence[dict[str, Any]], **kwargs: Any) -> None:
    """Write :func:`render_results_md` to ``path`` (atomically)."""
    write_text(path, render_results_md(rows, **kwargs))
