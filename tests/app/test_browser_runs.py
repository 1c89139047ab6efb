"""The runs view in a real browser (as tests/app/test_browser.py): with three runs at 3x zoom
the panels wrap into rows, each at least the slice's size times the zoom, none over another."""

from __future__ import annotations

import shutil
from urllib.parse import urlencode

import pytest

from tests.app.page_driver import perturbed_copy
from tests.app.test_browser import (
    CHROMIUM,
    LAUNCH_ARGS,
    PAGE_READY_MS,
    largest_tumour,
    main_pictures,
    streamlit_server,
    wait_until_idle,
)
from tests.support import LGG_SIZE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUNS = ("run_a", "run_b", "run_c")
ZOOM = 3


def test_three_runs_at_3x_wrap_without_overlap_at_full_size(segmentation_run, tiny_lgg, tmp_path):
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)")
    models = tmp_path / "models"
    shutil.copytree(segmentation_run, models / RUNS[0], ignore=shutil.ignore_patterns("app_cache"))
    perturbed_copy(segmentation_run, models / RUNS[1], 0.5)
    perturbed_copy(segmentation_run, models / RUNS[2], 1.5)
    patient, number = largest_tumour(tiny_lgg)
    query = urlencode([("view", "Runs side by side"), *[("runs", run) for run in RUNS],
                       ("patient", patient.name), ("slice", number), ("zoom", ZOOM)])
    panels = 2 + len(RUNS) + 1  # the MRI, the reference, each run, where they disagree
    with streamlit_server(models, tiny_lgg, tmp_path) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1200})
            page.goto(f"{url}/?{query}", wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text("Where the runs disagree:").wait_for(timeout=PAGE_READY_MS)
            page.wait_for_function(
                f"""() => {{
                    const images = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')];
                    return images.length >= {panels} && images.every(i => i.complete && i.naturalWidth > 0);
                }}""",
                timeout=PAGE_READY_MS,
            )
            wait_until_idle(page)
            page.screenshot(path=str(tmp_path / "runs_3x.png"), full_page=True)
            boxes = main_pictures(page)
        finally:
            browser.close()
    assert len(boxes) == panels
    for box in boxes:  # each at the slice's size times the zoom, on the page
        assert box["right"] - box["x"] >= LGG_SIZE * ZOOM - 0.5, box
        assert box["right"] <= 1440, box
    for i, one in enumerate(boxes):
        for other in boxes[i + 1:]:
            apart = (one["right"] <= other["x"] + 0.5 or other["right"] <= one["x"] + 0.5
                     or one["bottom"] <= other["y"] + 0.5 or other["bottom"] <= one["y"] + 0.5)
            assert apart, (one, other)
    assert len({round(box["y"]) for box in boxes}) >= 2  # six 192-px panels wrap into two rows
