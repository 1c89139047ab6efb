"""End to end in a real browser: ``streamlit run`` as a server, Debian's Chromium through
Playwright, the case view of the slice with the largest tumour.

By default the server shows the tiny runs trained by the fixtures and the screenshots go to
``tmp_path``. To regenerate ``docs/images/app.png`` (a case) and ``docs/images/app_runs.png``
(the runs named by ``MEDSEG_SCREENSHOT_RUNS``, side by side) from trained runs:

    MEDSEG_UPDATE_SCREENSHOT=1 MEDSEG_MODELS_DIR=models MEDSEG_DATA_DIR=demo_data/lgg \\
        MEDSEG_SCREENSHOT_RUNS=demo_lgg,cv_demo_lgg,cv_demo_lgg/fold_0 .venv/bin/python -m pytest tests/app/test_browser.py

(the newest run under ``MEDSEG_MODELS_DIR`` and the cases under ``MEDSEG_DATA_DIR``; the case
view's Dice is checked against that run's ``best.pt``: for app.png point ``MEDSEG_MODELS_DIR``
at a folder whose newest run is a plain run, e.g. one holding a link to ``models/demo_lgg``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
import torch

from medseg.app.run_cards import find_runs
from medseg.app.settings import lgg_dir, models_dir
from medseg.data.lgg import Patient, list_patients
from medseg.data.preprocess import preprocess_image
from medseg.engine import load_model, predict_probabilities
from medseg.imaging.images import read_mask, read_slice_image
from medseg.metrics import dice_score
from tests.app.page_driver import perturbed_copy
from tests.support import write_lgg

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# no WebGL: the Case view falls back to its PNG view, which these tests read (the interactive
# viewer's own tests: test_browser_viewer.py)
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-webgl", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UPDATE = os.environ.get("MEDSEG_UPDATE_SCREENSHOT") == "1"
SERVER_START_S = 60
PAGE_READY_MS = 180_000  # first page: torch import, model load, a patient's predictions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    pytest.fail(f"streamlit not healthy after {SERVER_START_S} s:\n{log.read_text()}")


@pytest.fixture
def shown_data(request, tmp_path) -> tuple[Path, Path]:
    """(models folder, LGG folder): the demo run when updating the screenshot, else a copy of
    the tiny run (the server writes its cohort cache into the run folder, and the session's
    run must stay as other tests expect it) and the tiny LGG folder."""
    if UPDATE:
        return models_dir().resolve(), lgg_dir().resolve()
    run = request.getfixturevalue("segmentation_run")
    models = tmp_path / "models"
    shutil.copytree(run, models / run.name, ignore=shutil.ignore_patterns("app_cache"))
    return models, request.getfixturevalue("tiny_lgg")


@pytest.fixture
def two_runs(request, tmp_path) -> tuple[Path, Path, list[str]]:
    """(models folder, LGG folder, runs to compare): ``MEDSEG_SCREENSHOT_RUNS`` of the
    configured folders when updating the screenshot, else the tiny run and a perturbed copy."""
    if UPDATE:
        return models_dir().resolve(), lgg_dir().resolve(), os.environ["MEDSEG_SCREENSHOT_RUNS"].split(",")
    run = request.getfixturevalue("segmentation_run")
    models = tmp_path / "models"
    shutil.copytree(run, models / "run_a", ignore=shutil.ignore_patterns("app_cache"))
    perturbed_copy(run, models / "run_b", 0.5)
    return models, request.getfixturevalue("tiny_lgg"), ["run_a", "run_b"]


@contextmanager
def streamlit_server(models: Path, lgg: Path, tmp_path: Path) -> Iterator[str]:
    """A ``streamlit run`` server of the page over ``models`` and ``lgg``; yields its URL."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "MEDSEG_MODELS_DIR": str(models), "MEDSEG_DATA_DIR": str(lgg)}
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"),
               "--server.headless", "true", "--server.address", "127.0.0.1",
               "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture
def server(shown_data, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)")
    with streamlit_server(*shown_data, tmp_path) as url:
        yield url


def largest_tumour(lgg: Path) -> tuple[Patient, int]:
    """The patient and the slice number with the most tumour pixels."""
    best = None
    for patient in list_patients(lgg):
        for item in patient.slices:
            area = int(read_mask(item.mask_path).sum())
            if best is None or area > best[2]:
                best = (patient, item.index, area)
    return best[0], best[1]


def library_dice(models: Path, patient: Patient, threshold: float = 0.5) -> dict[int, float]:
    """{slice: Dice at ``threshold``} of the newest run, computed without the app."""
    loaded = load_model(find_runs(models)[0].checkpoint)
    scores = {}
    for item in patient.slices:
        image, mask = read_slice_image(item.image_path), read_mask(item.mask_path)
        probs = predict_probabilities(
            loaded.model, preprocess_image(image, loaded.config.data.image_size)[None])
        probs = torch.nn.functional.interpolate(probs, size=mask.shape, mode="bilinear",
                                                align_corners=False)
        scores[item.index] = dice_score(probs[0, 0] >= threshold, mask)
    return scores


def wait_until_idle(page) -> None:
    """Wait until the page's script run has ended: until then the previous run's elements may
    still stand beside the new ones (a taller page, pictures not yet where they end up)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=PAGE_READY_MS)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached",
                                                           timeout=PAGE_READY_MS)


def test_case_view_in_chromium(server, shown_data, tmp_path):
    from playwright.sync_api import sync_playwright

    models, lgg = shown_data
    patient, number = largest_tumour(lgg)
    dice_by_slice = library_dice(models, patient)
    screenshot = ROOT / "docs" / "images" / "app.png" if UPDATE else tmp_path / "app.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{server}/?{urlencode({'patient': patient.name, 'slice': number})}",
                      wait_until="domcontentloaded", timeout=60_000)
            dice = page.locator('[data-testid="stMetric"]', has_text="Slice Dice").locator(
                '[data-testid="stMetricValue"]')
            dice.wait_for(timeout=PAGE_READY_MS)
            page.get_by_text("Overlay: model vs").wait_for(timeout=PAGE_READY_MS)
            page.wait_for_function(
                """() => {
                    const images = [...document.querySelectorAll('[data-testid="stImage"] img')];
                    return images.length >= 4 && images.every(i => i.complete && i.naturalWidth > 0);
                }""",
                timeout=PAGE_READY_MS,
            )
            wait_until_idle(page)
            assert dice.inner_text() == f"{dice_by_slice[number]:.3f}"
            assert page.get_by_text("Research use only — not for diagnosis").is_visible()
            for label in ("True positive", "False positive", "False negative"):
                assert page.get_by_text(label, exact=True).first.is_visible()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)

            # a click on a cell of the table's first row (the worst Dice) opens that slice
            worst = min(dice_by_slice, key=lambda k: (round(dice_by_slice[k], 3), k))
            table_element = page.locator('[data-testid="stDataFrame"]').first  # the slices' table
            table_element.scroll_into_view_if_needed()
            table = table_element.bounding_box()
            page.mouse.click(table["x"] + 90, table["y"] + 35 + 17)  # header and row: 35 px
            page.wait_for_function(
                f"() => new URLSearchParams(location.search).get('slice') === '{worst}'",
                timeout=PAGE_READY_MS,
            )
            wait_until_idle(page)
            assert dice.inner_text() == f"{dice_by_slice[worst]:.3f}"

            # the Cohort tab: a click on a patient's row opens that patient in the Case tab
            page.get_by_role("tab", name="Cohort").click()
            page.wait_for_function("new URLSearchParams(location.search).get('view') === 'Cohort'",
                                   timeout=PAGE_READY_MS)
            wait_until_idle(page)
            page.get_by_text("patients scored at p ≥").wait_for(timeout=PAGE_READY_MS)
            cohort = page.locator('[data-testid="stDataFrame"]:visible').first
            cohort.wait_for(state="visible", timeout=PAGE_READY_MS)
            first = cohort.bounding_box()
            page.mouse.click(first["x"] + 150, first["y"] + 35 + 17)  # the lowest Dice's row
            page.wait_for_function("!new URLSearchParams(location.search).has('view')",  # Case
                                   timeout=PAGE_READY_MS)
            # the rerun may start after the URL changes: wait for the Case tab's own metric
            patient_dice = page.locator('[data-testid="stMetric"]', has_text="Patient Dice")
            patient_dice.wait_for(state="visible", timeout=PAGE_READY_MS)
            wait_until_idle(page)
            assert page.get_by_role("tab", name="Case", exact=True).get_attribute("aria-selected") == "true"
            assert patient_dice.count() == 1
        finally:
            browser.close()
    assert screenshot.stat().st_size > 50_000


def test_runs_side_by_side_in_chromium(two_runs, tmp_path):
    """The paper's Figure 2 for any runs: a deep link opens the runs on one slice."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)")
    models, lgg, runs = two_runs
    patient, number = largest_tumour(lgg)
    query = urlencode([("view", "Runs side by side"), *[("runs", r) for r in runs],
                       ("patient", patient.name), ("slice", number), ("zoom", 1)])
    screenshot = ROOT / "docs" / "images" / "app_runs.png" if UPDATE else tmp_path / "app_runs.png"
    with streamlit_server(models, lgg, tmp_path) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{url}/?{query}", wait_until="domcontentloaded", timeout=60_000)
            for run in runs:  # one overlay per run, captioned with its scores
                page.get_by_text(re.compile(rf"^{re.escape(run)}( \(.*\))?: slice Dice .*patient Dice")).first.wait_for(
                    timeout=PAGE_READY_MS)
            page.wait_for_function(
                f"""() => {{
                    const images = [...document.querySelectorAll('[data-testid="stImage"] img')];
                    return images.length >= {2 + len(runs)} && images.every(i => i.complete && i.naturalWidth > 0);
                }}""",
                timeout=PAGE_READY_MS,
            )
            wait_until_idle(page)
            header = page.locator('[data-testid="stDataFrame"]').last  # the runs table
            header.wait_for(timeout=PAGE_READY_MS)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 50_000


def open_case(page, url: str, query: dict) -> None:
    """Open the Case view of a link and wait until its pictures are drawn."""
    page.goto(f"{url}/?{urlencode(query)}", wait_until="domcontentloaded", timeout=60_000)
    page.locator('[data-testid="stMetric"]', has_text="Slice Dice").wait_for(timeout=PAGE_READY_MS)
    page.wait_for_function(
        """() => {
            const images = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')];
            return images.length >= 4 && images.every(i => i.complete && i.naturalWidth > 0);
        }""",
        timeout=PAGE_READY_MS,
    )
    wait_until_idle(page)


def main_pictures(page, steady_s: float = 2.0, timeout_s: float = 60.0) -> list[dict]:
    """The bounding boxes of the main area's pictures, the large view first, once they have
    stayed put for ``steady_s`` (a component resizing its frame moves what lies below it)."""
    boxes, since, deadline = None, time.monotonic(), time.monotonic() + timeout_s
    while True:
        now = page.eval_on_selector_all(
            '[data-testid="stMain"] [data-testid="stImage"] img',
            "images => images.map(i => { const r = i.getBoundingClientRect();"
            " return {x: r.x, y: r.y, right: r.right, bottom: r.bottom}; })")
        if now != boxes:
            boxes, since = now, time.monotonic()
        elif time.monotonic() - since >= steady_s or time.monotonic() > deadline:
            return boxes
        time.sleep(0.25)


def test_the_image_comes_first_and_never_overlaps(shown_data, tmp_path):
    """At 1440x1000 the large view starts above the fold; from 1280 px wide, at every zoom, it
    stays left of the native-size pictures and inside the window (256-px slices, as kaggle_3m's:
    4x is 1024 px, wider than its column)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)")
    models, lgg = shown_data
    if not UPDATE:
        lgg = write_lgg(tmp_path / "lgg-256", {"TCGA_CS_4941_19960909": 3}, size=256).top
    patient, number = largest_tumour(lgg)
    link = {"patient": patient.name, "slice": number}
    with streamlit_server(models, lgg, tmp_path) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            open_case(page, server, link)
            big = main_pictures(page)[0]
            page.screenshot(path=str(tmp_path / "fold_1440x1000.png"))
            assert 0 < big["y"] < 1000 - 100, big  # its top (and some of it) above the fold
            page.set_viewport_size({"width": 1280, "height": 900})
            for zoom in (1, 2, 3, 4):
                open_case(page, server, {**link, "zoom": zoom})
                big, *native = main_pictures(page)
                page.screenshot(path=str(tmp_path / f"zoom{zoom}_1280.png"))
                assert big["right"] <= min(p["x"] for p in native) + 0.5, (zoom, big, native)
                assert max(p["right"] for p in (big, *native)) <= 1280, (zoom, big, native)
        finally:
            browser.close()
