"""End to end in headless Chromium: ``numcnn explore`` as a real server, a digit drawn with mouse
events, the prediction, a chosen target, rendered δ maps, the SGD step and the hover view.

Uses Debian's ``/usr/bin/chromium`` through Playwright for Python; never a downloaded browser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
STARTUP_SECONDS = 180  # importing FastAPI and numcnn on a loaded 2-core machine takes a while
# A "3" as strokes on the 280×280 pad: top arc, middle, bottom arc.
THREE = [(90, 70), (140, 52), (186, 74), (182, 116), (136, 140), (186, 166), (192, 210), (142, 236), (84, 216)]
# A "1": one vertical stroke.
ONE = [(140, 50), (140, 235)]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """``numcnn explore --port 0`` (a free loopback port) started as a subprocess; its URL from its line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "numcnn", "explore", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "http://" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(STARTUP_SECONDS):
            pytest.fail(f"numcnn explore printed no listening line in {STARTUP_SECONDS} s: {''.join(lines)!r}")
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", "".join(lines))
        assert match, lines
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert len(lines) == 1, f"the server wrote more than its one line: {lines}"


@pytest.fixture(scope="module")
def page(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package; .ci/run installs it as root)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data dir
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        errors: list[str] = []
        browser_page = context.new_page()
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        browser_page.goto(server_url)
        browser_page.wait_for_selector("#samples canvas")
        yield browser_page
        context.close()
    assert not errors, errors


def draw(page, strokes: list[tuple[int, int]]) -> None:
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"], box["y"]
    traces = page.evaluate("window.explorer.traces")
    page.mouse.move(x0 + strokes[0][0], y0 + strokes[0][1])
    page.mouse.down()
    for x, y in strokes[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=10)
    page.mouse.up()
    # Traces arrive while drawing; wait until the last one (after pointer-up) is in.
    page.wait_for_function(
        "t => window.explorer.traces > t && !window.explorer.inFlight && !window.explorer.pending", arg=traces
    )


BLANK_COUNT = """sel => Array.from(document.querySelectorAll(sel)).map(canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 4; i < data.length; i += 4)
    if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) return false;
  return true;
})"""


def test_drawn_three_is_recognised_and_the_backward_pass_is_drawn(page, tmp_path: Path) -> None:
    draw(page, THREE)
    assert page.inner_text("#prediction") == "3"
    assert page.evaluate("window.explorer.trace.prediction") == 3

    page.click('.prob[data-class="8"]')
    page.wait_for_function("window.explorer.trace && window.explorer.trace.target === 8")
    assert page.inner_text("#output-card .target-digit") == "8"
    layers = page.evaluate("window.explorer.trace.layers.length")
    for index in range(layers):
        blank = page.evaluate(BLANK_COUNT, f".layer:nth-child({index + 1}) canvas.delta-map")
        assert blank and not all(blank), f"layer {index}: every δ map is blank"
    assert page.evaluate(BLANK_COUNT, "#saliency") == [False]
    kernel_grads = page.evaluate(BLANK_COUNT, "#layers canvas.grad-map")
    assert len(kernel_grads) == 2 and not any(kernel_grads)  # LeNet-5's two convolutions

    page.click("#step")
    page.wait_for_function("document.getElementById('step-result').textContent.includes('→')")
    losses = [float(x) for x in re.findall(r"loss ([0-9.]+) → ([0-9.]+)", page.inner_text("#step-result"))[0]]
    assert losses[1] < losses[0]
    assert len(page.evaluate(BLANK_COUNT, "#step-kernels canvas")) == 3

    # Hover one unit of the second pooled layer: its 2×2 window below and a receptive field on the input.
    pooled = page.evaluate("window.explorer.trace.layers.map(layer => layer.kind).lastIndexOf('MaxPool2d')")
    page.hover(f'.unit[data-layer="{pooled}"][data-channel="0"]')
    assert page.locator(".hl:not(.self)").count() >= 1
    field = page.get_attribute("#input", "data-field")
    assert field and len(field.split(",")) == 4

    screenshot = tmp_path / "explorer.png"
    page.mouse.move(5, 5)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get("NUMCNN_SCREENSHOT")
    if keep:  # how docs/images/explorer.png is made
        shutil.copy(screenshot, keep)


def test_drawn_one_and_a_picked_sample(page) -> None:
    draw(page, ONE)
    assert page.evaluate("window.explorer.trace.prediction") == 1
    traces = page.evaluate("window.explorer.traces")
    page.click('#samples canvas[data-label="7"]')
    page.wait_for_function("t => window.explorer.traces > t", arg=traces)
    assert page.inner_text("#prediction") == "7"
