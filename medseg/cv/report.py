"""A cross-validation's record: ``cv_results.json`` and the same, to read, ``cv_results.md``.

``cv_results.json`` holds ``folds``, ``seed``, ``test_patients``, ``fold_patients``,
``member_checkpoint``; ``out_of_fold`` (``per_patient``: every non-test patient's measures
and fold, each patient once; ``summary``: per measure the patients where it is defined,
mean, sd and 95% t-interval (:func:`medseg.compare.stats.summarize`); ``per_fold``: each
fold's patients, epoch and mean of each measure); ``test`` (``models``: per model,
"ensemble" or "fold_<k>", and per TTA mode, the per-patient measures and their summary;
``ensemble_gain``: per TTA mode, the ensemble's patient Dice minus the folds' mean patient
Dice, paired by test patient (:func:`medseg.compare.stats.paired_difference`);
``tta_gain``: the ensemble's patient Dice with flip TTA minus without; ``postprocessed``: the
ensemble's test measures after the chosen postprocessing, and its ``gain`` over the raw
masks); and ``postprocessing`` (the step
chosen on the out-of-fold predictions and the rule; the evidence is in
``postprocessing.json``). NaN is written as null.

Example:
    >>> results = write_results(cv, folds, scores, step, evidence)
    >>> results["out_of_fold"]["summary"]["dice"]["ci_low"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from medseg.compare.stats import paired_difference, summarize
from medseg.cv.choice import GAIN_MEASURE, GUARD_MEASURE, RULE
from medseg.cv.scoring import ENSEMBLE, CvScores
from medseg.data.folds import Folds
from medseg.engine.probability import TTA_MODES
from medseg.engine.records import write_json
from medseg.files import write_text
from medseg.metrics.measures import KEYS, measure_bounds, measure_label, measure_stem
from medseg.postprocessing import Postprocessing
from medseg.runs import CvFolder

#: the measures (by name without unit) the readable tables show; the JSON holds every one
SHOWN = ("dice", "iou", "hd95", "assd", "nsd", "lesion_sensitivity", "lesion_precision", "lesion_f1")
#: the measure ensembling, TTA and postprocessing are judged by
HEADLINE = "dice"


def _measures(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows.values():
        names.update((key, None) for key, value in row.items()
                     if key not in (*KEYS, "fold") and isinstance(value, (int, float)))
    return list(names)


def interval_summary(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Per measure: ``n`` patients where defined, ``mean``, ``std``, ``ci_low``, ``ci_high``
    (the 95% t-interval, clipped to what the measure can take)."""
    return {name: dataclasses.asdict(summarize([float(row[name]) for row in rows.values()],
                                               bounds=measure_bounds(name)))
            for name in _measures(rows)}


def _mean(rows: Mapping[str, Mapping[str, Any]], name: str) -> float:
    return summarize([float(row[name]) for row in rows.values()]).mean


def _per_fold(folds: Folds, scores: CvScores) -> list[dict[str, Any]]:
    table = []
    for index, patients in enumerate(folds.fold_patients):
        rows = {p: scores.oof_rows[p] for p in patients if p in scores.oof_rows}
        table.append({"fold": index, "patients": len(rows), "epoch": scores.epochs[index],
                      **{name: _mean(rows, name) for name in _measures(rows)}})
    return table


def _gain(better: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, float]) -> dict[str, float]:
    patients = sorted(baseline)
    paired = paired_difference([float(better[p][HEADLINE]) for p in patients], [baseline[p] for p in patients])
    return {"n": paired.n, "mean": paired.mean, "ci_low": paired.ci_low, "ci_high": paired.ci_high, "p": paired.p}


def _test(folds: Folds, scores: CvScores, step: Postprocessing) -> dict[str, Any]:
    names = [ENSEMBLE, *(f"fold_{index}" for index in range(folds.k))]
    models = {name: {tta: {"per_patient": scores.test[(name, tta)],
                           "summary": interval_summary(scores.test[(name, tta)])} for tta in TTA_MODES}
              for name in names}
    ensemble_gain = {}
    for tta in TTA_MODES:
        fold_mean = {p: summarize([float(scores.test[(name, tta)][p][HEADLINE]) for name in names[1:]]).mean
                     for p in scores.test[(ENSEMBLE, tta)]}
        ensemble_gain[tta] = _gain(scores.test[(ENSEMBLE, tta)], fold_mean)
    raw = {p: float(row[HEADLINE]) for p, row in scores.test[(ENSEMBLE, "none")].items()}
    postprocessed = scores.ensemble_meter.compute(postprocess=step.apply)["per_patient_measures"]
    return {"models": models, "ensemble_gain": ensemble_gain,
            "tta_gain": _gain(scores.test[(ENSEMBLE, "flip")], raw),
            "postprocessed": {"step": step.to_dict(), "per_patient": postprocessed,
                              "summary": interval_summary(postprocessed), "gain": _gain(postprocessed, raw)}}


def build_results(folds: Folds, scores: CvScores, step: Postprocessing) -> dict[str, Any]:
    """The content of ``cv_results.json`` (module docstring)."""
    return {
        "folds": folds.k, "seed": folds.seed, "test_patients": list(folds.test),
        "fold_patients": [list(fold) for fold in folds.fold_patients],
        "member_checkpoint": CvFolder.MEMBER_NAME,
        "out_of_fold": {"per_patient": scores.oof_rows, "summary": interval_summary(scores.oof_rows),
                        "per_fold": _per_fold(folds, scores)},
        "test": _test(folds, scores, step),
        "postprocessing": {"chosen": step.to_dict(), "described": step.describe(), "rule": RULE,
                           "evidence": CvFolder.POSTPROCESSING_NAME},
    }


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def interval_text(summary: Mapping[str, Any]) -> str:
    """An :func:`interval_summary` entry as ``mean [low, high]`` (n/a for no patient)."""
    if not summary["n"]:
        return "n/a"
    if summary["n"] < 2:
        return f"{_number(summary['mean'])} (1 patient)"
    return f"{_number(summary['mean'])} [{_number(summary['ci_low'])}, {_number(summary['ci_high'])}]"


def _shown(names: Sequence[str]) -> list[str]:
    return [name for name in names if measure_stem(name) in SHOWN]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def render_markdown(results: Mapping[str, Any], evidence: Mapping[str, Any]) -> str:
    """``cv_results.md``: the out-of-fold summary, per fold and per patient, the test scores
    of the ensemble and each fold (with and without flip TTA), and the postprocessing with
    each candidate's out-of-fold scores (``evidence``:
    :func:`medseg.cv.choice.choose_postprocessing`'s)."""
    oof, test = results["out_of_fold"], results["test"]
    shown = _shown(list(oof["summary"]))
    lines = [f"# Cross-validation: {results['folds']} folds (seed {results['seed']})", "",
             f"Out of fold: each of {len(oof['per_patient'])} patients scored once by the fold that did not "
             f"train on it (its `{results['member_checkpoint']}`). Test patients, held out: "
             f"{', '.join(results['test_patients'])}. Means over patients with their "
             "95% t-interval.", "", "## Out-of-fold summary", ""]
    lines += _table(["measure", "mean [95% CI]", "patients"],
                    [[measure_label(name), interval_text(oof["summary"][name]), str(oof["summary"][name]["n"])]
                     for name in shown])
    lines += ["## Per fold", ""]
    lines += _table(["fold", "patients", "epoch", *(measure_label(name) for name in shown)],
                    [[str(row["fold"]), str(row["patients"]), _number(row["epoch"]),
                      *(_number(row.get(name)) for name in shown)] for row in oof["per_fold"]])
    lines += ["## Per patient (out of fold)", ""]
    lines += _table(["patient", "fold", *(measure_label(name) for name in shown)],
                    [[patient, str(row["fold"]), *(_number(row.get(name)) for name in shown)]
                     for patient, row in sorted(oof["per_patient"].items())])
    lines += ["## Test: the ensemble against each fold", "",
              f"Mean patient {measure_label(HEADLINE)} [95% CI] on the test patients.", ""]
    lines += _table(["model", *(f"tta {tta}" for tta in TTA_MODES)],
                    [[name, *(interval_text(by_tta[tta]["summary"][HEADLINE]) for tta in TTA_MODES)]
                     for name, by_tta in test["models"].items()])
    gains = [[f"ensemble - mean of the folds (tta {tta})", _gain_text(gain)]
             for tta, gain in test["ensemble_gain"].items()]
    gains.append(["ensemble: tta flip - tta none", _gain_text(test["tta_gain"])])
    gains.append([f"ensemble: postprocessed ({results['postprocessing']['described']}) - raw",
                  _gain_text(test["postprocessed"]["gain"])])
    lines += _table(["what changed the test Dice", "difference [95% CI]"], gains)
    lines += ["## Postprocessing", "", f"Chosen on the out-of-fold predictions: "
              f"**{results['postprocessing']['described']}**. Rule: {results['postprocessing']['rule']}. "
              f"Recorded with its evidence in `{results['postprocessing']['evidence']}`.", ""]
    baseline = evidence["baseline"]
    lines += _table(["step", f"OOF {measure_label(GAIN_MEASURE)}", f"OOF {measure_label(GUARD_MEASURE)}", "passes"],
                    [["none (raw masks)", _number(baseline[GAIN_MEASURE]), _number(baseline[GUARD_MEASURE]), "—"],
                     *([entry["described"], _number(entry[GAIN_MEASURE]), _number(entry[GUARD_MEASURE]),
                        "yes" if entry["passes"] else "no"] for entry in evidence["candidates"])])
    return "\n".join(lines)


def _gain_text(gain: Mapping[str, Any]) -> str:
    if gain["n"] < 2:
        return f"{_number(gain['mean'])} ({gain['n']} patient)"
    return f"{_number(gain['mean'])} [{_number(gain['ci_low'])}, {_number(gain['ci_high'])}]"


def write_results(cv: CvFolder, folds: Folds, scores: CvScores, step: Postprocessing,
                  evidence: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``cv_results.json`` and ``cv_results.md`` (atomically) and return the results;
    ``step`` and its ``evidence`` as :func:`medseg.cv.choice.choose_postprocessing` gives them."""
    results = build_results(folds, scores, step)
    write_json(results, cv.results_file)
    write_text(cv.report_file, render_markdown(results, evidence))
    return results
