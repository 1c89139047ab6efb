"""Links that reproduce the screen: the URL's parameters set the page's state, and the page's
state writes them back (``medseg.app.links``, driven through ``AppTest``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medseg.app.links import link_text, linked_run, linked_settings, settings_params
from medseg.app.run_cards import find_runs
from medseg.data.lgg import list_patients
from tests.app.page_driver import APP, TIMEOUT, perturbed_copy, plain


def test_settings_round_trip_and_values_off_the_widgets_are_ignored():
    params = {"threshold": ["0.3"], "opacity": ["0.45"], "zoom": ["4"], "window": ["10", "200"],
              "labels": ["fn", "tp"], "overlay": ["fill"], "sequence": ["Pre-contrast"],
              "tta": ["flip"], "post": ["off"]}
    state = linked_settings(params)
    assert state == {"threshold": pytest.approx(0.3), "overlay_opacity": 0.45, "zoom": 4,
                     "window": (10, 200), "overlay_labels": ["tp", "fn"], "overlay_style": "Fill",
                     "sequence": "Pre-contrast", "tta": "flip", "postprocess": False}
    written = settings_params(state)
    assert written["threshold"] == ["0.30"] and written["labels"] == ["tp", "fn"]
    assert linked_settings(written) == state  # a written link reads back as the same state
    assert linked_settings({"labels": ["none"]}) == {"overlay_labels": []}
    assert settings_params({"overlay_labels": []}) == {"labels": ["none"]}
    bad = {"threshold": ["0.33"], "zoom": ["7"], "window": ["200", "10"], "labels": ["xx"],
           "overlay": ["glow"], "opacity": ["1.5"], "tta": ["rot"], "post": ["maybe"]}
    assert linked_settings(bad) == {}


def test_link_text_orders_and_filters_the_parameters():
    assert link_text({"slice": ["3"], "models_dir": ["/etc"], "run": ["a b"], "runs": ["x", "y"]}) == \
        "?run=a+b&slice=3&runs=x&runs=y"


def two_task_folder(segmentation_run: Path, classification_run: Path, folder: Path) -> Path:
    """Two LGG runs and a PCam run, the PCam run the newest."""
    shutil.copytree(segmentation_run, folder / "lgg_a", ignore=shutil.ignore_patterns("app_cache"))
    perturbed_copy(segmentation_run, folder / "lgg_b", 0.5)
    shutil.copytree(classification_run, folder / "pcam", ignore=shutil.ignore_patterns("app_cache"))
    for offset, name in enumerate(("lgg_a", "lgg_b", "pcam")):
        for checkpoint in (folder / name).glob("*.pt"):
            os.utime(checkpoint, (1e9 + offset, 1e9 + offset))
    return folder


def test_linked_run_by_name_kind_or_the_runs_compared(segmentation_run, classification_run, tmp_path):
    runs = find_runs(two_task_folder(segmentation_run, classification_run, tmp_path / "models"))
    assert runs[0].name == "pcam"  # the newest
    assert linked_run(runs, {})[0] is None
    assert linked_run(runs, {"runs": ["gone", "lgg_b", "lgg_a"]})[0].name == "lgg_b"
    assert linked_run(runs, {"run": ["lgg_a"], "kind": ["run"]})[0].name == "lgg_a"
    run, problem = linked_run(runs, {"run": ["gone"], "runs": ["lgg_a"]})
    assert run is None and problem == "This link names run gone, which is not in the runs folder."
    run, problem = linked_run(runs, {"run": ["lgg_a"], "kind": ["cv"]})
    assert run is None and problem == "This link names cv lgg_a; lgg_a in the runs folder is a run."


def page(monkeypatch, models: Path, lgg: Path, params: dict[str, str | list[str]]) -> AppTest:
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(models))
    monkeypatch.setenv("MEDSEG_DATA_DIR", str(lgg))
    monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", "0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_link_opens_exactly_its_state_and_the_url_follows_the_page(
        monkeypatch, segmentation_run, classification_run, tiny_lgg, tmp_path):
    models = two_task_folder(segmentation_run, classification_run, tmp_path / "models")
    patient = list_patients(tiny_lgg)[-1]
    number = patient.slices[1].index
    link = {"run": "lgg_b", "kind": "run", "checkpoint": "last.pt", "threshold": "0.30",
            "subset": "all", "patient": patient.name, "slice": str(number), "sequence": "Pre-contrast",
            "overlay": "fill", "opacity": "0.45", "labels": ["fp", "fn"], "zoom": "4",
            "window": ["10", "200"]}
    at = page(monkeypatch, models, tiny_lgg, link)
    assert not at.error
    assert at.selectbox(key="run").value == "lgg_b"
    assert at.radio(key="checkpoint:lgg_b").value == "last.pt"
    assert at.slider(key="threshold").value == pytest.approx(0.3)
    assert at.radio(key="patient_subset").value == "all"
    assert at.selectbox(key="patient").value == patient.name
    assert at.select_slider(key=f"slice:{tiny_lgg}:{patient.name}").value == number
    assert at.radio(key="sequence").value == "Pre-contrast"
    assert at.radio(key="overlay_style").value == "Fill"
    assert at.slider(key="overlay_opacity").value == pytest.approx(0.45)
    assert at.multiselect(key="overlay_labels").value == ["fp", "fn"]
    assert at.select_slider(key="zoom").value == 4
    assert at.slider(key="window").value == (10, 200)
    assert any("checkpoint `last.pt`" in caption.value for caption in at.caption)
    captions = [image.proto.imgs[0].caption for image in at.image]
    assert captions[0] == "Overlay: model vs expert (Pre-contrast, fill, 4×)"
    assert "Model mask (p ≥ 0.30)" in [caption.value for caption in at.caption]
    # the link control shows the same link
    [code] = at.code
    assert code.value.startswith("?run=lgg_b&kind=run&checkpoint=last.pt&threshold=0.30&subset=all&")
    assert f"&patient={patient.name}&slice={number}&" in code.value

    at.slider(key="threshold").set_value(0.7).run()  # the URL follows the page
    at.select_slider(key="zoom").set_value(1).run()
    at.radio(key="checkpoint:lgg_b").set_value("best.pt").run()
    assert at.query_params["threshold"] == "0.70" and at.query_params["zoom"] == "1"
    assert at.query_params["checkpoint"] == "best.pt" and at.query_params["run"] == "lgg_b"
    assert at.code[0].value.count("threshold=0.70") == 1


def test_runs_of_one_task_never_open_the_other_tasks_page(monkeypatch, segmentation_run,
                                                          classification_run, tiny_lgg, tmp_path):
    models = two_task_folder(segmentation_run, classification_run, tmp_path / "models")
    at = page(monkeypatch, models, tiny_lgg, {"view": "Runs side by side", "runs": ["lgg_a", "lgg_b"]})
    assert at.selectbox(key="run").value == "lgg_a"  # not the newest run (PCam)
    assert at.multiselect(key="compare_runs").value == ["lgg_a", "lgg_b"]
    assert at.query_params["run"] == "lgg_a" and at.query_params["kind"] == "run"

    at = page(monkeypatch, models, tiny_lgg, {"view": "Runs side by side", "runs": ["lgg_a", "pcam", "gone"]})
    assert at.multiselect(key="compare_runs").value == ["lgg_a"]
    assert [plain(w.value) for w in at.warning if "This link" in w.value] == [
        "This link names 2 runs not in the runs folder or of another task: pcam, gone."]


def test_a_link_naming_a_missing_run_says_so_and_opens_nothing(monkeypatch, segmentation_run,
                                                               classification_run, tiny_lgg, tmp_path):
    models = two_task_folder(segmentation_run, classification_run, tmp_path / "models")
    at = page(monkeypatch, models, tiny_lgg, {"run": "gone", "patient": "x"})
    assert [plain(e.value) for e in at.error] == [
        f"This link names run gone, which is not in the runs folder. (runs folder: {models})"]
    assert not at.tabs and not at.image and not at.metric
    at.button[0].click().run()  # the offered way out: the newest run
    assert at.selectbox(key="run").value == "pcam"
    assert [tab.label for tab in at.tabs] == ["Patches", "Training curves"]
    assert not any("This link" in e.value for e in at.error)
