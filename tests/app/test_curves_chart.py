"""The Training curves view: curves labelled by method (the run's name in the tooltip), one
colour-blind-safe palette for ten runs, a marker at the epoch of each run's best.pt, an
epoch / wall-clock axis, and compare's gradient figures for the runs that recorded them.

The page is driven with AppTest over hand-made run folders (a config, a history.csv, a
best.pt that is listed, never loaded) beside the session's tiny classification run, which
the page loads."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from medseg.app.curves import best_epoch_of, legend_labels, method_label, wall_clock
from medseg.app.palette import RUN_COLOURS, run_colours
from medseg.app.run_cards import RunCard, read_run
from medseg.compare.grad_stats import append_grad_stats
from medseg.config import config_from_dict, save_config
from medseg.runs import RunFolder
from tests.app.page_driver import APP, TIMEOUT

#: the ten hand-made runs: folder name -> (optim.name, seed, model.bgn)
RUNS = {
    "r0": ("adam+znorm", 0, False), "r1": ("adam+znorm", 1, False), "r2": ("adam", 0, True),
    "r3": ("adam", 0, False), "r4": ("adamw", 0, False), "r5": ("sgd", 0, False),
    "r6": ("adam+gc", 0, False), "r7": ("adam+clip", 0, False), "r8": ("adam+agc", 0, False),
    "r9": ("lamb", 0, False),
}
LABELS = ["adam+znorm (seed 0)", "adam+znorm (seed 1)", "adam+bgn", "adam", "adamw", "sgd",
          "adam+gc", "adam+clip", "adam+agc", "lamb"]
#: run k's validation Dice per epoch: best at epoch k % 3 + 1 (a later tie does not move it)
DICE = [[0.7, 0.5, 0.7], [0.5, 0.8, 0.8], [0.4, 0.5, 0.6]]
#: runs that recorded gradient statistics
WITH_GRADS = ("r0", "r2")


def _config(optim: str, seed: int, bgn: bool):
    return config_from_dict({"seed": seed, "data": {"root": "demo_data/lgg", "image_size": 64},
                             "model": {"encoder": "resnet18", "bgn": bgn}, "optim": {"name": optim}})


def _history(k: int) -> str:
    rows = [f"{e + 1},{1.0 / (e + 1)},{DICE[k % 3][e]},{10.0 * (k + 1) + e}" for e in range(3)]
    return "epoch,train_loss,val_dice,seconds\n" + "\n".join(rows) + "\n"


def write_hand_run(folder: Path, k: int) -> Path:
    """Run k of :data:`RUNS`: config, 3-epoch history, and a best.pt of a few bytes dated
    2001 (listed by the page, never loaded)."""
    folder.mkdir(parents=True)
    save_config(_config(*RUNS[folder.name]), folder / "config.yaml")
    (folder / "history.csv").write_text(_history(k))
    (folder / "best.pt").write_bytes(b"not loaded")
    os.utime(folder / "best.pt", (1e9, 1e9))  # older than the real run: not the page's first
    return folder


def write_grad_stats(folder: Path) -> None:
    """Two logged steps of compare's gradient statistics, with residual-block overlap rows."""
    for step in (1, 2):
        append_grad_stats(
            RunFolder(folder).grad_stats_file, step=step, epoch=1, loss=1.0 / step,
            before={"conv1.weight": {"norm": 2.0 * step}, "fc.weight": {"norm": 1.0}},
            after={"conv1.weight": {"norm": 1.0}, "fc.weight": {"norm": 1.0}},
            overlap=[{"block": "layer1.0", "skip_norm": 1.0, "branch_norm": 0.5 * step,
                      "total_norm": 1.2, "cosine": 0.1}])


# --- the rules, on cards ------------------------------------------------------------------


def _card(name, history, config=None):
    return RunCard(name=name, path=None, checkpoints=(), config=config, test_metrics={},
                   validation_metrics={}, epochs_done=len(history), created=None,
                   history=tuple(history))


def test_a_run_is_labelled_by_the_method_compare_names():
    assert method_label(_config("adam", 0, True)) == "adam+bgn"  # compare's model method
    assert method_label(_config("adam", 0, False)) == "adam"
    assert method_label(_config("sgd", 0, True)) == "sgd"  # bgn on sgd is no compare method
    assert method_label(_config("znorm", 0, False)) == "znorm"  # as compare names that run
    runs = [_card(name, [], _config(*RUNS[name])) for name in RUNS]
    assert list(legend_labels(runs).values()) == LABELS
    # same method and seed: told apart by run name; no config: the run's name
    twins = [_card("x", [], _config("adam", 0, False)), _card("y", [], _config("adam", 0, False)),
             _card("z", [])]
    assert legend_labels(twins) == {"x": "adam (x)", "y": "adam (y)", "z": "z"}


def test_best_epoch_is_the_one_training_kept():
    rows = [{"epoch": e + 1, "val_dice": d, "val_auc": a}
            for e, (d, a) in enumerate(zip([0.4, 0.6, 0.6, math.nan], [0.9, 0.5, 0.95, 0.1], strict=True))]
    assert best_epoch_of(_card("lgg", rows, _config("adam", 0, False))) == 2  # a tie keeps the first
    pcam = config_from_dict({"data": {"format": "pcam", "root": "x", "image_size": 96},
                             "model": {"arch": "resnet", "encoder": "resnet18"}})
    assert best_epoch_of(_card("pcam", rows, pcam)) == 3  # classification selects by AUC
    assert best_epoch_of(_card("no task", rows)) is None


def test_wall_clock_is_the_running_sum_of_each_epochs_seconds():
    run = _card("a", [{"epoch": 2, "seconds": 4.0}, {"epoch": 1, "seconds": 3.0},
                      {"epoch": 3, "seconds": 5.5}, {"epoch": 4}])
    assert wall_clock(run) == {1: 3.0, 2: 7.0, 3: 12.5}


# --- the palette --------------------------------------------------------------------------

#: Machado, Oliveira & Fernandes (2009), severity 1: linear-RGB simulation matrices
DEFICIENCIES = {
    "none": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of linear sRGB rows."""
    xyz = linear_rgb @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                                 [0.0193, 0.1192, 0.9505]]).T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def test_ten_runs_get_ten_colours_told_apart_with_colour_blindness():
    colours = run_colours([f"run {k}" for k in range(11)])
    assert len(set(list(colours.values())[:10])) == 10 and colours["run 10"] == colours["run 0"]
    srgb = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in RUN_COLOURS])
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    for name, matrix in DEFICIENCIES.items():
        lab = _lab(np.clip(linear @ matrix.T, 0, 1))
        closest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(lab, 2))
        assert closest > 15, name  # Tableau 10 has a pair 1.7 apart under deuteranopia


# --- the page -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(module_tmp, classification_run):
    """The PCam page on its Training curves tab over the ten hand-made runs and the real one."""
    models = module_tmp / "models"
    shutil.copytree(classification_run, models / "real", copy_function=os.link,
                    ignore=shutil.ignore_patterns("app_cache"))
    for k, name in enumerate(RUNS):
        write_hand_run(models / name, k)
    for name in WITH_GRADS:
        write_grad_stats(models / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSEG_MODELS_DIR", str(models))
        patch.setenv("MEDSEG_APP_FOLDER_PICKER", "0")
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.session_state["pcam_view"] = "Training curves"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        yield at, models


def show(at: AppTest, runs, axis: str = "epoch") -> AppTest:
    at.multiselect(key="curve_runs").set_value(list(runs))
    at.radio(key="curve_axis").set_value(axis)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def dice_chart(at: AppTest) -> tuple[dict, pd.DataFrame]:
    """The validation Dice chart's Vega-Lite spec and its data (one table)."""
    for node in at.get("vega_lite_chart"):
        spec = json.loads(node.proto.spec)
        if spec["layer"][0]["encoding"]["y"]["title"] == "validation Dice":
            [dataset] = node.proto.datasets
            return spec, pa.ipc.open_stream(dataset.data.data).read_pandas()
    raise AssertionError("no validation Dice chart")


def test_curves_name_methods_colour_ten_runs_apart_and_mark_the_best_epoch(page):
    at, models = page
    spec, data = dice_chart(show(at, RUNS))
    line, marker = spec["layer"]
    colour = line["encoding"]["color"]
    assert colour["field"] == "method" and colour["scale"]["domain"] == LABELS  # the legend
    assert colour["scale"]["range"] == list(RUN_COLOURS)  # ten runs, ten colours
    assert {"field": "run", "title": "run", "type": "nominal"} in line["encoding"]["tooltip"]
    assert set(zip(data["run"], data["method"], strict=True)) == set(zip(RUNS, LABELS, strict=True))
    # the marker: one point per run, at the epoch read_run's history makes best.pt
    assert marker["mark"]["shape"] == "diamond" and marker["transform"] == [{"filter": "datum.best"}]
    best = data[data["best"]]
    assert dict(zip(best["run"], best["epoch"], strict=True)) == {
        name: k % 3 + 1 for k, name in enumerate(RUNS)}
    assert dict(zip(best["run"], best["epoch"], strict=True)) == {
        name: best_epoch_of(read_run(models / name)) for name in RUNS}
    assert line["encoding"]["x"]["field"] == "epoch"


def test_the_wall_clock_axis_is_the_cumulative_seconds(page):
    at, _ = page
    spec, data = dice_chart(show(at, ["r0", "r4"], axis="wall-clock"))
    assert spec["layer"][0]["encoding"]["x"]["field"] == "wall_clock_s"
    r4 = data[data["run"] == "r4"].sort_values("epoch")
    assert list(r4["wall_clock_s"]) == [50.0, 50.0 + 51.0, 50.0 + 51.0 + 52.0]  # 50, 51, 52 s


def test_gradient_figures_appear_exactly_for_runs_that_recorded_them(page):
    at, _ = page
    show(at, ["r3", "r4"])  # no grad_stats.jsonl
    assert "Gradients" not in [h.value for h in at.subheader] and not at.get("image")
    show(at, ["r3", "r0", "r2"])
    assert "Gradients" in [h.value for h in at.subheader]
    assert len(at.get("image")) == 2  # gradient flow and overlap
    captions = [c.value for c in at.caption]
    assert any("adam+znorm" in c and "Gradient flow" in c for c in captions)
