"""The dashboard in a real headless Chromium: key once, live stages, Pause → paused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _tools import require_tool
from playwright.sync_api import sync_playwright

import novelkit as nk
from novelkit.server import ServerHandle, create_key, serve_in_thread

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerHandle, str, str]]:
    nk.new_project(
        tmp_path / "lighthouse",
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend_options={"tokens_per_second": 600, "latency": 0.01},
    ).close()
    write = create_key(tmp_path, "write")
    read = create_key(tmp_path, "read")
    handle = serve_in_thread(tmp_path, port=0)
    try:
        yield handle, write, read
    finally:
        handle.stop()


@pytest.mark.browser
def test_dashboard_follows_a_job_and_pauses(served: tuple[ServerHandle, str, str]) -> None:
    chromium = require_tool("chromium")
    handle, write, read = served
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(handle.url)
            page.fill("#key-input", write)
            page.click("#key-submit")
            page.wait_for_selector("#stages tr[data-stage='assemble']")
            assert "key=" not in page.url and write not in page.url
            assert page.evaluate("sessionStorage.getItem('novelkit.key')") == write
            rows = page.locator("#stages tbody tr")
            assert rows.count() == 12
            backend = page.locator("#backend")  # an offline book is flagged as placeholder prose
            assert (
                backend.inner_text()
                == "backend: offline — placeholder prose, not written by a model"
            )
            assert "placeholder" in (backend.get_attribute("class") or "").split()
            page.wait_for_selector("#connection:has-text('live')")
            page.click("#btn-start")
            page.wait_for_selector("#stages tr[data-stage='premise'].succeeded", timeout=20_000)
            page.wait_for_selector("#stages tr[data-stage='world'].succeeded", timeout=20_000)
            page.wait_for_function("document.getElementById('preview').textContent.length > 20")
            assert page.locator("#job-state").inner_text() == "running"
            page.click("#btn-pause")
            # the answer's new state next to the one the page showed when Pause was pressed
            page.wait_for_selector("#control-result:has-text('running → pausing')")
            page.wait_for_selector("#job-state:has-text('paused')", timeout=20_000)
            assert page.locator("#btn-resume").is_enabled()
            tokens = int(page.locator("#tokens").inner_text().replace(",", ""))
            assert tokens > 0
            # a stopped job: no stage row running, each bar as full as its count says
            page.wait_for_function("!document.querySelector('#stages tr.running')")
            for row in page.locator("#stages tbody tr").all():
                done, total = map(int, row.locator(".stage-units").inner_text().split("/"))
                width = row.locator(".stage-bar .bar > div").evaluate("e => e.style.width")
                assert width == f"{int(100 * done / total + 0.5) if total else 0}%", width
            # the buttons follow the job's own table of actions
            assert page.locator("#btn-pause").is_disabled()
            assert page.locator("#btn-cancel").is_enabled()
            # the preview is one unit's text, labelled with it
            assert page.locator("#preview-label").inner_text().startswith("(")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

            # a read key sees the same page without the controls
            page.click("#forget-key")
            # forgetting the key takes away the project and its controls, not only the key
            assert page.locator("#key-input").is_visible()
            assert not page.locator("#main").is_visible()
            assert not page.locator("#btn-pause").is_visible()
            assert page.locator("#stages tbody tr").count() == 0
            assert page.evaluate("sessionStorage.getItem('novelkit.key')") is None
            page.fill("#key-input", read)
            page.click("#key-submit")
            page.wait_for_selector("#stages tr[data-stage='assemble']")
            assert not page.locator("#btn-pause").is_visible()
            assert not page.locator("#btn-run-stage").is_visible()
            assert errors == []
        finally:
            browser.close()
