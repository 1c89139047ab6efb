"""The Case view's probability map and its threshold curves: the map from the cached
probabilities the scores use, the validation patients' curve and its best threshold."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from medseg.app.cohort import THRESHOLDS, best_threshold
from medseg.app.lgg_page import TEST_CURVE, VALIDATION_CURVE
from medseg.app.viewer import (
    THRESHOLD_MARK_RGB,
    THRESHOLD_RGB,
    colour_bar,
    probability_lut,
    probability_overlay,
    sequence_view,
)
from medseg.data.lgg import list_patients
from medseg.data.splits import read_split_file
from medseg.imaging.images import read_mask, read_slice_image
from medseg.metrics import dice_score
from tests.app.page_driver import record_pictures, start
from tests.app.test_app import count_model_runs, library_probabilities


def test_the_map_blends_each_colour_at_its_probability_and_outlines_the_threshold():
    background = np.full((3, 3, 3), 100, np.uint8)
    prob = np.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])
    out = probability_overlay(background, prob, threshold=0.9, factor=2)
    lut = probability_lut()
    assert out.shape == (6, 6, 3)
    assert out[0, 0].tolist() == [100, 100, 100]  # p = 0: the MRI as it is
    half = np.round(0.5 * 100 + 0.5 * lut[128].astype(float)).astype(int)  # round(0.5 * 255) = 128
    assert out[2, 2].tolist() == half.tolist()
    # p >= 0.9: the last column (two pixels wide at 2x); its 1-px inner contour is white
    assert (out[:, 4:] == THRESHOLD_RGB).all(axis=-1).sum() == 12
    thin = probability_overlay(background, prob, threshold=0.95)  # a 1-px wide region: all contour
    assert thin[:, 2].tolist() == [list(THRESHOLD_RGB)] * 3
    assert probability_overlay(background, np.ones((3, 3)), 0.5)[1, 1].tolist() == lut[255].tolist()


def test_the_colour_bar_runs_from_0_to_1_and_marks_the_threshold():
    bar = colour_bar(0.25, width=101, height=4)
    lut = probability_lut()
    assert bar.shape == (4, 101, 3)
    assert bar[0, 0].tolist() == lut[0].tolist() and bar[0, 100].tolist() == lut[255].tolist()
    assert [c for c in range(101) if (bar[:, c] == THRESHOLD_MARK_RGB).all()] == [25, 26]


def test_best_threshold_is_the_highest_mean_lowest_of_ties():
    curve = [0.1] * len(THRESHOLDS)
    curve[5] = curve[9] = 0.8
    assert best_threshold(curve) == THRESHOLDS[5]
    assert best_threshold([float("nan")] * len(THRESHOLDS)) is None


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_case_view_maps_the_cached_probabilities(monkeypatch, segmentation_run, tiny_lgg):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    name = at.selectbox(key="patient").value
    patient = next(p for p in list_patients(tiny_lgg) if p.name == name)
    number = at.select_slider(key=f"slice:{tiny_lgg}:{name}").value
    position = [s.index for s in patient.slices].index(number)
    calls = count_model_runs(monkeypatch)  # caches emptied: the patient is predicted once
    sent = record_pictures(monkeypatch)
    at.radio(key="large_view").set_value("probability").run()
    assert not at.exception and sum(calls) == len(patient.slices)
    big = at.image[0].proto.imgs[0]
    assert big.caption.startswith("Probability map (FLAIR, ") and "white contour p ≥ 0.50" in big.caption
    assert at.query_params["large"] == "probability"
    image = read_slice_image(patient.slices[position].image_path)
    probs = library_probabilities(segmentation_run / "best.pt", [image])[0]
    zoom = int(big.caption.split(", ")[1].split("×")[0])
    expected = probability_overlay(sequence_view(image, "FLAIR"), probs, 0.5, zoom)
    shown = decoded(sent[0][1])
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 4  # float rounding only
    assert decoded(sent[1][1]).tolist() == colour_bar(0.5, width=min(zoom * 64, 256)).tolist()
    at.slider(key="threshold").set_value(0.3).run()  # the threshold moves: no model run
    assert sum(calls) == len(patient.slices)


def chart_frames(at) -> list:
    return [pa.ipc.open_stream(node.proto.data.data).read_pandas() for node in at.get("vega_lite_chart")]


def test_the_curve_is_the_validation_patients_and_sets_the_threshold(monkeypatch, segmentation_run,
                                                                       tiny_lgg):
    split, _ = read_split_file(segmentation_run / "split.json")
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    curves = set(chart_frames(at)[0]["curve"])
    assert TEST_CURVE in curves and VALIDATION_CURVE not in curves  # validation not scored yet
    [score] = [b for b in at.button if b.key == "score_validation"]
    score.click().run()
    frame = chart_frames(at)[0]
    validation = frame[frame["curve"] == VALIDATION_CURVE]
    patients = [p for p in list_patients(tiny_lgg) if p.name in split["val"]]
    probs = {p.name: library_probabilities(segmentation_run / "best.pt",
                                           [read_slice_image(s.image_path) for s in p.slices])
             for p in patients}
    masks = {p.name: np.stack([read_mask(s.mask_path) for s in p.slices]) for p in patients}
    library = [float(np.mean([dice_score(probs[n] >= t, masks[n]) for n in probs])) for t in THRESHOLDS]
    assert list(validation["Dice"]) == pytest.approx(library)
    best = THRESHOLDS[int(np.argmax(library))]
    [use] = [b for b in at.button if b.key == "validation_best"]
    assert use.label == f"Use the validation-best threshold ({best:.2f})"
    use.click().run()
    assert at.slider(key="threshold").value == pytest.approx(best)
    assert at.query_params["threshold"] == f"{best:.2f}"
