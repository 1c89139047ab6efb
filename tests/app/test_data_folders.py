"""The case and PCam folders default to the run's own data folder (its config's data.root);
a missing folder, given or default, is one line on the page."""

from __future__ import annotations

import shutil

import yaml

from medseg.app.settings import DEFAULT_LGG_DIR, LGG_DIR_ENV, case_folder, data_folder
from medseg.data.lgg import list_patients
from tests.app.page_driver import plain, start


def test_given_beats_the_runs_own_which_beats_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv(LGG_DIR_ENV, raising=False)
    own = tmp_path / "own"
    own.mkdir()
    assert case_folder(own).path == own and case_folder(own).source == "the run's data.root in config.yaml"
    assert case_folder(None).path.as_posix() == DEFAULT_LGG_DIR
    gone = tmp_path / "gone"
    missing = case_folder(gone)
    assert missing.source == f"the default; the run's data.root {gone} is not a folder"
    monkeypatch.setenv(LGG_DIR_ENV, str(tmp_path / "given"))
    given = data_folder(LGG_DIR_ENV, DEFAULT_LGG_DIR, own)
    assert given.path == tmp_path / "given" and given.source == f"${LGG_DIR_ENV}"
    assert given.problem("Cases") == f"Cases {tmp_path / 'given'} (${LGG_DIR_ENV}) is not a folder"
    assert data_folder(LGG_DIR_ENV, DEFAULT_LGG_DIR, None).problem("Cases") is not None
    assert case_folder(own).problem("Cases") is not None  # still the given one
    monkeypatch.delenv(LGG_DIR_ENV)
    assert case_folder(own).problem("Cases") is None


def without_data_variables(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MEDSEG_DATA_DIR", raising=False)
    monkeypatch.delenv("MEDSEG_PCAM_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no demo_data/ here: the defaults are missing


def test_the_case_folder_is_the_runs_own(monkeypatch, segmentation_run, tiny_lgg, tmp_path):
    without_data_variables(monkeypatch, tmp_path)
    at = start(monkeypatch, segmentation_run.parent)
    assert not at.error, [e.value for e in at.error]
    assert f"Case folder (LGG kaggle_3m layout): `{tiny_lgg}`" in [c.value for c in at.caption]
    at.radio(key="patient_subset").set_value("all").run()
    assert len(at.selectbox(key="patient").options) == len(list_patients(tiny_lgg))


def test_the_pcam_folder_is_the_runs_own(monkeypatch, classification_run, tiny_pcam, tmp_path):
    without_data_variables(monkeypatch, tmp_path)
    at = start(monkeypatch, classification_run.parent)
    assert not at.error, [e.value for e in at.error]
    assert f"PCam folder (HDF5 files): `{tiny_pcam}`" in [c.value for c in at.caption]
    assert "Accuracy" in [m.label for m in at.metric]


def test_a_missing_default_is_said_like_a_missing_given_folder(monkeypatch, segmentation_run, tmp_path):
    without_data_variables(monkeypatch, tmp_path)
    run = tmp_path / "models" / "run"
    shutil.copytree(segmentation_run, run, ignore=shutil.ignore_patterns("app_cache"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["root"] = str(tmp_path / "moved")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    at = start(monkeypatch, run.parent)
    assert [plain(e.value) for e in at.error] == [
        f"Case folder (LGG kaggle_3m layout) {DEFAULT_LGG_DIR} (the default; the run's data.root "
        f"{tmp_path / 'moved'} is not a folder) is not a folder"]
    monkeypatch.setenv("MEDSEG_DATA_DIR", str(tmp_path / "given"))  # as medseg app --data sets it
    at = start(monkeypatch, run.parent)
    assert [plain(e.value) for e in at.error] == [
        f"Case folder (LGG kaggle_3m layout) {tmp_path / 'given'} ($MEDSEG_DATA_DIR) is not a folder"]
