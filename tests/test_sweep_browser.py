"""The sidecar's sweep page in a real headless Chromium: the same rows as SweepPanel."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _tools import require_tool
from playwright.sync_api import sync_playwright

import novelkit as nk
from novelkit._sweep import expand
from novelkit._sweep._record import SweepDefinition, write_json
from novelkit.server import ServerHandle, create_key, serve_in_thread

BASE = {"premise": "A keeper finds a letter.", "chapters": 1, "words_per_chapter": 100}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerHandle, str, list[str]]]:
    """A sweep's ROOT as a driving process leaves it: paused, one run done, one failed."""
    runs = expand({"temperature": [0.6, 0.9], "seed": [1, 2]}, BASE)
    definition = SweepDefinition(tmp_path.resolve(), BASE, runs)
    definition.check()
    definition.write()
    state = {"state": "paused", "message": "paused", "pid": os.getpid()}
    write_json(
        tmp_path / ".sweep" / "state.json",
        {**state, "host": socket.gethostname(), "updated": time.time()},
    )
    names = [run.name for run in runs]
    figures = {"progress": 1.0, "tokens": 5321, "cost": 0.0, "elapsed": 2.5, "message": ""}
    write_json(tmp_path / ".sweep" / "runs" / f"{names[0]}.json", {**figures, "state": "succeeded"})
    write_json(
        tmp_path / ".sweep" / "runs" / f"{names[1]}.json",
        {**figures, "state": "failed", "progress": 0.4, "error": "the model timed out"},
    )
    for name in (names[0], names[3]):  # two runs' projects exist; names[3] sorts last
        nk.new_project(tmp_path / name, premise=str(BASE["premise"]), chapters=1).close()
    key = create_key(tmp_path, "write")
    handle = serve_in_thread(tmp_path, port=0)
    try:
        yield handle, key, names
    finally:
        handle.stop()


@pytest.mark.browser
def test_sweep_page_shows_every_run_and_the_legal_buttons(
    served: tuple[ServerHandle, str, list[str]],
) -> None:
    chromium = require_tool("chromium")
    handle, key, names = served
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(handle.url.rstrip("/") + "/sweep")
            page.fill("#key-input", key)
            page.click("#key-submit")
            page.wait_for_selector("#sweep-runs tbody tr")
            rows = page.locator("#sweep-runs tbody tr")
            assert rows.count() == 4
            assert page.locator("#sweep-state").inner_text() == "paused"
            text = page.locator("#sweep-runs").inner_text()
            assert "failed: the model timed out" in text and "5,321" in text
            assert "temperature=0.9" in text
            assert rows.nth(0).inner_text().startswith(names[1])  # the failed run comes first
            assert page.locator("#sweep-resume").is_enabled()
            assert not page.locator("#sweep-pause").is_enabled()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "dashboard_sweep.png"), full_page=True)
            page.click(f"text={names[3]}")  # a run's link opens its project on the dashboard
            page.wait_for_selector(f"#projects button.active[data-project='{names[3]}']")
            assert errors == []
        finally:
            browser.close()
