"""The scorecard over the sidecar: JSON, the HTML page, each chart; documented in /openapi.json;
and shown on the dashboard in a real headless Chromium."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _local_client import LocalClient
from _scorecard import PLANTED, planted_project
from _tools import require_tool
from starlette.testclient import TestClient

from novelkit.report.charts import CHARTS
from novelkit.server import ServerHandle, create_app, create_key, serve_in_thread

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
R = "/api/v2/projects/planted/report"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    planted_project(tmp_path / "planted").close()
    headers = {"Authorization": f"Bearer {create_key(tmp_path, 'read')}"}
    with LocalClient(create_app(tmp_path, rate_limit=None)) as test_client:
        yield test_client, headers


def test_report_route_returns_the_scorecard(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client
    response = http.get(R, headers=headers)
    assert response.status_code == 200
    card = response.json()
    assert {issue["kind"] for issue in card["issues"]} == PLANTED
    assert card["stray_names"][0]["name"] == "Corwin"
    assert http.get(R).status_code == 401


def test_report_page_stands_alone_with_its_charts(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    http, headers = client
    response = http.get(f"{R}/html", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    images = re.findall(r"<img src='data:image/svg\+xml;base64,([^']+)'", response.text)
    assert len(images) == len(CHARTS)
    assert all(b"<svg" in base64.b64decode(image) for image in images)


def test_each_chart_is_served_as_svg(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client
    for name in CHARTS:
        response = http.get(f"{R}/charts/{name}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/svg+xml"
        assert b"<svg" in response.content
    wrong = http.get(f"{R}/charts/pie", headers=headers)
    assert (
        wrong.status_code == 422 and "charts: words, presence" in wrong.json()["error"]["message"]
    )


def test_openapi_documents_the_report_routes(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    paths = http.get("/openapi.json").json()["paths"]
    base = "/api/v2/projects/{id}/report"
    assert (
        "Scorecard"
        in paths[base]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert "text/html" in paths[f"{base}/html"]["get"]["responses"]["200"]["content"]
    chart = paths[f"{base}/charts/{{chart}}"]["get"]
    assert "image/svg+xml" in chart["responses"]["200"]["content"]
    assert {p["name"]: p for p in chart["parameters"]}["chart"]["schema"]["enum"] == list(CHARTS)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerHandle, str]]:
    planted_project(tmp_path / "planted").close()
    key = create_key(tmp_path, "read")
    handle = serve_in_thread(tmp_path, port=0)
    try:
        yield handle, key
    finally:
        handle.stop()


@pytest.mark.browser
def test_dashboard_shows_the_scorecard_and_its_charts(served: tuple[ServerHandle, str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = require_tool("chromium")
    handle, key = served
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(handle.url)
            page.fill("#key-input", key)
            page.click("#key-submit")
            page.wait_for_selector(f"#report-charts img[data-chart='{CHARTS[-1]}']", timeout=30_000)
            assert "5 issues" in page.locator("#report-summary").inner_text()
            assert (
                "stray-name: Corwin speaks or acts" in page.locator("#report-issues").inner_text()
            )
            page.wait_for_function(
                "[...document.querySelectorAll('#report-charts img')]"
                ".every((img) => img.complete && img.naturalWidth > 100)"
            )
            assert page.locator("#report-charts img").count() == len(CHARTS)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("#report").screenshot(path=str(SCREENSHOTS / "dashboard-scorecard.png"))
            assert errors == []
        finally:
            browser.close()
