"""The page under hostile input: upload names, odd run folders, folder fields, huge images.

Every failure must be a one-line message in the page (no traceback), and nothing may be
written outside the app's private temporary folders, whatever a browser sends.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medseg.data.lgg import list_patients
from tests.app.page_driver import (
    APP,
    BOMB_SIDE,
    TIMEOUT,
    bomb_png,
    plain,
    png_bytes,
    record_downloads,
    start,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def downloads(monkeypatch) -> dict[str, Callable[[], bytes]]:
    """{file name: bytes maker} of every file the page offers for download."""
    return record_downloads(monkeypatch)


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Path:
    """The working directory and, under it, the only temporary folder (``tmp/``)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return tmp_path


def volume_gz() -> bytes:
    """A NIfTI volume holding the three MR sequences (4-D, 3 channels last)."""
    data = np.zeros((32, 32, 2, 3), np.int16)
    data[8:20, 10:24, :] = 300
    return gzip.compress(nib.Nifti1Image(data, np.diag([0.5, 0.5, 2.0, 1.0])).to_bytes())


def upload(at: AppTest, image: tuple[str, bytes, str], mask: tuple[str, bytes, str] | None = None):
    at.file_uploader(key="upload_image").set_value(image)
    at.file_uploader(key="upload_mask").set_value(mask)
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def one_error(at: AppTest) -> str:
    """The page's only error message, as the reader sees it; checked to be one line."""
    assert len(at.error) == 1, [e.value for e in at.error]
    value = at.error[0].value
    assert "\n" not in value and "Traceback" not in value
    return plain(value)


def test_hostile_upload_names(monkeypatch, segmentation_run, tiny_lgg, sandbox, downloads):
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view="Upload a scan")
    volume = volume_gz()
    outside = sandbox / "outside" / "abs.nii.gz"  # an absolute name, as any client may send
    works = {
        "../../x.nii.gz": "x_pred.nii.gz",
        str(outside): "abs_pred.nii.gz",
        "[a](javascript:alert(1))_<b>x</b>_.nii.gz": "b_pred.nii.gz",  # the name's basename
        "..\\..\\evil.nii.gz": "evil_pred.nii.gz",
    }
    for name, download in works.items():
        downloads.clear()
        upload(at, (name, volume, "application/gzip"))
        assert not at.error, [e.value for e in at.error]
        report = download.replace(".nii.gz", ".json")
        assert list(downloads) == [download, report]  # the mask and its lesion report
        assert downloads[download]()[:2] == b"\x1f\x8b"  # the NIfTI file, gzipped
    downloads.clear()
    slice_png = png_bytes(np.zeros((64, 64, 3), np.uint8))
    upload(at, ("../../y_mask.png", slice_png, "image/png"))
    assert list(downloads) == ["y_mask_pred.png"]  # never the expert-mask name <stem>_mask.png

    fails = {
        "a\x01b.nii.gz": "a?b.nii.gz: the file name holds a control character",
        "a" * 300 + ".nii.gz": "the file name is 307 bytes long, over 255",
    }
    for name, message in fails.items():
        upload(at, (name, volume, "application/gzip"))
        assert message in one_error(at)
        upload(at, ("ok.nii.gz", volume, "application/gzip"), (name, volume, "application/gzip"))
        assert message in one_error(at)
    markdown = "[click](http://example.org)_**bold**_<i>x.nii.gz"
    upload(at, (markdown, b"\x1f\x8b\x08 not gzip", "application/gzip"))
    shown = at.error[0].value
    assert one_error(at).startswith(f"{markdown}: cannot read NIfTI")
    assert "](" not in shown and "**" not in shown  # all escaped

    left = sorted(p.relative_to(sandbox).as_posix() for p in sandbox.rglob("*"))
    assert left == ["tmp"]  # nothing at the absolute name, next to the page, or left in tmp/


def test_odd_run_folders_do_not_take_the_page_down(monkeypatch, tmp_path, segmentation_run,
                                                   tiny_lgg):
    models = tmp_path / "models"
    folder_checkpoint = models / "folder_checkpoint"
    (folder_checkpoint / "best.pt").mkdir(parents=True)
    odd = models / "odd_files"
    odd.mkdir()
    (odd / "best.pt").symlink_to(segmentation_run / "best.pt")
    shutil.copy(segmentation_run / "config.yaml", odd / "config.yaml")
    (odd / "metrics.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (odd / "history.csv").write_bytes(bytes(range(256)))

    at = start(monkeypatch, models, lgg=tiny_lgg)
    assert at.selectbox(key="run").options == ["odd_files", "folder_checkpoint"]
    warnings = [plain(w.value) for w in at.warning[1:]]  # after the research notice
    assert warnings == ["history.csv is not UTF-8 text", "metrics.json is not valid JSON"]
    assert not at.error and at.metric  # the run still loads and scores the cases

    at.selectbox(key="run").set_value("folder_checkpoint").run()
    assert not at.exception
    assert [plain(w.value) for w in at.warning[1:]] == ["best.pt is not a regular file",
                                                         "config.yaml is missing"]
    assert one_error(at) == ("Cannot load run folder_checkpoint: no checkpoint file "
                             "(see the run's problems)")


def test_folders_are_fixed_unless_the_picker_is_on(monkeypatch, tmp_path, segmentation_run,
                                                    tiny_lgg):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(segmentation_run, elsewhere / "other_run")
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(segmentation_run.parent))
    monkeypatch.setenv("MEDSEG_DATA_DIR", str(tiny_lgg))
    monkeypatch.setenv("MEDSEG_APP_FOLDER_PICKER", "0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key in ("models_dir", "lgg_dir", "pcam_dir", "folder", "models", "data"):
        at.query_params[key] = str(elsewhere)  # a deep link naming another folder
    at.run()
    assert not at.exception and not at.error
    assert not at.text_input  # no field a browser could type a path into
    captions = [c.value for c in at.caption]
    assert f"Runs folder: `{segmentation_run.parent}`" in captions  # read-only, verbatim
    assert f"Case folder (LGG kaggle_3m layout): `{tiny_lgg}`" in captions
    assert at.selectbox(key="run").options == [segmentation_run.name]
    at.radio(key="patient_subset").set_value("all").run()
    patients = [p.name for p in list_patients(tiny_lgg)]
    assert [label.split(" (")[0] for label in at.selectbox(key="patient").options] == patients

    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, picker=True)
    at.text_input(key="models_dir").set_value(str(elsewhere)).run()
    assert not at.exception
    assert at.selectbox(key="run").options == ["other_run"]


def test_an_image_declaring_too_many_pixels_is_refused(monkeypatch, segmentation_run, tiny_lgg):
    data = bomb_png()
    assert len(data) < 150
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg, view="Upload a scan")
    small = png_bytes(np.zeros((64, 64, 3), np.uint8))
    for image, mask in ((("bomb.png", data, "image/png"), None),
                        (("scan.png", small, "image/png"), ("bomb.png", data, "image/png"))):
        upload(at, image, mask)
        message = one_error(at)
        assert message.startswith("bomb.png: ") and str(BOMB_SIDE) in message, message
