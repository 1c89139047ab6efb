"""Issue #28's reading room in a real browser (as tests/app/test_browser.py, whose server and
fixtures these use): a link opens exactly its screen and the URL follows the page; the
probability map's colour bar and the validation-best threshold; the three-sequence upload,
slot by slot, with a DICOM SEG reference."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest

from medseg.app.run_cards import find_runs
from medseg.app.viewer import THRESHOLD_MARK_RGB, colour_bar
from medseg.data.lgg import list_patients
from medseg.imaging.sequences import SEQUENCE_TITLES
from tests.app.test_browser import (
    CHROMIUM,
    LAUNCH_ARGS,
    PAGE_READY_MS,
    largest_tumour,
    library_dice,
    server,  # noqa: F401 (a fixture)
    shown_data,  # noqa: F401 (a fixture)
    wait_until_idle,
)
from tests.app.test_uploads_slots import SHAPE, coded, nifti, scan, seg_of, truth

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ERROR = '[data-testid="stAlertContentError"]'


def opened(browser, url: str, params: dict | list, ready: str) -> object:
    """A new 1440x1000 page at ``url`` with the link ``params``, once the text ``ready`` shows
    and the page's run has ended (the status widget may not show yet when ``ready`` does)."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{url}/?{urlencode(params, doseq=True)}", wait_until="domcontentloaded", timeout=60_000)
    settled(page, ready)
    return page


def settled(page, shown: str) -> None:
    """Wait until the text ``shown`` (drawn by the run awaited) is on the page and that run has
    ended: its status widget may not show yet when ``shown`` does."""
    page.get_by_text(shown).first.wait_for(timeout=PAGE_READY_MS)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=PAGE_READY_MS)
    wait_until_idle(page)


def url_params(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def slider_text(page, label: str) -> list[str]:
    """What a slider shows on its thumb (a range slider: on each, their labels "<label> — start"
    and "— end")."""
    thumbs = page.locator(f'input[type="range"][aria-label^="{label}"]')
    return [thumbs.nth(k).get_attribute("aria-valuetext") for k in range(thumbs.count())]


def chosen(page, label: str) -> str:
    """The selected option of a radio group."""
    return page.locator(f'[role="radiogroup"][aria-label="{label}"] '
                        '[data-testid="stRadioOption"][data-selected="true"]').inner_text()


def slice_dice(page) -> str:
    return page.locator('[data-testid="stMetric"]', has_text="Slice Dice").locator(
        '[data-testid="stMetricValue"]').inner_text()


def step_slider(page, label: str, param: str, expected: str) -> None:
    """One arrow-key step of a slider, then wait until the URL's ``param`` is ``expected``."""
    page.locator(f'input[type="range"][aria-label="{label}"]').focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"new URLSearchParams(location.search).get('{param}') === '{expected}'",
                           timeout=PAGE_READY_MS)
    settled(page, "Slice Dice")


def launch(playwright):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)


def test_a_link_opens_its_screen_and_the_url_follows_the_page(server, shown_data):  # noqa: F811
    from playwright.sync_api import sync_playwright

    models, lgg = shown_data
    run = find_runs(models)[0].name
    patient = list_patients(lgg)[-1]
    number, following = patient.slices[1].index, patient.slices[2].index
    link = {"run": run, "kind": "run", "checkpoint": "best.pt", "threshold": "0.30", "view": "Case",
            "subset": "all", "patient": patient.name, "slice": number, "sequence": "Pre-contrast",
            "overlay": "fill", "opacity": "0.45", "labels": ["fp", "fn"], "zoom": "4",
            "window": ["10", "200"]}
    dice = {t: library_dice(models, patient, t) for t in (0.30, 0.35)}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = opened(browser, server, link, "Overlay: model vs")
            assert page.get_by_role("combobox", name="Run").input_value() == run
            assert page.get_by_role("combobox", name="Patient").input_value().startswith(patient.name)
            assert page.get_by_role("tab", name="Case", exact=True).get_attribute("aria-selected") == "true"
            assert {label: chosen(page, label) for label in (
                "Checkpoint", "Patients of the run's split", "MRI sequence", "Overlay")} == {
                "Checkpoint": "best.pt", "Patients of the run's split": "all",
                "MRI sequence": "Pre-contrast", "Overlay": "Fill"}
            assert {label: slider_text(page, label) for label in (
                "Probability threshold", "Slice", "Overlay opacity", "Zoom (nearest neighbour)",
                "Window (intensity range from black to white)")} == {
                "Probability threshold": ["0.30"], "Slice": [str(number)], "Overlay opacity": ["0.45"],
                "Zoom (nearest neighbour)": ["4×"], "Window (intensity range from black to white)": ["10", "200"]}
            tags = page.locator('[data-testid="stMultiSelect"]', has_text="Labels shown").locator("[data-tag]")
            assert [tags.nth(k).get_attribute("aria-label") for k in range(tags.count())] == [
                "False positive", "False negative"]
            assert slice_dice(page) == f"{dice[0.30][number]:.3f}"
            assert page.get_by_text("Overlay: model vs expert (Pre-contrast, fill, 4×)").is_visible()
            page.get_by_text("Link to this view").click()  # the link to copy: the same screen
            code = page.locator('[data-testid="stSidebar"] [data-testid="stCode"]').inner_text()
            assert code == (f"?run={run}&kind=run&checkpoint=best.pt&threshold=0.30&subset=all&patient="
                            f"{patient.name}&slice={number}&large=errors&sequence=Pre-contrast&overlay=fill"
                            "&opacity=0.45&labels=fp&labels=fn&zoom=4&window=10&window=200")  # Case: no view

            step_slider(page, "Slice", "slice", str(following))  # the URL follows the page
            assert slice_dice(page) == f"{dice[0.30][following]:.3f}"
            step_slider(page, "Probability threshold", "threshold", "0.35")
            assert slice_dice(page) == f"{dice[0.35][following]:.3f}"
            assert url_params(page)["slice"] == [str(following)]

            missing = opened(browser, server, {"run": "gone", "patient": patient.name}, "This link names")
            assert missing.locator(ERROR).all_inner_texts() == [
                f"This link names run gone, which is not in the runs folder. (runs folder: {models})"]
            for nothing in ('[data-testid="stTabs"]', '[data-testid="stMetric"]', '[data-testid="stImage"]'):
                assert missing.locator(nothing).count() == 0, nothing
        finally:
            browser.close()


def bar_picture(page) -> np.ndarray:
    """The colour bar (the 12-px-high picture under the map) as the browser decoded it, once
    it is visible."""
    pixels = page.wait_for_function(
        """() => {
            const bar = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')]
                .find(i => i.complete && i.naturalHeight === 12 && i.getBoundingClientRect().width > 0);
            if (!bar) return null;
            const canvas = document.createElement('canvas');
            [canvas.width, canvas.height] = [bar.naturalWidth, bar.naturalHeight];
            const context = canvas.getContext('2d');
            context.drawImage(bar, 0, 0);
            return {width: bar.naturalWidth, rgba: [...context.getImageData(0, 0, bar.naturalWidth, 12).data]};
        }""", timeout=PAGE_READY_MS).json_value()
    return np.array(pixels["rgba"], np.uint8).reshape(12, pixels["width"], 4)[..., :3]


def marked_columns(bar: np.ndarray) -> list[int]:
    return [c for c in range(bar.shape[1]) if (bar[:, c] == THRESHOLD_MARK_RGB).all()]


def test_the_probability_map_marks_the_threshold_and_the_validation_best_sets_it(
        server, shown_data):  # noqa: F811
    from playwright.sync_api import sync_playwright

    _, lgg = shown_data
    patient, number = largest_tumour(lgg)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = opened(browser, server, {"patient": patient.name, "slice": number, "threshold": "0.05"},
                          "Overlay: model vs")
            page.locator('[data-testid="stSidebar"] [data-testid="stRadioOption"]',
                         has_text="Probability map").click()
            settled(page, "white contour p ≥ 0.05")
            assert url_params(page)["large"] == ["probability"]
            bar = bar_picture(page)
            width = bar.shape[1]
            assert marked_columns(bar) == [round(0.05 * (width - 1)) + k for k in (0, 1)]
            assert bar.tolist() == colour_bar(0.05, width=width).tolist()
            assert page.get_by_text("black mark: the threshold 0.05").is_visible()

            score = page.get_by_role("button", name="Score the")
            if score.count():
                score.click()
            use = page.get_by_role("button", name="Use the validation-best threshold")
            settled(page, "Use the validation-best threshold")
            best = use.inner_text().rpartition("(")[2].rstrip(")")
            if best == "0.05":  # already there: move off it first
                step_slider(page, "Probability threshold", "threshold", "0.10")
            use.click()
            page.wait_for_function(f"new URLSearchParams(location.search).get('threshold') === '{best}'",
                                   timeout=PAGE_READY_MS)
            settled(page, f"white contour p ≥ {best}")
            assert slider_text(page, "Probability threshold") == [best]
            assert page.get_by_text(f"black mark: the threshold {best}").is_visible()
            bar = bar_picture(page)
            assert marked_columns(bar) == [round(float(best) * (width - 1)) + k for k in (0, 1)]
            assert bar.tolist() == colour_bar(float(best), width=width).tolist()
            assert use.is_disabled()
        finally:
            browser.close()


def upload(page, slot: str, name: str, data: bytes, shown: str) -> None:
    """Give the uploader titled ``slot`` a file, as a reader choosing it would; wait until the
    page has run and shows the text ``shown``."""
    page.locator(f'section[aria-label="{slot}"] input[type="file"]').set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": data})
    page.locator(f'section[aria-label="{slot}"] [data-testid="stFileChipName"][title="{name}"]').wait_for(
        timeout=PAGE_READY_MS)
    settled(page, shown)


def test_the_upload_checks_slots_together_and_reads_a_dicom_seg(server, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    files = scan(tmp_path)
    wrong = ("post_4.nii.gz", nifti(tmp_path, coded(2, (*SHAPE[:2], 4)), "wrong.nii.gz"))
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = opened(browser, server, {"view": "Upload a scan"}, "Three sequences")
            page.get_by_text("Three sequences").click()
            settled(page, "Upload the scan's sequences to see the model's mask.")
            upload(page, "FLAIR", *files["flair"], "1 of 3 sequences uploaded")
            assert page.locator(ERROR).count() == 0
            assert page.get_by_text("DICOM MR “AX FLAIR”: 6 × 8 × 3 (rows × columns × slices)").is_visible()
            upload(page, SEQUENCE_TITLES["pre"], *files["pre"], "2 of 3 sequences uploaded")
            assert page.locator(ERROR).count() == 0

            upload(page, SEQUENCE_TITLES["post"], *wrong, "differ in shape")  # all in: checked together
            assert page.locator(ERROR).all_inner_texts() == [
                "FLAIR (flair.zip) and Post-contrast T1 (post_4.nii.gz) differ in shape: (8, 6, 3) vs "
                "(8, 6, 4); the three sequences must be co-registered on one voxel grid"]
            upload(page, SEQUENCE_TITLES["post"], *files["post"], "Model volume (mL)")  # replaced: it runs
            assert page.locator(ERROR).count() == 0

            seg = seg_of(tmp_path, files["flair"][1], truth())
            upload(page, "Expert mask (optional)", "expert.dcm", seg, "Measures against the expert mask (3-D)")
            assert page.get_by_text("DICOM SEG “medseg tumour mask").is_visible()
            assert page.locator(ERROR).count() == 0
            for table in ("Measures against the expert mask (3-D)", "Slices of this volume, worst Dice first"):
                assert page.get_by_text(table).is_visible()
            frames = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]')  # measures, lesions, slices
            frames.nth(2).wait_for(timeout=PAGE_READY_MS)  # a table is drawn after its heading
            assert frames.count() == 3 and all(frames.nth(k).is_visible() for k in range(3))
        finally:
            browser.close()
