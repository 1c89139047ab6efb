"""The comparison's tables: ``results.csv`` (one row per run), ``results.md`` (per method) and
``overlap.csv`` (the residual blocks' gradient overlap, per run, logged step and block).

A row is a flat dict: ``method``, ``seed``, ``test_<metric>`` for every scalar test metric,
``val_metric`` (the monitored validation metric's name), ``best_val_metric``, ``best_epoch``,
``val_curve_area`` (the validation curve's average height), ``epochs`` (epochs trained),
``target_metric``, ``epochs_to_target`` and ``seconds_to_target`` (empty when never reached),
``wall_time_s``, ``run_dir``, ``status`` ("ok"; "not learned": the test score is not above
chance, see :meth:`medseg.tasks.Task.learned`; "diverged": the training guard stopped the run,
no test metrics) and ``note`` (why a run is not "ok"). A segmentation run whose
``metrics.json`` holds ``measure_summary`` also carries, per measure, ``measure_<name>``
(its mean over the test patients where defined) and ``measure_<name>_n_undefined`` (the
patients where it is not). Only "ok" runs enter a statistic; the report lists the others on
their own.

Example:
    >>> rows = [{"method": "adam", "seed": 0, "test_auc": 0.8}]
    >>> table_metrics("classification", rows)
    ['auc']
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.compare.grad_stats import OVERLAP_VALUES
from medseg.compare.stats import (
    UNBOUNDED,
    Bounds,
    PairedDifference,
    holm,
    paired_difference,
    summarize,
)
from medseg.errors import ConfigError, MedsegError
from medseg.files import atomic_write, write_text
from medseg.metrics.measures import (
    HIGHER_IS_BETTER,
    measure_bounds,
    measure_label,
    measure_names,
    measure_stem,
)
from medseg.paths import regular_file
from medseg.tasks import LEARNED_MARGIN, get_task

LEADING_COLUMNS = ("method", "seed")
TRAILING_COLUMNS = (
    "val_metric",
    "best_val_metric",
    "best_epoch",
    "val_curve_area",
    "epochs",
    "target_metric",
    "epochs_to_target",
    "seconds_to_target",
    "wall_time_s",
    "run_dir",
    "status",
    "note",
)
OVERLAP_COLUMNS = ("method", "seed", "step", "block", *OVERLAP_VALUES)
#: the comparison's table of runs, in its output folder
RESULTS_CSV = "results.csv"


def measure_column(name: str) -> str:
    """The row key of a per-patient measure's per-run value: ``"measure_hd95_px"``."""
    return f"measure_{name}"


def undefined_column(name: str) -> str:
    """The row key of how many test patients a run's measure was undefined on."""
    return f"{measure_column(name)}_n_undefined"


def check_measures(names: Sequence[str], task: str) -> list[str]:
    """``names`` once each, in order, when each is a per-patient measure
    (:func:`medseg.metrics.measures.measure_names`) and the task is segmentation.

    Raises:
        ConfigError: naming the first unknown measure and listing the known ones, or when
            measures are named for a task without them.
    """
    known = measure_names()
    for name in names:
        if name not in known:
            raise ConfigError(f"--measures: unknown measure {name!r}; known: {', '.join(known)}")
    if names and not get_task(task).patient_split:
        raise ConfigError(f"--measures: the per-patient measures score segmentation, not {task}")
    return list(dict.fromkeys(names))


def csv_columns(rows: Sequence[dict[str, Any]], measures: Sequence[str] = ()) -> list[str]:
    """Columns in a stable order: method, seed, the test metrics (sorted), each named
    per-patient measure and its undefined count, then run facts."""
    test_columns = sorted({key for row in rows for key in row if key.startswith("test_")})
    measure_columns = [key for name in measures for key in (measure_column(name), undefined_column(name))]
    return [*LEADING_COLUMNS, *test_columns, *measure_columns, *TRAILING_COLUMNS]


def write_results_csv(rows: Sequence[dict[str, Any]], path: str | Path, measures: Sequence[str] = ()) -> None:
    """Write one line per run; a missing value (e.g. a target never reached) is left empty;
    ``measures``: the per-patient measures to add (:func:`csv_columns`)."""
    columns = csv_columns(rows, measures)
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in columns})


def read_results_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows :func:`write_results_csv` wrote, as text (an empty cell: a missing value),
    ready for :func:`render_results_md`.

    Raises:
        MedsegError: naming ``path`` when it is not a regular file, not CSV, or lacks the
            ``method``, ``seed`` or ``status`` column.
    """
    try:
        with regular_file(path).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in (*LEADING_COLUMNS, "status") if c not in (reader.fieldnames or [])]
            if missing:
                raise MedsegError(f"{path}: not a comparison's results table: no {', '.join(missing)} column")
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as err:
        raise MedsegError(f"{path}: cannot read the comparison's results: not CSV ({err})") from None
    except OSError as err:
        raise MedsegError(f"{path}: cannot read the comparison's results ({err.strerror or err})") from None
    if any(None in row or not str(row["seed"]).isdigit() for row in rows):
        raise MedsegError(f"{path}: cannot read the comparison's results: a row with more cells "
                          "than columns or a seed that is not a whole number")
    return rows


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


@dataclass(frozen=True)
class Measure:
    """A per-run number the report compares between methods: a row key, its on-screen name
    and its direction (None: neither higher nor lower is better; the verdict then says which
    way it differs). ``miss_is_past_last``: a run without a value (a target never reached)
    counts as one epoch past its last, so it ranks behind every run that got there."""

    key: str
    label: str
    higher_is_better: bool | None = True
    miss_is_past_last: bool = False

    def value(self, row: dict[str, Any]) -> float:
        """This measure of one run (NaN when the run lacks it)."""
        if self.miss_is_past_last and row.get(self.key) in (None, "") and row.get("epochs"):
            return float(row["epochs"]) + 1
        return _value(row, self.key)


#: the report's measures besides the test metrics: how fast and how well validation rose
CURVE_MEASURES = (
    Measure("val_curve_area", "val curve area"),
    Measure("epochs_to_target", "epochs to target", higher_is_better=False,
            miss_is_past_last=True),
)
#: the values epochs to target can take: the first epoch is 1
EPOCHS: Bounds = (1.0, math.inf)
#: Holm-adjusted p below this is reported as a difference
ALPHA = 0.05


def _value(row: dict[str, Any], key: str) -> float:
    """``row[key]`` as a float (NaN when missing)."""
    value = row.get(key)
    return math.nan if value is None or value == "" else float(value)


def _values(rows: Iterable[dict[str, Any]], key: str) -> list[float]:
    return [_value(row, key) for row in rows]


def _by_seed(rows: Iterable[dict[str, Any]], method: str, measure: Measure) -> dict[int, float]:
    return {
        int(row["seed"]): measure.value(row)
        for row in rows if row["method"] == method and _counted(row)
    }


def _counted(row: dict[str, Any]) -> bool:
    """Whether the run enters the statistics: it finished and learned (status "ok")."""
    return row.get("status", "ok") == "ok"


def format_number(value: Any, digits: int) -> str:
    """``value`` with ``digits`` decimals, or ``n/a`` when it is missing or not a finite
    number: a report never prints "nan".

    Example:
        >>> format_number(0.81234, 2), format_number(float("nan"), 2), format_number(None, 2)
        ('0.81', 'n/a', 'n/a')
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def format_summary(values: Sequence[float], digits: int, bounds: Bounds = UNBOUNDED) -> str:
    """``mean ± std [low, high]`` (the interval clipped to ``bounds``), or just the mean for
    one value, or ``n/a`` for none."""
    summary = summarize(values, bounds=bounds)
    if summary.n == 0:
        return "n/a"
    if summary.n == 1:
        return f"{summary.mean:.{digits}f} (1 seed)"
    return (
        f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f} "
        f"[{summary.ci_low:.{digits}f}, {summary.ci_high:.{digits}f}]"
    )


def _format_target(rows: Sequence[dict[str, Any]]) -> str:
    reached = [float(row["epochs_to_target"]) for row in rows
               if row.get("epochs_to_target") not in (None, "")]
    text = format_summary(reached, 1, EPOCHS) if reached else "—"
    return f"{text} ({len(reached)}/{len(rows)} reached)"


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
    measures: Sequence[str] = (),
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
        measures: per-patient measures (:func:`check_measures`) to tabulate and test too.
    """
    metrics = table_metrics(task, rows)
    task_ = get_task(task)
    labels = {metric: task_.label(metric) for metric in metrics}
    selection_bounds = task_.bounds(task_.selection_metric)
    seeds = sorted({int(row["seed"]) for row in rows})
    n_seeds = len(seeds)
    lines = ["# Optimizer comparison", ""]
    lines += [f"- {line}" for line in setup_lines]
    lines += [
        f"- Seeds: {n_seeds} ({', '.join(map(str, seeds))}); every method ran with the same "
        "seeds, data split, schedule and epochs.",
        f"- Cells: mean ± sample std over seeds [95% t-interval of the mean, df = n - 1, "
        "clipped to the values the measure can take]. "
        f"With {n_seeds} seed{'s' if n_seeds != 1 else ''} the intervals are wide: read "
        "overlapping intervals as 'no evidence of a difference', not as a tie.",
        f"- Only runs that learned enter a cell or a test: a run that diverged, or whose test "
        f"{get_task(task).label(get_task(task).selection_metric)} is not {LEARNED_MARGIN} above "
        f"chance ({get_task(task).chance}), is listed on its own below.",
        "",
        "## Test metrics per method",
        "",
    ]
    header = ["method", "learned / runs", *labels.values(), "best val", "val curve area",
              "epochs to target", "wall time (s)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for method in methods:
        all_rows = [row for row in rows if row["method"] == method]
        counted = [row for row in all_rows if _counted(row)]
        cells = [f"`{method}`", f"{len(counted)} / {len(all_rows)}"]
        cells += [format_summary(_values(counted, f"test_{m}"), 4, task_.bounds(m)) for m in metrics]
        cells.append(format_summary(_values(counted, "best_val_metric"), 4, selection_bounds))
        cells.append(format_summary(_values(counted, "val_curve_area"), 4, selection_bounds))
        cells.append(_format_target(counted))
        cells.append(format_summary(_values(counted, "wall_time_s"), 1, (0.0, math.inf)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_target_note(rows)]
    tested = [Measure(f"test_{metric}", f"test {label}") for metric, label in labels.items()]
    if measures:
        lines += _measure_section(rows, methods, measures)
        tested += [patient_measure(name) for name in measures]
    lines += ["", f"## Each method against `{baseline}`", ""]
    lines += _paired_table(rows, methods, baseline, [*tested, *CURVE_MEASURES])
    lines += _excluded_section(rows)
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def patient_measure(name: str) -> Measure:
    """The report's :class:`Measure` of a per-patient measure: its per-run mean, named with
    its unit, with its direction from :data:`medseg.metrics.measures.HIGHER_IS_BETTER`."""
    return Measure(measure_column(name), f"test {measure_label(name)} (patient mean)",
                   higher_is_better=HIGHER_IS_BETTER[measure_stem(name)])


def _direction(name: str) -> str:
    rule = HIGHER_IS_BETTER[measure_stem(name)]
    return "neither way is better" if rule is None else f"{'higher' if rule else 'lower'} is better"


def _measure_section(rows: Sequence[dict[str, Any]], methods: Sequence[str], measures: Sequence[str]) -> list[str]:
    """Each named per-patient measure per method: its per-run value over the runs that have
    it, how many runs lack it (scored before the measures existed) and how many patients
    were left out as undefined."""
    lines = ["", "## Per-patient measures per method", "",
             "A run's value is the mean of the measure over its test patients where it is "
             "defined (e.g. HD95 is undefined when a mask is empty); those patients are left "
             "out and counted. A run whose metrics.json predates the measures lacks them. "
             "Directions: " + "; ".join(f"{measure_label(name)}: {_direction(name)}" for name in measures)
             + ".", "",
             "| method | measure | runs with it / learned | value | patients undefined |",
             "|---|---|---|---|---|"]
    for name in measures:
        measure = patient_measure(name)
        for method in methods:
            counted = [row for row in rows if row["method"] == method and _counted(row)]
            values = [measure.value(row) for row in counted]
            undefined = sum(int(row.get(undefined_column(name), 0)) for row in counted)
            lines.append(f"| `{method}` | {measure_label(name)} | "
                         f"{sum(math.isfinite(v) for v in values)} / {len(counted)} | "
                         f"{format_summary(values, 4, measure_bounds(name))} | {undefined} |")
    return lines


def _excluded_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The runs left out of every statistic, with why: diverged, or did not learn."""
    left_out = [row for row in rows if not _counted(row)]
    if not left_out:
        return []
    lines = ["", "## Runs left out", "",
             "These runs diverged (the training guard stopped them, see docs/training.md) or "
             "did not learn; they are left out of every mean, interval and test above.",
             "", "| method | seed | status | why |", "|---|---|---|---|"]
    lines += [f"| `{row['method']}` | {row['seed']} | {row.get('status', '')} | "
              f"{row.get('note', '')} |" for row in left_out]
    return lines


def _target_note(rows: Sequence[dict[str, Any]]) -> list[str]:
    names = sorted({str(row.get("val_metric")) for row in rows if row.get("val_metric")})
    targets = sorted({float(row["target_metric"]) for row in rows
                      if row.get("target_metric") not in (None, "")
                      and math.isfinite(float(row["target_metric"]))})
    if not names:
        return []
    target = (f"'epochs to target' counts epochs until it first reached {targets[0]:.4f} (mean "
              "over the runs that reached it)." if targets else
              "'epochs to target' is empty: no run learned, so no best validation score fixed "
              "a target (set train.target_metric to give one).")
    return [
        f"'best val' is the best validation `{', '.join(names)}` of each run; 'val curve "
        "area' the area under its validation curve divided by the epochs (its average "
        f"height: higher means good sooner); {target}"
    ]


def _paired_table(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], baseline: str,
    measures: Sequence[Measure],
) -> list[str]:
    """One line per method and measure: the paired difference, its effect size, the raw and
    Holm-adjusted p and the verdict."""
    lines = [
        f"Per-seed difference `method - {baseline}` on the same seed, its mean [95% "
        "t-interval], Cohen's d_z (mean difference / sd of the differences), the two-sided "
        "paired t-test (scipy.stats.ttest_rel) and its p adjusted by Holm's method over the "
        f"{len(methods) - 1} method{'s' if len(methods) != 2 else ''} tested on that measure. "
        f"A verdict needs Holm p < {ALPHA}; "
        "otherwise it reads 'no evidence of a difference'. 'epochs to target': fewer is "
        "better, and a run that never reached the target counts as one epoch past its last.",
        "",
        "| method | measure | seeds paired | mean difference [95% CI] | d_z | p | p (Holm) "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    others = [method for method in methods if method != baseline]
    for measure in measures:
        tests = []
        for method in others:
            ours, theirs = _by_seed(rows, method, measure), _by_seed(rows, baseline, measure)
            common = sorted(set(ours) & set(theirs))
            tests.append(paired_difference([ours[s] for s in common], [theirs[s] for s in common]))
        adjusted = holm([test.p for test in tests])
        for method, test, p_holm in zip(others, tests, adjusted, strict=True):
            lines.append(_paired_line(method, measure, test, p_holm))
    return lines


def _paired_line(method: str, measure: Measure, test: PairedDifference, p_holm: float) -> str:
    if test.n < 2:
        difference = f"{test.mean:+.4f}" if test.n == 1 else "n/a"
        cells = [difference, "n/a", "n/a", "n/a", "too few seeds"]
    else:
        if measure.higher_is_better is None:
            word = "higher" if test.mean > 0 else "lower"
        else:
            word = "better" if (test.mean > 0) == measure.higher_is_better else "worse"
        verdict = ("no evidence of a difference" if not p_holm < ALPHA
                   else f"**{word}** than the baseline")
        cells = [
            f"{test.mean:+.4f} [{test.ci_low:+.4f}, {test.ci_high:+.4f}]",
            "n/a" if math.isnan(test.effect_size) else f"{test.effect_size:+.2f}",
            _format_p(test.p), _format_p(p_holm), verdict,
        ]
    return f"| `{method}` | {measure.label} | {test.n} | " + " | ".join(cells) + " |"


def write_results_md(path: str | Path, rows: Sequence[dict[str, Any]], **kwargs: Any) -> None:
    """Write :func:`render_results_md` to ``path`` (atomically)."""
    write_text(path, render_results_md(rows, **kwargs))
