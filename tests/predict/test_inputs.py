"""Inputs classified once, by ``medseg predict`` and the app alike: kinds, slices found in a
folder, and the one-sequence rule for grey slices, alone or in a folder."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from medseg.app.uploads import read_upload
from medseg.cli.main import main
from medseg.engine import load_model
from medseg.errors import DataError
from medseg.imaging.sequences import OneSequenceError
from medseg.predict import (
    SINGLE_SEQUENCE_NOTE,
    Predictor,
    classify_input,
    folder_slices,
    is_prediction,
    predict_paths,
)


def _slices(folder, names, grey=(), size=(12, 10), seed=0):
    """PNG slices: RGB, except those named in ``grey`` (8-bit grey)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shape = size if name in grey else (*size, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def test_a_folder_s_slices_in_natural_order_without_masks_predictions_or_hidden_files(tmp_path):
    folder = _slices(tmp_path / "case", ["c_10", "c_2", "c_1", "c_1_mask", "c_2_pred", "c_2_pred_overlay",
                                         "C_3_MASK", "._c_4"])
    (folder / "notes.txt").write_text("not a slice")
    assert [p.name for p in folder_slices(folder)] == ["c_1.png", "c_2.png", "c_10.png"]
    item = classify_input(folder)
    assert (item.kind, item.name, item.count, item.single_sequence) == ("folder", "case", 3, False)
    assert item.slices == tuple(folder_slices(folder)) and item.grey == frozenset()


def test_kinds_from_names_and_headers(tmp_path):
    _slices(tmp_path, ["rgb"])
    assert classify_input(tmp_path / "rgb.png").kind == "slice"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt: not a slice"):
        classify_input(tmp_path / "notes.txt")
    (tmp_path / "series.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"series\.zip: a DICOM input; give a DICOM series as --pre"):
        classify_input(tmp_path / "series.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder holds no slice images"):
        classify_input(tmp_path / "empty")


def test_a_folder_of_grey_slices_is_one_sequence(tmp_path):
    """Grey slices in a folder are refused like a grey slice given alone, naming the first; with
    ``single_sequence`` they are classified as grey (repeated when read) and the input says so."""
    folder = _slices(tmp_path / "grey", ["g_1", "g_2"], grey={"g_1", "g_2"})
    mixed = _slices(tmp_path / "mixed", ["m_1", "m_2", "m_3"], grey={"m_2"})
    one = folder / "g_2.png"
    for path, first in ((folder, folder / "g_1.png"), (mixed, mixed / "m_2.png"), (one, one)):
        with pytest.raises(OneSequenceError, match=rf"^{re.escape(str(first))}: one MR sequence; "):
            classify_input(path)
    item = classify_input(folder, single_sequence=True)
    assert item.grey == {folder / "g_1.png", folder / "g_2.png"} and item.single_sequence
    item = classify_input(mixed, single_sequence=True)
    assert item.grey == {mixed / "m_2.png"} and item.single_sequence


def test_a_grey_slice_folder_is_never_silently_repeated_into_three_channels(trained_lgg, tmp_path, capsys):
    """``medseg predict`` of a folder of grey slices exits 2 and writes nothing; with
    ``--single-sequence`` every output PNG of a grey slice says so, an RGB slice beside it
    does not, and the masks are those of the grey slice repeated into the three channels."""
    best = trained_lgg.run_dir / "best.pt"
    folder = _slices(tmp_path / "case", ["s_1", "s_2", "s_3"], grey={"s_1", "s_3"}, size=(40, 48))
    out = tmp_path / "out"
    assert main(["predict", str(best), str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medseg: error: {folder / 's_1.png'}: one MR sequence; ") and "--single-sequence" in err
    assert not out.exists()

    (record,) = predict_paths(best, [folder], out, single_sequence=True)
    assert record.kind == "folder" and record.slices == 3 and record.single_sequence
    model = load_model(best)
    predictor = Predictor(model.model, model.config.data.image_size)
    for k, grey in ((1, True), (2, False), (3, True)):
        pixels = np.array(Image.open(folder / f"s_{k}.png"))
        image = np.repeat(pixels[..., None], 3, axis=-1) if grey else pixels
        for ending in ("_pred.png", "_pred_overlay.png"):
            with Image.open(out / "case" / f"s_{k}{ending}") as png:
                assert png.info.get("Comment") == (SINGLE_SEQUENCE_NOTE if grey else None)
                assert is_prediction(out / "case" / f"s_{k}{ending}")
        mask = np.asarray(Image.open(out / "case" / f"s_{k}_pred.png")) == 255
        np.testing.assert_array_equal(mask, predictor.masks([image])[0] == 1)


def test_the_app_classifies_an_upload_as_predict_classifies_the_file(tmp_path):
    """The same grey file: refused by both in their own words, accepted by both with the flag,
    read into the same three channels."""
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "g.png")
    data = (tmp_path / "g.png").read_bytes()
    with pytest.raises(OneSequenceError):
        classify_input(tmp_path / "g.png")
    with pytest.raises(DataError, match=r"^g\.png: one MR sequence; .*tick"):
        read_upload(("g.png", data))
    assert classify_input(tmp_path / "g.png", single_sequence=True).grey == {tmp_path / "g.png"}
    upload = read_upload(("g.png", data), single_sequence=True)
    assert upload.single_sequence
    np.testing.assert_array_equal(upload.images[0], np.repeat(grey[..., None], 3, axis=-1))
