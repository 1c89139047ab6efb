"""The tuning's part of a comparison's report: ``tuning.csv`` (every trial), the sensitivity
and budget plots, and the tuning section appended to ``results.md``.

Example:
    >>> write_tuning_outputs(out_dir, outcome)                          # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg.compare.plots import plot_budget, plot_sensitivity
from medseg.compare.tuning import (
    NEAR_BEST,
    NearBest,
    TrialResult,
    TuneSettings,
    best_so_far,
    near_best,
)
from medseg.files import atomic_write, write_text
from medseg.paths import regular_file

TUNING_CSV = "tuning.csv"
SENSITIVITY_PNG = "lr_sensitivity.png"
BUDGET_PNG = "budget.png"


@dataclass(frozen=True)
class TuningOutcome:
    """What a tuning found: the settings it ran under, every method's finished trials and
    chosen trial, the time-to-target bar and where it came from, the reference method, the
    selection metric's name and the epochs of every run."""

    settings: TuneSettings
    trials: Mapping[str, Sequence[TrialResult]]
    chosen: Mapping[str, TrialResult]
    target: float
    target_source: str
    reference: str
    metric_label: str
    epochs: int


def _setting(value: float) -> str:
    return f"{value:.3g}"


def _params(params: Mapping[str, float]) -> str:
    return ", ".join(f"`{key}={_setting(value)}`" for key, value in params.items())


def _near_best_cell(found: NearBest | None, total: int) -> list[str]:
    if found is None:
        return ["n/a", "n/a"]
    decades = "n/a" if math.isnan(found.decades) else f"{found.decades:.2f}"
    return [f"{_setting(found.low)} to {_setting(found.high)} ({found.count} of {total} trials)", decades]


def budget_points(trials: int) -> list[int]:
    """The trial counts the budget table shows: powers of two up to ``trials``, and ``trials``."""
    points, n = [], 1
    while n < trials:
        points.append(n)
        n *= 2
    return [*points, trials]


def render_tuning_section(outcome: TuningOutcome, images: Sequence[str] = ()) -> str:
    """The tuning section of ``results.md`` as Markdown."""
    settings = outcome.settings
    key = settings.sensitivity_key
    methods = list(outcome.trials)
    runs = settings.trials * len(methods) * len(settings.seeds)
    lines = [
        "", "## Tuning", "",
        f"- Budget: {settings.trials} trials per method x {len(methods)} methods x "
        f"{len(settings.seeds)} tuning seed{'s' if len(settings.seeds) != 1 else ''} = {runs} "
        f"training runs of {outcome.epochs} epochs ({runs * outcome.epochs} epochs), before the "
        "evaluation runs above.",
        f"- Search space: {settings.describe_space()}.",
        f"- Trial points: the first {settings.trials} points of the scrambled Sobol sequence "
        f"(Optuna's QMCSampler, seed {settings.sampler_seed}), the same points in the same "
        "order for every method.",
        f"- Tuning seeds: {', '.join(map(str, settings.seeds))}; never an evaluation seed.",
        f"- A trial's score: the best {outcome.metric_label} of its run, averaged over the "
        "tuning seeds. Each method's chosen trial has the highest score; ties go to fewer "
        "epochs to the target, then to the earlier trial. The tables above rerun each "
        "method at its chosen settings over the evaluation seeds.",
        f"- Target for time-to-target: {outcome.target:.4f}, {outcome.target_source}.",
        "",
        f"| method | trials scored / run | chosen trial | chosen settings | its score | "
        f"`{key}` within {NEAR_BEST} of the best | width (decades) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        trials = outcome.trials[method]
        scored = sum(math.isfinite(trial.value) for trial in trials)
        chosen = outcome.chosen[method]
        cells = [f"`{method}`", f"{scored} / {len(trials)}", str(chosen.number + 1),
                 _params(chosen.params), f"{chosen.value:.4f}",
                 *_near_best_cell(near_best(trials, key), len(trials))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"'within {NEAR_BEST} of the best': the lowest and highest `{key}` among the "
              f"trials whose score is at most {NEAR_BEST} below the method's best; a wider range "
              "is a method less sensitive to it (a trial between the two may score lower).", "",
              f"Best {outcome.metric_label} after n trials (the budget curve):", ""]
    counts = budget_points(settings.trials)
    lines.append("| method | " + " | ".join(f"n = {n}" for n in counts) + " |")
    lines.append("|---|" + "---|" * len(counts))
    for method in methods:
        running = best_so_far(outcome.trials[method])
        cells = [f"{running[n - 1]:.4f}" if n <= len(running) and math.isfinite(running[n - 1]) else "—"
                 for n in counts]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    if images:
        lines += ["", *[f"![{Path(name).stem}]({name})" for name in images]]
    return "\n".join(lines) + "\n"


def write_tuning_csv(outcome: TuningOutcome, path: Path) -> None:
    """One line per method and finished trial: ``method``, ``trial`` (from 1), each tuned
    setting, ``score`` (empty when it failed), ``epochs_to_target``, ``chosen`` (1 or 0)."""
    keys = list(outcome.settings.space)
    columns = ["method", "trial", *keys, "score", "epochs_to_target", "chosen"]
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for method, trials in outcome.trials.items():
            for trial in trials:
                writer.writerow([
                    method, trial.number + 1, *(trial.params[key] for key in keys),
                    trial.value if math.isfinite(trial.value) else "",
                    trial.epochs_to_target if math.isfinite(trial.epochs_to_target) else "",
                    int(trial.number == outcome.chosen[method].number),
                ])


def write_tuning_outputs(out_dir: Path, outcome: TuningOutcome) -> list[Path]:
    """Write ``tuning.csv``, the sensitivity and budget plots, and append the tuning section
    to ``out_dir/results.md`` (written just before by
    :func:`medseg.compare.results.write_outputs`); returns the files written."""
    key = outcome.settings.sensitivity_key
    csv_path = out_dir / TUNING_CSV
    write_tuning_csv(outcome, csv_path)
    sensitivity = plot_sensitivity(
        {method: [(trial.params[key], trial.value) for trial in trials]
         for method, trials in outcome.trials.items()},
        xlabel=key, ylabel=outcome.metric_label, path=out_dir / SENSITIVITY_PNG,
        log_x=outcome.settings.space[key].log)
    budget = plot_budget({method: best_so_far(trials) for method, trials in outcome.trials.items()},
                         ylabel=f"best {outcome.metric_label} so far", path=out_dir / BUDGET_PNG)
    report = out_dir / "results.md"
    section = render_tuning_section(outcome, [sensitivity.name, budget.name])
    write_text(report, regular_file(report).read_text() + section)
    return [csv_path, sensitivity, budget, report]
