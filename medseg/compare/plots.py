"""The comparison's figures: curves over epochs, gradient flow and the residual blocks' gradient
overlap, written as PNG files.

Figures are built with :class:`matplotlib.figure.Figure`, not ``pyplot``: nothing here
selects a backend or registers figures, so importing this module leaves a notebook's
matplotlib setup alone.

Example:
    >>> plot_curves({"adam": [[0.5, 0.7], [0.6, 0.8]]}, ylabel="val auc",
    ...             title="Validation", path="val.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medseg.compare.grad_stats import GradSnapshot
from medseg.compare.report import EPOCHS
from medseg.compare.stats import summarize
from medseg.files import atomic_path

DPI = 100
FIGSIZE = (7.0, 4.2)


def _padded(series: Sequence[Sequence[float]]) -> np.ndarray:
    length = max(len(s) for s in series)
    array = np.full((len(series), length), np.nan)
    for i, values in enumerate(series):
        array[i, : len(values)] = np.asarray(values, dtype=float)
    return array


def plot_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    *,
    ylabel: str,
    title: str,
    path: str | Path,
    log_y: bool = False,
    left_out: Mapping[str, Sequence[tuple[str, Sequence[float]]]] | None = None,
) -> Path:
    """Plot one line per method (mean over seeds) with a min-max band over seeds, and each
    run left out of the statistics as its own dashed line, labelled.

    Args:
        curves: method -> one sequence of per-epoch values per seed (epoch 1 first; runs of
            different lengths are allowed, missing epochs are ignored).
        ylabel: the y-axis label.
        title: the figure title.
        path: the PNG to write.
        log_y: use a logarithmic y axis (losses).
        left_out: method -> (what the run is and why it was left out, e.g. "seed 1, not
            learned"; its per-epoch values) per run that is in no mean: drawn thin and
            dashed in its method's colour, one legend entry each.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    left_out = left_out or {}
    methods = list(dict.fromkeys([*curves, *left_out]))
    colors = dict(zip(methods, _colors(len(methods)), strict=True))
    fig = Figure(figsize=FIGSIZE, layout="tight")
    ax = fig.subplots()
    for method, series in curves.items():
        series = [s for s in series if len(s)]
        if not series:
            continue
        values = _padded(series)
        epochs = np.arange(1, values.shape[1] + 1)
        with np.errstate(all="ignore"):
            mean = np.nanmean(values, axis=0)
        label = f"{method} (n={len(series)})"
        ax.plot(epochs, mean, color=colors[method], marker="o", markersize=3, label=label)
        if len(series) > 1:
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            ax.fill_between(epochs, low, high, color=colors[method], alpha=0.18, linewidth=0)
    for method, runs in left_out.items():
        for why, curve in runs:
            if len(curve):
                ax.plot(np.arange(1, len(curve) + 1), np.asarray(curve, dtype=float),
                        color=colors[method], linestyle="--", linewidth=1, marker="x",
                        markersize=4, label=f"{method} {why} (left out)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    subtitle = "line: mean over seeds, band: min-max over seeds"
    if any(len(curve) for runs in left_out.values() for _, curve in runs):
        subtitle += "; dashed: a run left out"
    ax.set_title(f"{title}\n({subtitle})", fontsize=10)
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _save(fig, path)
    return path


def plot_time_to_target(
    epochs: Mapping[str, Sequence[float | None]],
    *,
    max_epochs: int,
    target: str,
    path: str | Path,
) -> Path:
    """Epochs each run took to reach the target: one row per method, one dot per seed, the
    mean with its 95% t-interval over the seeds that reached it as a bar.

    Args:
        epochs: method -> epochs to target per seed (None: never reached; drawn as a cross
            at ``max_epochs + 1``, labelled "not reached").
        max_epochs: the epochs every run trained.
        target: the target, in words, for the title (e.g. "val Dice >= 0.80").
        path: the PNG to write.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    fig = Figure(figsize=FIGSIZE, layout="tight")
    ax = fig.subplots()
    never = max_epochs + 1
    methods = list(epochs)
    for row, (color, method) in enumerate(zip(_colors(len(methods)), methods, strict=True)):
        values = epochs[method]
        reached = [float(v) for v in values if v is not None]
        missed = len(values) - len(reached)
        ax.scatter(reached, row + _jitter(len(reached)), color=color, s=18, zorder=3)
        if missed:
            ax.scatter([never] * missed, row + _jitter(missed), color=color, marker="x", s=24,
                       zorder=3)
        summary = summarize(reached, bounds=EPOCHS)
        if summary.n >= 2:
            xerr = [[summary.mean - summary.ci_low], [summary.ci_high - summary.mean]]
            ax.errorbar(summary.mean, row, xerr=xerr, color=color, capsize=4,
                        marker="|", markersize=14, linewidth=2)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_ylim(len(methods) - 0.5, -0.5)  # first method on top
    ax.set_xlim(0.5, never + 0.5)
    ticks = [tick for tick in MaxNLocator(integer=True).tick_values(1, max_epochs)
             if 1 <= tick <= max_epochs]
    ax.set_xticks([*ticks, never], [*(str(int(t)) for t in ticks), "not\nreached"])
    ax.set_xlabel("epochs to reach the target (fewer is faster)")
    ax.set_title(f"Time to target: {target}\n(dots: seeds; bar: mean and 95% t-interval of "
                 "the seeds that reached it)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)
    return path


def plot_sensitivity(
    trials: Mapping[str, Sequence[tuple[float, float]]], *, xlabel: str, ylabel: str,
    path: str | Path, log_x: bool = True,
) -> Path:
    """Tuning trials' score against one setting (the learning rate): one line per method
    through its trials in the setting's order, a hollow marker at each failed trial (NaN
    score) on the bottom edge.

    Args:
        trials: method -> (setting, score) per trial.
        xlabel, ylabel: the axes' labels.
        path: the PNG to write.
        log_x: a logarithmic x axis (learning rates).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    fig = Figure(figsize=FIGSIZE, layout="tight")
    ax = fig.subplots()
    for color, (method, points) in zip(_colors(len(trials)), trials.items(), strict=True):
        ordered = sorted(points)
        scored = [(x, y) for x, y in ordered if np.isfinite(y)]
        failed = [x for x, y in ordered if not np.isfinite(y)]
        ax.plot([x for x, _ in scored], [y for _, y in scored], color=color, marker="o",
                markersize=4, label=f"{method} ({len(scored)}/{len(ordered)} scored)")
        if failed:
            ax.scatter(failed, [0.0] * len(failed), facecolors="none", edgecolors=color, s=30,
                       clip_on=False, zorder=3)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0.0)
    ax.set_title("Sensitivity: every tuning trial\n(hollow at 0: a trial that failed)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return path


def plot_budget(curves: Mapping[str, Sequence[float]], *, ylabel: str, path: str | Path) -> Path:
    """Best score so far against the number of tuning trials, one step line per method.

    Args:
        curves: method -> the best score after trial 1, 2, ... (NaN before the first score).
        ylabel: the y-axis label.
        path: the PNG to write.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    fig = Figure(figsize=FIGSIZE, layout="tight")
    ax = fig.subplots()
    for color, (method, best) in zip(_colors(len(curves)), curves.items(), strict=True):
        ax.step(np.arange(1, len(best) + 1), np.asarray(best, dtype=float), where="post",
                color=color, marker="o", markersize=3, label=method)
    ax.set_xlabel("tuning trials (the same points for every method)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title("Budget: the best trial so far", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return path


def _jitter(count: int, spread: float = 0.15) -> np.ndarray:
    """Vertical offsets that keep ``count`` dots of one row apart (none for a single dot)."""
    return np.linspace(-spread, spread, count) if count > 1 else np.zeros(count)


def pick_steps(steps: Sequence[int], count: int = 3) -> list[int]:
    """Up to ``count`` steps spread over ``steps`` (first, middle..., last), in order.

    Example:
        >>> pick_steps([1, 2, 3, 4, 5, 6, 7])
        [1, 4, 7]
    """
    ordered = sorted(set(steps))
    if len(ordered) <= count:
        return ordered
    indices = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in sorted(set(indices.tolist()))]


def plot_grad_flow(
    snapshots: Mapping[str, Sequence[GradSnapshot]],
    *,
    focus: str,
    path: str | Path,
    steps: int = 3,
) -> Path:
    """The paper's "gradient flow" view: per-layer gradient norm from input to output.

    Left: the ``focus`` method (ZNorm) before and after its transform at a few training steps.
    Right: every method's raw gradient norms at its first and last recorded step, for contrast.

    Args:
        snapshots: method -> snapshots of one run (usually seed 0), in any order.
        focus: the method whose before/after norms go on the left.
        path: the PNG to write.
        steps: how many steps to show on the left.

    Raises:
        ValueError: when ``focus`` has no snapshots.
    """
    if not snapshots.get(focus):
        raise ValueError(f"no gradient statistics recorded for {focus!r}")
    path = Path(path)
    fig = Figure(figsize=(12.0, 4.4), layout="tight")
    left, right = fig.subplots(1, 2, sharey=True)
    by_step = {snap.step: snap for snap in snapshots[focus]}
    for color, step in zip(_colors(steps), pick_steps(list(by_step), steps), strict=False):
        snap = by_step[step]
        x = np.arange(len(snap.layers))
        left.plot(x, snap.before, color=color, label=f"before, step {step}")
        left.plot(x, snap.after, color=color, linestyle="--", label=f"after, step {step}")
    left.set_title(f"{focus}: gradient norm before (solid) / after (dashed) the transform",
                   fontsize=10)
    for color, (method, snaps) in zip(_colors(len(snapshots)), snapshots.items(), strict=True):
        if not snaps:
            continue
        ordered = sorted(snaps, key=lambda snap: snap.step)
        first, last = ordered[0], ordered[-1]
        right.plot(np.arange(len(first.before)), first.before, color=color, alpha=0.45,
                   linestyle=":", label=f"{method}, step {first.step}")
        if last is not first:
            right.plot(np.arange(len(last.before)), last.before, color=color,
                       label=f"{method}, step {last.step}")
    right.set_title("raw gradient norm per method (before any transform)", fontsize=10)
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_xlabel("layer index (input → output)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    left.set_ylabel("gradient L2 norm")
    _save(fig, path)
    return path


def plot_overlap(
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    path: str | Path,
) -> Path:
    """The gradient overlap of the residual blocks (Yun 2024b), per block and method.

    Three panels, x = residual blocks from input to output, one line per method: the norm of
    the gradient a block passes to its input (skip part + branch part), the ratio of the
    branch part's norm to the skip part's, and the cosine between the two parts. Line: the
    median over every logged step of every seed; band: 10th to 90th percentile.

    Args:
        rows: method -> overlap rows (``block``, ``total_norm``, ``skip_norm``,
            ``branch_norm``, ``cosine``) of all its logged steps and seeds.
        path: the PNG to write.

    Raises:
        ValueError: when no method has a row.
    """
    blocks = list(dict.fromkeys(row["block"] for method_rows in rows.values() for row in method_rows))
    if not blocks:
        raise ValueError("no gradient-overlap rows to plot")
    path = Path(path)
    fig = Figure(figsize=(14.0, 4.4), layout="tight")
    panels = fig.subplots(1, 3, sharex=True)
    quantities = (
        ("total_norm", "‖skip part + branch part‖", True),
        ("ratio", "‖branch part‖ / ‖skip part‖", True),
        ("cosine", "cosine(skip part, branch part)", False),
    )
    x = np.arange(len(blocks))
    for color, (method, method_rows) in zip(_colors(len(rows)), rows.items(), strict=True):
        for ax, (key, _, _) in zip(panels, quantities, strict=True):
            values = [[_overlap_value(row, key) for row in method_rows if row["block"] == block]
                      for block in blocks]
            low, mid, high = (np.array([_quantile(v, q) for v in values]) for q in (0.1, 0.5, 0.9))
            ax.plot(x, mid, color=color, marker="o", markersize=3, label=method)
            ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    for ax, (key, title, log_y) in zip(panels, quantities, strict=True):
        ax.set_title(title, fontsize=10)
        if log_y:
            ax.set_yscale("log")
        if key == "cosine":
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(x, blocks, rotation=90, fontsize=6 if len(blocks) > 12 else 8)
        ax.grid(True, alpha=0.3, which="both")
    panels[0].set_ylabel("gradient at the block input")
    panels[0].legend(fontsize=7)
    fig.suptitle("Gradient overlap in residual blocks (line: median over logged steps and "
                 "seeds, band: 10th-90th percentile)", fontsize=10)
    _save(fig, path)
    return path


def _overlap_value(row: Mapping[str, Any], key: str) -> float:
    if key != "ratio":
        return float(row[key])
    skip, branch = float(row["skip_norm"]), float(row["branch_norm"])
    return branch / skip if skip > 0 else np.nan


def _quantile(values: Sequence[float], q: float) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.quantile(finite, q)) if finite else np.nan


def _save(fig: Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _colors(count: int) -> list[tuple[float, float, float, float]]:
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(count)]
