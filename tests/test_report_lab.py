"""The scorecard's notebook display in a real JupyterLab: the quick start's report cell shows
its issues and every chart as an image the browser decoded. The screenshot goes to
artifacts/screenshots/jupyterlab_scorecard.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from test_browser_lab import SCREENSHOT, Lab, error_outputs, open_notebook, run_all_cells
from test_browser_lab import browser as browser  # noqa: F401  (the fixtures, reused)
from test_browser_lab import lab as lab  # noqa: F401
from test_browser_lab import page as page  # noqa: F401

from novelkit.report.charts import CHARTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RUN_ALL_MS = 120_000


def test_the_scorecard_renders_in_jupyterlab(page: Page, lab: Lab) -> None:  # noqa: F811
    open_notebook(page, lab, "01_quickstart.ipynb")
    run_all_cells(page)

    report = page.locator(".nk-report").first
    expect(report).to_be_visible(timeout=RUN_ALL_MS)
    expect(report).to_contain_text("placeholder prose")
    images = report.locator("figure img")
    expect(images).to_have_count(len(CHARTS))
    page.wait_for_function(
        "[...document.querySelectorAll('.nk-report figure img')]"
        ".every((img) => img.complete && img.naturalWidth > 100)"
    )
    assert error_outputs(page) == []
    report.evaluate("node => node.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOT.with_name("jupyterlab_scorecard.png")))
