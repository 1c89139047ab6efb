"""The figures are real PNGs; gradient statistics and overlap rows round-trip through
grad_stats.jsonl."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from medseg.compare.grad_recorder import GradStatsRecorder
from medseg.compare.grad_stats import GradSnapshot, read_grad_stats, read_overlap
from medseg.compare.plots import (
    pick_steps,
    plot_curves,
    plot_grad_flow,
    plot_overlap,
    plot_time_to_target,
)
from medseg.engine.callbacks import StepInfo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 0  # something was drawn


def test_time_to_target_png_with_misses_single_dots_and_intervals(tmp_path):
    epochs = {"adam": [3, 4, None, 5], "adam+znorm": [2], "lamb": [None, None]}
    path = plot_time_to_target(epochs, max_epochs=8, target="val Dice >= 0.80",
                               path=tmp_path / "t.png")
    assert_png(path)
    # the three methods' rows hold their colours: tab10 blue, orange and green dots
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    for rgb in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 20, rgb


def test_curves_png_with_bands_and_ragged_runs(tmp_path):
    curves = {"adam": [[0.5, 0.6, 0.7], [0.4, 0.65]], "adam+znorm": [[0.6, 0.7, 0.8]]}
    path = plot_curves(curves, ylabel="val auc", title="Validation", path=tmp_path / "v.png")
    assert_png(path)
    path = plot_curves(curves, ylabel="loss", title="Loss", path=tmp_path / "l.png", log_y=True)
    assert_png(path)


def test_pick_steps_spreads_over_the_run():
    assert pick_steps([10, 20, 30, 40, 50]) == [10, 30, 50]
    assert pick_steps([5, 1]) == [1, 5]
    assert pick_steps(list(range(1, 11)), count=2) == [1, 10]


def _info(step, before, after, rank=0):
    return StepInfo(epoch=1, step=step, loss=0.5, lr=1e-3, rank=rank,
                    grad_stats_before=before, grad_stats_after=after)


def test_recorder_round_trip_dedupes_steps_and_drops_biases(tmp_path):
    path = tmp_path / "grad_stats.jsonl"
    recorder = GradStatsRecorder(path)
    stats = lambda scale: {  # noqa: E731
        "conv.weight": {"norm": 2.0 * scale, "mean": 0.0, "std": 1.0},
        "conv.bias": {"norm": 0.5 * scale, "mean": 0.0, "std": 1.0},
        "head.weight": {"norm": 4.0 * scale, "mean": 0.0, "std": 1.0},
    }
    recorder.on_step_end(_info(10, stats(1), stats(0.5)))
    recorder.on_step_end(_info(11, None, None))  # not a logging step: nothing written
    recorder.on_step_end(_info(20, stats(1), stats(1), rank=1))  # other ranks write nothing
    recorder.on_step_end(_info(20, stats(3), stats(1)))
    recorder.on_step_end(_info(20, stats(2), stats(1)))  # the same step again after a resume
    with path.open("a") as handle:
        handle.write('{"step": 30, "layers": ["conv.we')  # killed mid-write
    assert len(path.read_text().splitlines()) == 4
    snapshots = read_grad_stats(path)
    assert [s.step for s in snapshots] == [10, 20]
    assert snapshots[0].layers == ("conv.weight", "head.weight")
    assert snapshots[0].before == (2.0, 4.0) and snapshots[0].after == (1.0, 2.0)
    assert snapshots[1].before == (4.0, 8.0)  # last record of step 20 wins
    assert read_grad_stats(path, weights_only=False)[0].layers[1] == "conv.bias"
    assert json.loads(path.read_text().splitlines()[0])["epoch"] == 1


def test_grad_flow_png(tmp_path):
    layers = ("a.weight", "b.weight", "c.weight")
    snaps = {
        "adam+znorm": [GradSnapshot(s, layers, (1e-3 * s, 1e-2, 1.0), (10.0, 20.0, 30.0))
                       for s in (10, 20, 30, 40)],
        "adam": [GradSnapshot(10, layers, (1e-4, 1e-3, 1e-1), (1e-4, 1e-3, 1e-1))],
    }
    assert_png(plot_grad_flow(snaps, focus="adam+znorm", path=tmp_path / "g.png"))
    with pytest.raises(ValueError, match="adam\\+gc"):
        plot_grad_flow(snaps, focus="adam+gc", path=tmp_path / "x.png")


def test_importing_and_plotting_leave_the_matplotlib_backend_alone(tmp_path):
    # a notebook's backend (here svg) must survive `import medseg.compare` and a plot
    path = tmp_path / "curves.png"
    code = (
        "import matplotlib, medseg.compare\n"
        "from medseg.compare.plots import plot_curves\n"
        f"plot_curves({{'adam': [[0.5, 0.6]]}}, ylabel='y', title='t', path={str(path)!r})\n"
        "print(matplotlib.get_backend())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "MPLBACKEND": "svg"},
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"
    assert_png(path)


def _overlap(step_scale):
    return [
        {"block": "layer1.0", "skip_norm": 1.0 * step_scale, "branch_norm": 2.0,
         "total_norm": 2.5, "cosine": 0.125},
        {"block": "layer1.1", "skip_norm": 0.5, "branch_norm": 0.0, "total_norm": 0.5,
         "cosine": float("nan")},
    ]


def test_overlap_rows_round_trip_through_the_recorder(tmp_path):
    path = tmp_path / "grad_stats.jsonl"
    recorder = GradStatsRecorder(path)
    stats = {"conv.weight": {"norm": 2.0, "mean": 0.0, "std": 1.0}}
    recorder.on_step_end(_info(5, stats, stats))  # logged without overlap rows
    recorder.on_step_end(replace(_info(10, stats, stats), overlap=_overlap(1.0)))
    recorder.on_step_end(replace(_info(10, stats, stats), overlap=_overlap(3.0)))  # resumed
    recorder.on_step_end(replace(_info(20, stats, stats), overlap=_overlap(2.0)))
    record = json.loads(path.read_text().splitlines()[1])
    assert record["overlap"][1]["cosine"] is None  # NaN is not JSON
    rows = read_overlap(path)
    assert [(row["step"], row["block"]) for row in rows] == [
        (10, "layer1.0"), (10, "layer1.1"), (20, "layer1.0"), (20, "layer1.1")]
    assert rows[0] == {"step": 10, "block": "layer1.0", "skip_norm": 3.0, "branch_norm": 2.0,
                       "total_norm": 2.5, "cosine": 0.125}
    assert math.isnan(rows[1]["cosine"]) and rows[2]["skip_norm"] == 2.0
    assert [s.step for s in read_grad_stats(path)] == [5, 10, 20]


def test_overlap_png(tmp_path):
    rows = {
        "adam": [{"step": s, **row} for s in (1, 2, 3) for row in _overlap(float(s))],
        "adam+znorm": [{"step": 1, **row} for row in _overlap(0.5)],
    }
    assert_png(plot_overlap(rows, path=tmp_path / "overlap.png"))
    with pytest.raises(ValueError, match="no gradient-overlap rows"):
        plot_overlap({"adam": []}, path=tmp_path / "empty.png")
