"""``medseg compare --collect`` reads files that a crash, a disk or a hand may have damaged:
each damage is one line naming the file and the problem (exit 2), never a traceback."""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager

import pytest

from medseg.cli.main import main
from medseg.compare import run_comparison
from medseg.config import load_config


@pytest.fixture(scope="module")
def finished(tiny_config_file, tmp_path_factory):
    """A finished comparison of one run (adam, seed 0) and a collect command for it."""
    out = tmp_path_factory.mktemp("collect")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("medseg.tasks.LEARNED_MARGIN", -1.0)
        run_comparison(load_config(tiny_config_file), ["adam"], [0], out)

    def collect():
        return main(["compare", str(tiny_config_file), "--methods", "adam", "--seeds", "1",
                     "--out", str(out), "--collect"])

    return collect, out / "runs" / "adam" / "seed0"


@contextmanager
def _replaced(path, text):
    original = path.read_bytes()
    path.write_text(text)
    try:
        yield path
    finally:
        path.write_bytes(original)


def _metrics(run_dir, **changes):
    return json.dumps({**json.loads((run_dir / "metrics.json").read_text()), **changes})


def _history_without(run_dir, column):
    with open(run_dir / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [name for name in rows[0] if name != column]
    return ",".join(kept) + "\n" + "\n".join(",".join(row[name] for name in kept) for row in rows) + "\n"


@pytest.mark.parametrize(
    ("name", "damage", "problem"),
    [
        ("metrics.json", lambda run: "[0.5, 0.7]", "cannot read the test metrics (not a JSON object)"),
        ("metrics.json", lambda run: _metrics(run, auc="high"), "auc is 'high', not a number (or null)"),
        ("metrics.json", lambda run: _metrics(run, accuracy=[1]), "accuracy is '[1]', not a number (or null)"),
        ("metrics.json", lambda run: _metrics(run, epoch="x"), "epoch is 'x', not a whole number >= 1"),
        ("metrics.json", lambda run: _metrics(run, n=-3), "n is '-3', not a count (a whole number >= 0)"),
        ("history.csv", lambda run: _history_without(run, "epoch"),
         "cannot read the run history: no epoch column"),
        ("history.csv", lambda run: "epoch,val_auc\nnan,0.5\n",
         "cannot read the run history: row 1 holds 'nan' in epoch, not an epoch number"),
        ("history.csv", lambda run: "epoch,val_auc\n,0.5\n",
         "cannot read the run history: row 1 holds '' in epoch, not an epoch number"),
        ("compare_run.json",
         lambda run: json.dumps({**json.loads((run / "compare_run.json").read_text()), "wall_time_s": "slow"}),
         "wall_time_s must be a number of seconds, got 'slow'; remove that run directory"),
    ],
    ids=["metrics-list", "metric-text", "metric-list", "epoch-text", "count-negative", "no-epoch-column",
         "epoch-nan", "epoch-empty", "wall-time-text"],
)
def test_a_damaged_file_is_one_line_naming_it(finished, capsys, name, damage, problem):
    collect, run_dir = finished
    with _replaced(run_dir / name, damage(run_dir)):
        assert collect() == 2
    assert capsys.readouterr().err == f"medseg: error: {run_dir / name}: {problem}\n"
    assert collect() == 0  # restored


def test_a_null_metric_is_read_as_the_nan_medseg_wrote(finished, capsys):
    """medseg writes a NaN score as null (JSON has no NaN): it is a score of no value, listed
    as not learned, not a damaged file."""
    collect, run_dir = finished
    with _replaced(run_dir / "metrics.json", _metrics(run_dir, auc=None)):
        assert collect() == 0
        with open(run_dir.parents[2] / "results.csv", newline="") as handle:
            (row,) = csv.DictReader(handle)
    assert row["test_auc"] == "" and row["status"] == "not learned"  # results.csv leaves NaN empty
    capsys.readouterr()
