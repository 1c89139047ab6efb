"""A comparison where nothing, or not everything, learned: every run's curves are still drawn
(left-out runs dashed and labelled with why) and the report never prints "nan"."""

from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

import medseg.compare.plots
import medseg.tasks
from medseg.compare import collect_comparison, run_comparison
from medseg.config import load_config
from medseg.runs import RunFolder

METHODS = ["adam", "adam+znorm"]


@pytest.fixture
def drawn(monkeypatch):
    """The figures the comparison saves, by file name."""
    figures: dict[str, Figure] = {}
    save = medseg.compare.plots._save

    def keeping(fig, path):
        figures[path.name] = fig
        save(fig, path)

    monkeypatch.setattr(medseg.compare.plots, "_save", keeping)
    return figures


def _lines(fig: Figure) -> dict[str, str]:
    """label -> line style of the figure's labelled lines."""
    return {line.get_label(): line.get_linestyle() for line in fig.axes[0].get_lines()
            if not line.get_label().startswith("_")}


def test_a_smoke_comparison_where_nothing_learned_plots_every_run_and_prints_no_nan(
        tiny_config_file, tmp_path, monkeypatch, drawn):
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", 10.0)  # no score is 10 above chance
    cfg = load_config(tiny_config_file)
    rows = run_comparison(cfg, METHODS, [0], tmp_path)
    assert [row["status"] for row in rows] == ["not learned", "not learned"]
    report = (tmp_path / "results.md").read_text()
    assert "nan" not in report.lower()
    assert "no run learned, so no best validation score fixed a target" in report
    assert "![val_metric](val_metric.png)" in report
    for name in ("val_metric.png", "train_loss.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert _lines(drawn["val_metric.png"]) == {
        "adam seed 0, not learned (left out)": "--", "adam+znorm seed 0, not learned (left out)": "--"}
    assert "dashed: a run left out" in drawn["val_metric.png"].axes[0].get_title()

    # one run diverged, the other learned: the learned one pooled, the diverged one apart
    record = RunFolder(tmp_path / "runs/adam+znorm/seed0").compare_record
    record.write_text(json.dumps({**json.loads(record.read_text()), "diverged": "loss is inf"}))
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", -1.0)
    drawn.clear()
    rows = collect_comparison(cfg, METHODS, [0], tmp_path)
    assert [row["status"] for row in rows] == ["ok", "diverged"]
    report = (tmp_path / "results.md").read_text()
    assert "nan" not in report.lower()
    assert "| `adam+znorm` | 0 | diverged | loss is inf |" in report
    assert _lines(drawn["val_metric.png"]) == {
        "adam (n=1)": "-", "adam+znorm seed 0, diverged (left out)": "--"}
    assert set(_lines(drawn["train_loss.png"])) == set(_lines(drawn["val_metric.png"]))
