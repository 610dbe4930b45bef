"""A real JupyterLab in a real browser: the quick start runs top to bottom, its live panel
renders and its stages reach succeeded, and the panel's Pause button pauses a running job.

JupyterLab listens on 127.0.0.1 with a random token; Debian's Chromium is driven headless by
Playwright (never ``playwright install``); the browser may fetch nothing but that server. The
screenshot goes to artifacts/screenshots/jupyterlab_panel.png.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _tools import STAGE_NAMES, require_tool
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SCREENSHOT = REPO / "artifacts" / "screenshots" / "jupyterlab_panel.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_SECONDS = 60
RUN_ALL_MS = 120_000
PAUSE_DEMO = """\
import novelkit as nk

project = nk.new_project(
    "pause-demo",
    premise="A lighthouse keeper finds a letter from her drowned brother, dated after his death.",
    chapters=6,
    words_per_chapter=1500,
    backend_options={"tokens_per_second": 300, "latency": 0.05},  # slow: minutes, not seconds
)
job = project.start()
job"""


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    blocked: list[str] = field(default_factory=list)

    def page_url(self, notebook: str) -> str:
        """The notebook alone in a fresh workspace of its own (``reset``: nothing restored)."""
        return f"{self.url}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?reset&token={self.token}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def api(lab_url: str, token: str, path: str, method: str = "GET") -> Any:
    """Call the server's REST API; returns the decoded JSON body (None when empty)."""
    request = urllib.request.Request(
        f"{lab_url}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
        return json.loads(body) if body else None


def wait_for_kernel(page: Page, lab: Lab, notebook: str, timeout: float = 60.0) -> None:
    """Until the notebook's kernel is idle with the page connected to it: running cells any
    earlier can leave them unexecuted or bring up JupyterLab's kernel picker. It waits with
    ``page.wait_for_timeout`` because Playwright serves the page's routed requests only then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for session in api(lab.url, lab.token, "/api/sessions"):
            kernel = session.get("kernel") or {}
            # JupyterLab 4 keys a session by a document id in "path"; "name" is the file
            if (
                notebook in (session.get("name"), session.get("path"))
                and kernel.get("connections", 0) >= 1
                and kernel.get("execution_state") == "idle"
            ):
                return
        page.wait_for_timeout(200)
    pytest.fail(
        f"the kernel of {notebook} did not connect in {timeout:.0f} s; sessions: "
        f"{api(lab.url, lab.token, '/api/sessions')}"
    )


def stop_server(process: subprocess.Popen[bytes], lab: Lab) -> None:
    """Ask the server to shut down (it stops its kernels), then make sure it is gone."""
    if process.poll() is None:
        try:
            api(lab.url, lab.token, "/api/shutdown", method="POST")
            process.wait(timeout=20)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 serving a copy of notebooks/ (plus a pause demo), stopped at the end."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    demo = new_notebook(cells=[new_code_cell(PAUSE_DEMO)])
    demo.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(demo, str(root / "pause_demo.ipynb"))
    port, token = free_port(), secrets.token_hex(24)
    env = {
        **os.environ,
        # a private Jupyter config, data and runtime: no user settings, no workspace restored
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    settings = {  # no news prompt; every cell rendered (not windowed), so screenshots show them
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "notebook-extension/tracker": {"windowingMode": "none"},
    }
    for name, values in settings.items():
        path = base / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    log_path = base / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--IdentityProvider.token={token}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited ({process.returncode}):\n{log_path.read_text()[-3000:]}"
                )
            try:
                api(lab.url, token, "/api/status")
                break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"JupyterLab did not start in {SERVER_START_SECONDS} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.25)
        yield lab
    finally:
        stop_server(process, lab)


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Browser]:
    chromium = require_tool("chromium")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, lab: Lab) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})

    def only_local(route: Route) -> None:
        if route.request.url.startswith(lab.url + "/"):
            route.continue_()
        else:
            lab.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


def open_notebook(page: Page, lab: Lab, name: str) -> None:
    page.goto(lab.page_url(name))
    expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible()
    wait_for_kernel(page, lab, name)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible()


def run_all_cells(page: Page) -> None:
    """Run → Run All Cells, from the menu bar, as a person would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def error_outputs(page: Page) -> list[str]:
    texts = page.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    ).all_inner_texts()
    return [t for t in texts if "Error" in t or "Traceback" in t]


def test_quickstart_runs_in_jupyterlab(page: Page, lab: Lab) -> None:
    open_notebook(page, lab, "01_quickstart.ipynb")
    run_all_cells(page)

    panel = page.locator(".nk-panel").first
    expect(panel).to_be_visible(timeout=RUN_ALL_MS)
    stages = panel.locator("tr.nk-stage")
    expect(stages).to_have_count(12)
    expect(panel.locator("tr.nk-stage.nk-succeeded")).to_have_count(12, timeout=RUN_ALL_MS)
    expect(panel.locator(".nk-job-state")).to_have_attribute("data-state", "succeeded")
    # the last cells ran too: the exports are listed, and the kernel went back to idle
    expect(page.get_by_text(re.compile(r"pdf\s+exports/novel\.pdf"))).to_be_visible(
        timeout=RUN_ALL_MS
    )
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(
        timeout=RUN_ALL_MS
    )

    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    assert error_outputs(page) == []
    assert [row.get_attribute("data-stage") for row in stages.all()] == STAGE_NAMES

    panel.evaluate("node => node.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)  # let the scroll settle before the picture
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    assert lab.blocked == [], (
        f"the page tried to reach beyond 127.0.0.1: {json.dumps(lab.blocked[:5])}"
    )


def test_pause_button_pauses_a_running_job(page: Page, lab: Lab) -> None:
    open_notebook(page, lab, "pause_demo.ipynb")
    run_all_cells(page)

    panel_output = page.locator(".jp-OutputArea-output").filter(has=page.locator(".nk-panel"))
    state = panel_output.locator(".nk-job-state")
    expect(state).to_have_attribute("data-state", "running", timeout=60_000)
    expect(panel_output.locator("tr.nk-stage.nk-succeeded").first).to_be_visible(timeout=60_000)
    # a button's accessible name starts with its icon's glyph: match the end
    pause = panel_output.get_by_role("button", name=re.compile(r"\bPause$"))
    expect(pause).to_be_enabled()
    pause.click()

    expect(state).to_have_attribute("data-state", "paused", timeout=30_000)
    expect(panel_output.get_by_role("button", name=re.compile(r"\bResume$"))).to_be_enabled()
    expect(pause).to_be_disabled()
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    assert error_outputs(page) == []


@pytest.mark.parametrize(
    ("notebook", "widget"),
    [("02_stage_by_stage.ipynb", ".nk-prose-diff .nk-ins"), ("04_control.ipynb", ".nk-panel")],
)
def test_notebook_widgets_render_in_jupyterlab(
    page: Page, lab: Lab, notebook: str, widget: str
) -> None:
    open_notebook(page, lab, notebook)
    run_all_cells(page)

    not_done = page.locator(".jp-CodeCell .jp-InputPrompt", has_text=re.compile(r"\[[ *]\]"))
    expect(not_done).to_have_count(0, timeout=RUN_ALL_MS)
    expect(page.locator(widget).first).to_be_visible()
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    assert error_outputs(page) == []
    if notebook.startswith("04"):
        # every panel of a job that has ended shows it ended: no stage still running
        finals = ("succeeded", "failed", "cancelled", "paused", "interrupted")
        panels = page.locator(".nk-panel")
        ended = 0
        for index in range(panels.count()):
            panel = panels.nth(index)
            if panel.locator(".nk-job-state").get_attribute("data-state") not in finals:
                continue
            ended += 1
            assert panel.locator("tr.nk-stage.nk-running").count() == 0, panel.inner_text()
        assert ended >= 1
    if notebook.startswith("02"):
        page.locator(".nk-prose-diff").first.evaluate(
            "node => node.scrollIntoView({block: 'center'})"
        )
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOT.with_name("jupyterlab_variants.png")))
