"""How long a reviewer waits in the app, in a real browser (Chromium through Playwright).

For each round a fresh ``streamlit run`` server is started on the trained demo run, then:

- **cold start**: from launching the server to the first Slice Dice on the page (server start,
  imports, model load, predicting the opened patient);
- **new tab**: a second browser tab on the now warm server, to its first Slice Dice (the
  predictions are shared across sessions);
- **slice change**: the slice slider moved one step with the arrow key, to the new slice's
  scores on the page (the URL's ``slice`` updated and the page idle).

The run's cohort cache (``app_cache/`` in the run folder) is removed before every round unless
``--keep-cache``: the first visit then scores every test patient, as a first-ever visit does.
Prints the median and the range of each figure. Needs Chromium at /usr/bin/chromium.

    .venv/bin/python benchmarks/app_latency.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 300_000
DICE = '[data-testid="stMetric"]:has-text("Slice Dice") [data-testid="stMetricValue"]'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(models: Path, data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MEDSEG_MODELS_DIR": str(models), "MEDSEG_DATA_DIR": str(data),
           "MEDSEG_APP_FOLDER_PICKER": "0"}
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"),
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                sys.exit(f"streamlit exited: {log.read_text()}")
            time.sleep(0.1)
    sys.exit(f"streamlit not healthy after 60 s: {log.read_text()}")


def wait_idle(page: Page) -> None:
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=TIMEOUT_MS)


def first_dice(page: Page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    page.locator(DICE).wait_for(timeout=TIMEOUT_MS)
    wait_idle(page)


def slice_change(page: Page) -> float:
    """Seconds from an arrow key on the slice slider to the next slice's scores."""
    before = page.evaluate("new URLSearchParams(location.search).get('slice')")
    # the main area's first slider is the slice slider (react-aria: a hidden range input)
    thumb = page.locator('[data-testid="stMain"] [data-testid="stSlider"] input[type="range"]').first
    thumb.focus()
    start = time.perf_counter()
    thumb.press("ArrowLeft")
    page.wait_for_function(f"new URLSearchParams(location.search).get('slice') !== '{before}'",
                           timeout=TIMEOUT_MS)
    wait_idle(page)
    return time.perf_counter() - start


def one_round(models: Path, data: Path, keep_cache: bool, log: Path) -> dict[str, float]:
    if not keep_cache:
        for cache in models.rglob("app_cache"):
            shutil.rmtree(cache)
    launched = time.perf_counter()
    process, url = start_server(models, data, log)
    figures = {"server healthy": time.perf_counter() - launched}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            first_dice(page, url)
            figures["cold start to the first Dice"] = time.perf_counter() - launched
            second = browser.new_page(viewport={"width": 1440, "height": 1000})
            start = time.perf_counter()
            first_dice(second, url)
            figures["new tab on a warm server"] = time.perf_counter() - start
            figures["slice change"] = statistics.median(slice_change(page) for _ in range(3))
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="runs folder (default models/)")
    parser.add_argument("--data", type=Path, default=ROOT / "demo_data" / "lgg", help="LGG folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-cache", action="store_true", help="keep the runs' cohort caches")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(args.models.resolve(), args.data.resolve(), args.keep_cache,
                                    Path(tmp) / f"streamlit{number}.log"))
            print(f"round {number}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items()),
                  flush=True)
    print(f"\n{args.rounds} rounds, {os.cpu_count()} CPUs; median (min–max) in seconds")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print(f"{key:32s} {statistics.median(values):6.2f}  ({min(values):.2f}–{max(values):.2f})")


if __name__ == "__main__":
    main()
