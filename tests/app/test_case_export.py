"""The Case view's exports (medseg.app.case_export): the view as a PNG with its caption band,
and the self-contained HTML case report, against what the page itself shows."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from medseg.app.case_export import (
    BAND_MIN_WIDTH,
    BAND_RGB,
    DEMO_WARNING,
    ViewFacts,
    case_report_html,
    report_file_name,
    view_file_name,
    view_png,
    worst_first,
)
from medseg.app.widgets import RESEARCH_NOTICE
from medseg.data.lgg import list_patients
from medseg.imaging.palette import ERROR_KINDS
from tests.app.page_driver import record_downloads, record_pictures, start

FACTS = ViewFacts("run_a", "best.pt, epoch 2", 0.5, "TCGA_AB_1234", 3, None)
LEGEND = tuple(ERROR_KINDS.values())
VOID = {"meta", "img", "br", "hr", "link", "input"}


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class Page(HTMLParser):
    """Every tag with its attributes, checked to nest properly (each element closed in order)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert self.open == [], f"unclosed elements {self.open}"

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def volume_of(dice: list[float]) -> dict:
    """A score_volume-shaped dict whose slices 1..N have the slice Dice ``dice``."""
    per_slice = [{"slice": k, "dice": d, "iou": d / (2 - d), "gt_pixels": 10 * k, "pred_pixels": 9 * k}
                 for k, d in enumerate(dice, start=1)]
    return {"patient_dice": 0.8125, "patient_iou": 0.684, "n_slices": len(dice),
            "dice": float(np.mean(dice)), "n_empty_fp_slices": 1, "n_empty_slices": 2,
            "per_slice": per_slice}


def picture_of(number: int) -> np.ndarray:
    """A picture of its own for each slice number."""
    return np.random.default_rng(number).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def report(facts: ViewFacts = FACTS, dice: tuple[float, ...] = (0.9, 0.2, 1.0, 0.2, 0.5),
           link: str = "?run=run_a&threshold=0.50&patient=TCGA_AB_1234&slice=3",
           card: tuple[tuple[str, str], ...] = (("Task", "segmentation"),)) -> str:
    return case_report_html(facts, card, volume_of(list(dice)), {"hd95_px": 2.5, "assd_px": float("nan")},
                            picture_of, LEGEND, link, units_note="Distances in pixels.")


def embedded(page: Page) -> list[np.ndarray]:
    """The pictures a page embeds, decoded (each must be a PNG data URI)."""
    sources = [str(attrs["src"]) for attrs in page.all("img")]
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    return [decode(base64.b64decode(src.split(",", 1)[1])) for src in sources]


# ---------------------------------------------------------------- the library


def test_worst_first_is_the_slice_tables_order():
    rows = volume_of([0.9, 0.2, 1.0, 0.2, float("nan"), 0.5])["per_slice"]
    assert [row["slice"] for row in worst_first(rows)] == [2, 4, 6, 1, 3, 5]  # ties by slice, NaN last


def test_view_png_keeps_the_picture_and_writes_its_band():
    picture = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = decode(view_png(picture, FACTS, LEGEND))
    assert out.shape[1] == BAND_MIN_WIDTH and out.shape[0] > 64
    assert (out[:64, :96] == picture).all()  # pixel for pixel at the top left
    band = out[64:]
    assert (band != BAND_RGB).any(axis=2).sum() > 500  # text and swatches
    for entry in LEGEND:  # each colour of the legend has its swatch
        assert (band == entry.rgb).all(axis=2).sum() >= 100
    wide = np.zeros((30, 600, 3), np.uint8)
    assert decode(view_png(wide, FACTS, LEGEND)).shape[1] == 600  # never narrower than the picture


@pytest.mark.parametrize("change", [
    {"threshold": 0.55}, {"run": "run_b"}, {"checkpoint": "last.pt, epoch 3"}, {"patient": "TCGA_AB_9"},
    {"slice_number": 4}, {"postprocessing": "keep the largest lesion"}, {"synthetic": True},
])
def test_the_band_writes_every_fact(change):
    """The band changes with each fact it states (the threshold, run, checkpoint ...)."""
    picture = np.zeros((64, 64, 3), np.uint8)
    before, after = (decode(view_png(picture, facts, LEGEND)) for facts in (FACTS, replace(FACTS, **change)))
    assert before.shape != after.shape or (before != after).any()


def test_the_facts_in_words():
    assert FACTS.lines() == ["Run: run_a; checkpoint: best.pt, epoch 2",
                             "Patient: TCGA_AB_1234; slice 3; threshold: p >= 0.50"]
    assert replace(FACTS, postprocessing="keep the largest lesion").lines()[-1] == (
        "Postprocessing applied: keep the largest lesion")


def test_the_probability_map_band_has_the_colour_bar_and_no_swatches():
    picture = np.zeros((64, 64, 3), np.uint8)
    band = decode(view_png(picture, FACTS, (), probability=True))[64:]
    assert not any((band == entry.rgb).all(axis=2).any() for entry in LEGEND)
    assert np.unique(band.reshape(-1, 3), axis=0).shape[0] > 50  # viridis' colours


def test_file_names_carry_no_path_characters():
    hostile = ViewFacts("../../etc/<x>", "best.pt", 0.5, "a\\b:c\n\"d'", 7)
    for name in (view_file_name(hostile), report_file_name(hostile)):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and not name.startswith(".")
    assert view_file_name(hostile).endswith("_slice7_view.png")
    assert report_file_name(FACTS) == "run_a_TCGA_AB_1234_slice3_report.html"


def test_report_is_self_contained_and_shows_the_worst_slices_in_order():
    text = report()
    page = Page(text)
    images = embedded(page)
    assert len(images) == 3
    for number, picture in zip((2, 4, 5), images, strict=True):  # Dice 0.2, 0.2 (slice order), 0.5
        assert (picture == picture_of(number)).all()
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    assert [a["href"] for a in page.all("a")] == ["?run=run_a&threshold=0.50&patient=TCGA_AB_1234&slice=3"]
    captions = re.findall(r"<figcaption>Slice (\d+):", text)
    assert captions == ["2", "4", "5"]
    words = " ".join(page.text)
    assert "0.812" in words and "0.684" in words and "2.5" in words and "undefined" in words
    assert "p >= 0.50" in words and RESEARCH_NOTICE in words and DEMO_WARNING not in words
    assert DEMO_WARNING in " ".join(Page(report(replace(FACTS, synthetic=True))).text)
    assert len(Page(report(dice=(0.3, 0.1))).all("img")) == 2  # all slices when fewer than 3


def test_report_escapes_every_name():
    hostile = "<script>alert(1)</script>"
    facts = replace(FACTS, run=hostile, patient='<img src="http://x/a.png" onerror=alert(1)>',
                    checkpoint=hostile, postprocessing=hostile)
    text = report(facts, link='?run="><script>alert(1)</script>', card=(("Data", hostile),))
    page = Page(text)
    assert not page.all("script")
    assert len(embedded(page)) == 3
    assert [a["href"] for a in page.all("a")] == ['?run="><script>alert(1)</script>']  # an attribute, escaped
    assert "&lt;script&gt;" in text and hostile in " ".join(page.text)


# ---------------------------------------------------------------- the page


def test_case_view_downloads_the_view_and_the_report(monkeypatch, segmentation_run, tiny_lgg):
    """Both buttons on the Case view; the PNG holds the large view as sent to the page, the
    report the page's patient Dice and its slice table's worst slices, in order."""
    at = start(monkeypatch, segmentation_run.parent, lgg=tiny_lgg)
    assert [b.label for b in at.download_button] == ["Download this view (PNG)", "Download case report (HTML)"]
    patient = list_patients(tiny_lgg)[1]
    at.radio(key="patient_subset").set_value("all").run()
    at.selectbox(key="patient").set_value(patient.name).run()
    worst = list(at.dataframe[0].value["Slice"])[:3]
    sent = record_pictures(monkeypatch)
    offered = record_downloads(monkeypatch)
    views = []
    for number in [*worst[1:], worst[0]]:  # each worst slice as the large view shows it
        at.select_slider(key=f"slice:{tiny_lgg}:{patient.name}").set_value(number).run()
        assert not at.exception and not at.error
        views.append(decode(sent[-4][1]))  # this run's pictures: the large view, the MRI, two masks
        stem = f"{segmentation_run.name}_{patient.name}_slice{number}"
        assert {f"{stem}_view.png", f"{stem}_report.html"} <= set(offered)
        exported = decode(offered[f"{stem}_view.png"]())
        height, width = views[-1].shape[:2]
        assert (exported[:height, :width] == views[-1]).all()  # the view, pixel for pixel
        assert (exported[height:] != BAND_RGB).any(axis=2).sum() > 500  # and its band
    views = [views[-1], *views[:-1]]
    text = offered[f"{stem}_report.html"]()
    page = Page(text)
    shown_dice = next(m.value for m in at.metric if m.label == "Patient Dice (3-D)")
    assert f"<th>Patient Dice (3-D)</th><td>{shown_dice}</td>" in text
    assert not page.all("script")
    assert [int(n) for n in re.findall(r"<figcaption>Slice (\d+):", text)] == worst
    for picture, view in zip(embedded(page), views, strict=True):
        assert (picture == view).all()  # each worst slice's picture is the page's
    assert [a["href"] for a in page.all("a")] == [next(c.value for c in at.code)]  # the sidebar's link
