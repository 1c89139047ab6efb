"""What the Case view exports: the large view as a PNG with a caption band written under it
("download this view"), and the case report, one self-contained HTML file.

Pure functions: the page passes what it already shows (the picture of
:func:`medseg.app.slice_view.large_picture`, :func:`medseg.app.scoring.score_volume`'s dict,
the record's measures, the run card's rows, the link of :mod:`medseg.app.links`), so every
number here is the number the page shows, formatted by the same functions. The report embeds
its pictures as ``data:`` URIs and holds no script, style sheet or other file; every string
from data or a user is HTML-escaped. The band's text is ASCII (the Pillow font bundled has no
other glyphs): a name in another script is written with ``?`` in place of what has no ASCII
form.

Example:
    >>> facts = ViewFacts("demo_lgg", "best.pt", 0.5, "TCGA_CS_4941", 12, None, synthetic=True)
    >>> view_file_name(facts)
    'demo_lgg_TCGA_CS_4941_slice12_view.png'
    >>> [row["slice"] for row in worst_first([{"slice": 1, "dice": 0.9}, {"slice": 2, "dice": 0.1}])]
    [2, 1]
"""

from __future__ import annotations

import base64
import html
import io
import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medseg.app.scoring import PatientSlices
from medseg.app.slice_view import Display, large_picture
from medseg.app.text import one_line
from medseg.app.viewer import PROBABILITY_COLOURS, colour_bar, png_bytes
from medseg.app.widgets import RESEARCH_NOTICE, SYNTHETIC_NOTES, score_text
from medseg.imaging.palette import LegendEntry
from medseg.metrics.measures import measure_label
from medseg.predict.outputs import download_name

#: the slices a case report shows, worst first (all of them when a patient has fewer)
WORST_SLICES = 3
#: the demo data's warning, as the sidebar words it (without its Markdown)
DEMO_WARNING = SYNTHETIC_NOTES["lgg"].replace("**", "").replace("`", "")
#: the caption band: smallest width (the picture is padded on the right), font size, margins
BAND_MIN_WIDTH = 480
FONT_SIZE = 13
LINE_HEIGHT = 17
MARGIN = 8
SWATCH = 11
BAND_RGB = (255, 255, 255)
TEXT_RGB = (0, 0, 0)
WARNING_RGB = (170, 0, 0)
#: characters of the page's wording the band's font cannot draw, and their ASCII forms
_ASCII_FORMS = str.maketrans({"≥": ">=", "≤": "<=", "×": "x", "—": "-", "–": "-", "−": "-", "…": "..."})


@dataclass(frozen=True)
class ViewFacts:
    """What an export states beside its pictures.

    Args:
        run: the run's name (a card's ``name``).
        checkpoint: the checkpoint file read (an export's model file, a CV folder's ensemble).
        threshold: the probability threshold: a pixel is tumour at ``p >= threshold``.
        patient: the patient's name.
        slice_number: the slice shown.
        postprocessing: the step applied to the masks, in words (None: none applied).
        synthetic: the cases are medseg's demo data (synthetic tumours).
    """

    run: str
    checkpoint: str
    threshold: float
    patient: str
    slice_number: int
    postprocessing: str | None = None
    synthetic: bool = False

    def lines(self) -> list[str]:
        """The facts in words, one per line (the band's and the report's wording)."""
        lines = [f"Run: {self.run}; checkpoint: {self.checkpoint}",
                 f"Patient: {self.patient}; slice {self.slice_number}; threshold: p >= {self.threshold:.2f}"]
        if self.postprocessing is not None:
            lines.append(f"Postprocessing applied: {self.postprocessing}")
        return lines


# ---------------------------------------------------------------- what the page ranks and shows


def worst_first(per_slice: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The slices of :func:`~medseg.app.scoring.score_volume`'s ``per_slice``, lowest slice
    Dice first (ties: by slice number): the order of the Case view's slice table."""
    return sorted(per_slice, key=lambda row: (math.isnan(row["dice"]), row["dice"], row["slice"]))


def measure_rows(measures: Mapping[str, float]) -> list[tuple[str, str]]:
    """(label, value) of each measure of a patient, as the Case view's table shows them."""
    return [(measure_label(key), "undefined" if np.isnan(value) else f"{value:.4g}")
            for key, value in measures.items()]


def score_rows(volume: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of a patient's scores the Case view shows above and under its slices."""
    return [("Patient Dice (3-D)", score_text(volume["patient_dice"])),
            ("Patient IoU (3-D)", score_text(volume["patient_iou"])),
            ("Slices", str(volume["n_slices"])),
            ("Mean slice Dice", score_text(volume["dice"])),
            ("Tumour-free slices with false positives",
             f"{volume['n_empty_fp_slices']} of {volume['n_empty_slices']}")]


def slice_picture(case: PatientSlices, probs: np.ndarray, raw: np.ndarray, threshold: float,
                  display: Display, number: int) -> np.ndarray:
    """The large view's picture (:func:`~medseg.app.slice_view.large_picture`) of the slice
    ``number``: ``probs`` scored and drawn, ``raw`` in the probability map, as on the page."""
    position = case.numbers.index(number)
    return large_picture(display.background(case.images[position]), case.masks[position],
                         probs[position], threshold, display, raw[position])


def probability_legend(threshold: float) -> str:
    """What the probability map's colours mean (the page's caption under its colour bar)."""
    return (f"Probability of tumour, 0 (left) to 1 (right), {PROBABILITY_COLOURS}; black mark: the "
            f"threshold {threshold:.2f}; white contour: p >= {threshold:.2f}.")


# ---------------------------------------------------------------- file names


def _stem(facts: ViewFacts, what: str) -> str:
    parts = f"{facts.run}_{facts.patient}_slice{facts.slice_number}"
    return download_name(parts.replace("/", "_").replace("\\", "_"), what)


def view_file_name(facts: ViewFacts) -> str:
    """``<run>_<patient>_slice<n>_view.png`` in ASCII letters, digits, ``.``, ``_`` and ``-``."""
    return _stem(facts, "_view.png")


def report_file_name(facts: ViewFacts) -> str:
    """``<run>_<patient>_slice<n>_report.html``, safe as :func:`view_file_name`."""
    return _stem(facts, "_report.html")


# ---------------------------------------------------------------- the view as a PNG


def ascii_text(text: str) -> str:
    """``text`` on one line in ASCII: accents dropped, the page's symbols spelt (``>=``), any
    other character ``?``."""
    text = one_line(text).translate(_ASCII_FORMS)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c if c.isascii() else "?" for c in decomposed if not unicodedata.combining(c))


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` (a word longer than a line is cut)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width:
            cut = max(1, next(n for n in range(len(word), 0, -1) if font.getlength(word[:n]) <= width))
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return [*lines, line] if line else lines


def view_png(picture: np.ndarray, facts: ViewFacts, legend: Sequence[LegendEntry],
             probability: bool = False) -> bytes:
    """The large view's ``picture`` with a caption band written under it, as a PNG.

    The picture sits at the top left, pixel for pixel; under it (and right of it when it is
    narrower than :data:`BAND_MIN_WIDTH`) a white band says the legend (``legend``'s colour
    swatches, or the colour bar of the probability map when ``probability``), the run,
    checkpoint, threshold, patient, slice, the postprocessing applied and, for demo data, the
    synthetic-labels warning.

    Args:
        picture: (H, W, 3) uint8, the picture the page shows.
        facts: what the band states.
        legend: the overlay's colours as the page lists them (:meth:`Display.legend`).
        probability: the picture is the probability map.
    """
    picture = np.asarray(picture)
    width = max(picture.shape[1], BAND_MIN_WIDTH)
    font = ImageFont.load_default(size=FONT_SIZE)
    text_width = width - 2 * MARGIN
    blocks: list[tuple[str, Any]] = []  # ("swatch", entry), ("bar", None), ("text"|"warning", line)
    if probability:
        blocks.append(("bar", None))
        blocks += [("text", line) for line in _wrap(probability_legend(facts.threshold), font, text_width)]
    for entry in legend:
        wrapped = _wrap(ascii_text(f"{entry.label}: {entry.meaning}"), font, text_width - SWATCH - 6)
        blocks += [("swatch", (entry, line, index == 0)) for index, line in enumerate(wrapped)]
    for line in facts.lines():
        blocks += [("text", part) for part in _wrap(ascii_text(line), font, text_width)]
    if facts.synthetic:
        blocks += [("warning", part) for part in _wrap(ascii_text(DEMO_WARNING), font, text_width)]
    blocks += [("text", part) for part in _wrap(ascii_text(RESEARCH_NOTICE), font, text_width)]
    band_height = 2 * MARGIN + LINE_HEIGHT * len(blocks)
    canvas = Image.new("RGB", (width, picture.shape[0] + band_height), BAND_RGB)
    canvas.paste(Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = picture.shape[0] + MARGIN
    for kind, value in blocks:
        if kind == "bar":
            bar = colour_bar(facts.threshold, width=min(256, text_width), height=SWATCH)
            canvas.paste(Image.fromarray(bar), (MARGIN, y + 2))
        elif kind == "swatch":
            entry, line, first = value
            if first:
                draw.rectangle((MARGIN, y + 2, MARGIN + SWATCH, y + 2 + SWATCH), fill=entry.rgb,
                               outline=(68, 68, 68))
            draw.text((MARGIN + SWATCH + 6, y), line, fill=TEXT_RGB, font=font)
        else:
            draw.text((MARGIN, y), value, fill=WARNING_RGB if kind == "warning" else TEXT_RGB, font=font)
        y += LINE_HEIGHT
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- the case report


def data_uri(picture: np.ndarray) -> str:
    """A picture as a lossless ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def _table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                    for label, value in rows)
    return f"<table>{cells}</table>"


def _legend_html(legend: Sequence[LegendEntry], threshold: float, probability: bool) -> str:
    if probability:
        return f"<p>{html.escape(probability_legend(threshold))}</p>"
    items = "".join(f'<li><span class="swatch" style="background:{entry.hex}"></span>'
                    f"<b>{html.escape(entry.label)}</b> — {html.escape(entry.meaning)}</li>"
                    for entry in legend)
    return f'<ul class="legend">{items}</ul>'


#: the report's own look (inline: the file reads nothing else)
REPORT_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;color:#111}"
    "table{border-collapse:collapse;margin:0.5em 0}th,td{border:1px solid #bbb;padding:0.2em 0.6em;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3;font-weight:600}"
    ".notice{font-weight:bold}.warning{color:#a00;font-weight:bold}"
    "figure{display:inline-block;margin:0 1em 1em 0}img{image-rendering:pixelated}"
    ".legend{list-style:none;padding:0}.swatch{display:inline-block;width:0.9em;height:0.9em;"
    "border:1px solid #444;margin-right:0.4em;vertical-align:-0.1em}code{word-break:break-all}"
)


def case_report_html(facts: ViewFacts, card: Sequence[tuple[str, str]], volume: Mapping[str, Any],
                     measures: Mapping[str, float] | None, draw: Callable[[int], np.ndarray],
                     legend: Sequence[LegendEntry], link: str, *, probability: bool = False,
                     units_note: str = "") -> str:
    """The case report: one self-contained HTML page (pictures as ``data:`` URIs, no script,
    no file or address read) of what the Case view shows for a patient.

    Args:
        facts: the run, checkpoint, threshold, patient, slice, postprocessing and demo flag.
        card: the run card's (field, value) rows (:meth:`RunCard.summary_rows`).
        volume: :func:`~medseg.app.scoring.score_volume`'s dict of the patient (as shown).
        measures: the patient's measures at the threshold (None: not computed).
        draw: the large view's picture of a slice, by its number (:func:`slice_picture`);
            called for the first :data:`WORST_SLICES` slices of :func:`worst_first`.
        legend: the overlay's colours as the page lists them.
        link: the link to this screen (:func:`medseg.app.links.link_text`).
        probability: the pictures are probability maps.
        units_note: what the page says of the measures' units.
    """
    esc = html.escape
    rows = worst_first(volume["per_slice"])[:WORST_SLICES]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>medseg case report: {esc(facts.patient)}</title>",
        f"<style>{REPORT_STYLE}</style></head><body>",
        f"<h1>Case report: {esc(facts.patient)}</h1>",
        f'<p class="notice">{esc(RESEARCH_NOTICE)}</p>',
    ]
    if facts.synthetic:
        parts.append(f'<p class="warning">{esc(DEMO_WARNING)}</p>')
    model_rows = [("Run", facts.run), ("Checkpoint", facts.checkpoint),
                  ("Threshold", f"p >= {facts.threshold:.2f}"),
                  ("Postprocessing applied", facts.postprocessing or "none")]
    parts += ["<h2>Model</h2>", _table(model_rows), "<h3>Run card</h3>", _table(card)]
    parts += ["<h2>Scores of this patient</h2>", _table(score_rows(volume))]
    if measures is not None:
        parts += ["<h2>Measures of this patient (3-D)</h2>", _table(measure_rows(measures)),
                  f"<p>{esc(units_note)}</p>"]
    parts.append(f"<h2>The {len(rows)} slices with the lowest Dice</h2>")
    for row in rows:
        picture = draw(row["slice"])
        caption = (f"Slice {row['slice']}: Dice {score_text(row['dice'])}, IoU {score_text(row['iou'])}, "
                   f"reference {row['gt_pixels']} px, model {row['pred_pixels']} px")
        parts.append(f'<figure><img src="{data_uri(picture)}" alt="slice {esc(str(row["slice"]))}" '
                     f'width="{picture.shape[1]}" height="{picture.shape[0]}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append(_legend_html(legend, facts.threshold, probability))
    parts += ["<h2>Link to this screen</h2>",
              f'<p><a href="{esc(link)}"><code>{esc(link)}</code></a><br>Add this to the '
              "app's address (after its host and port) to open this run, checkpoint, threshold, "
              "patient, slice and display.</p>",
              "</body></html>"]
    return "\n".join(parts)
