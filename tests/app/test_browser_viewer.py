"""The interactive viewer (NiiVue) in a real browser: with WebGL2 (Chromium's SwiftShader) the
Case view draws the patient's stack on a canvas, opening at the linked slice; without WebGL
the page shows its PNG view and says why. Uses test_browser.py's server and fixtures."""

from __future__ import annotations

import io
import time
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from medseg.app.volume_viewer import NO_WEBGL
from medseg.imaging.palette import ERROR_KINDS, PREDICTED, REFERENCE
from tests.app.test_browser import (
    CHROMIUM,
    LAUNCH_ARGS,
    PAGE_READY_MS,
    largest_tumour,
    server,  # noqa: F401 (a fixture)
    shown_data,  # noqa: F401 (a fixture)
    wait_until_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: WebGL2 in software: SwiftShader through ANGLE, no GPU needed
WEBGL_ARGS = [arg for arg in LAUNCH_ARGS if arg not in ("--disable-gpu", "--disable-webgl")] + [
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
VIEWER_FRAME = 'iframe[title*="volume_viewer"]'


def palette_pixels(picture: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of an (H, W, 3) screenshot are near ``rgb`` (blended overlays drift)."""
    return int((np.abs(picture.astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def canvas_picture(page) -> np.ndarray:
    canvas = page.frame_locator(VIEWER_FRAME).locator("canvas#view")
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))


def test_niivue_draws_the_stack_with_webgl(server, shown_data, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    _, lgg = shown_data
    patient, number = largest_tumour(lgg)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=WEBGL_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1200})
            started = time.monotonic()
            page.goto(f"{server}/?{urlencode({'patient': patient.name, 'slice': number})}",
                      wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text("Image (PNG) view of this slice").wait_for(timeout=PAGE_READY_MS)
            frame = page.frame_locator(VIEWER_FRAME)
            frame.locator("#readout").filter(has_text="window").wait_for(timeout=PAGE_READY_MS)
            wait_until_idle(page)
            loaded_s = time.monotonic() - started
            picture = canvas_picture(page)
            Image.fromarray(picture).save(tmp_path / "niivue_canvas.png")
            page.screenshot(path=str(tmp_path / "niivue_page.png"), full_page=True)
            assert picture.shape[0] > 300 and picture.shape[1] > 300
            grey = (picture.max(axis=-1) - picture.min(axis=-1) < 8) & (picture.max(axis=-1) > 30)
            assert grey.sum() > 0.02 * grey.size, "no MRI drawn on the canvas"
            # the largest tumour's slice opened: the errors' colours are on the canvas
            errors = sum(palette_pixels(picture, entry.rgb) for entry in ERROR_KINDS.values())
            assert errors > 20, "no TP/FP/FN overlay drawn at the linked slice"
            # the overlay choice repaints: the reference in its own colour
            page.get_by_text("Reference", exact=True).click()
            wait_until_idle(page)
            page.wait_for_timeout(1500)
            reference = canvas_picture(page)
            assert palette_pixels(reference, REFERENCE.rgb) > 20
            assert palette_pixels(reference, PREDICTED.rgb) < palette_pixels(picture, PREDICTED.rgb) + 1
            # the wheel scrolls slices in the browser alone: the canvas changes, the page's
            # slice (the URL) does not
            canvas = frame.locator("canvas#view")
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            for _ in range(3):
                page.mouse.wheel(0, 120)
                page.wait_for_timeout(200)
            scrolled = canvas_picture(page)
            assert np.abs(scrolled.astype(int) - reference.astype(int)).sum() > 0
            assert page.evaluate("new URLSearchParams(location.search).get('slice')") == str(number)
            print(f"Case view with the viewer drawn: {loaded_s:.1f} s")
        finally:
            browser.close()


def test_without_webgl_the_png_view_shows(server, shown_data):  # noqa: F811
    from playwright.sync_api import sync_playwright

    _, lgg = shown_data
    patient, number = largest_tumour(lgg)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1080})
            page.goto(f"{server}/?{urlencode({'patient': patient.name, 'slice': number})}",
                      wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text(NO_WEBGL).wait_for(timeout=PAGE_READY_MS)
            wait_until_idle(page)
            assert page.get_by_text("Overlay: model vs").is_visible()
            pictures = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
            assert pictures.count() >= 4 and pictures.first.is_visible()
            assert page.get_by_text("Image (PNG) view of this slice").count() == 0
            assert page.locator(VIEWER_FRAME).bounding_box()["height"] == 0
        finally:
            browser.close()
