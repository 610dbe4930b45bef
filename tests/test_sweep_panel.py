"""SweepPanel without a browser or a cluster: a sweep's files under ROOT stand in for a driving
process, and the widgets talk to a recording comm so every update message is counted."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipywidgets")

import comm  # noqa: E402
from _tools import RecordingComm  # noqa: E402

import novelkit as nk  # noqa: E402
from novelkit._sweep import expand  # noqa: E402
from novelkit._sweep._record import SweepDefinition, write_json  # noqa: E402
from novelkit.widgets.panel import JobPanel  # noqa: E402
from novelkit.widgets.sweep import SweepPanel  # noqa: E402

BASE = {"premise": "A keeper finds a letter.", "chapters": 1, "words_per_chapter": 100}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str, dict[str, Any]]]:
    log: list[tuple[float, str, dict[str, Any]]] = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(log))
    return log


def make_sweep(root: Path, n: int, state: str = "running") -> list[str]:
    runs = expand({"seed": list(range(n))}, BASE)
    definition = SweepDefinition(root.resolve(), BASE, runs)
    definition.check()
    definition.write()
    write_json(
        root / ".sweep" / "state.json",
        {
            "state": state,
            "message": "",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "updated": time.time(),
        },
    )
    return [run.name for run in runs]


def run_record(name: str, state: str, progress: float, tokens: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "progress": progress,
        "tokens": tokens,
        "cost": 0.0,
        "elapsed": 1.0,
        "message": "",
        "error": None,
        "worker": "w",
    }


def updates(sent: list[tuple[float, str, dict[str, Any]]]) -> list[float]:
    """Times of the messages that changed a widget's state (what the frontend redraws)."""
    return [t for t, _, data in sent if data.get("method") == "update"]


@pytest.fixture
def panels() -> Iterator[list[SweepPanel]]:
    made: list[SweepPanel] = []
    yield made
    for panel in made:
        panel.close()


def test_thousand_runs_changing_all_the_time_stay_within_ten_updates_a_second(
    tmp_path: Path, sent: list[Any], panels: list[SweepPanel]
) -> None:
    names = make_sweep(tmp_path, 1000)
    folder = tmp_path / ".sweep" / "runs"
    stop = threading.Event()

    def churn() -> None:  # every run's figures change many times a second
        rng = random.Random(1)
        while not stop.is_set():
            for name in rng.sample(names, 50):
                write_json(folder / f"{name}.json", run_record(name, "running", rng.random(), 5))

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        panel = SweepPanel(tmp_path)
        panels.append(panel)
        sent.clear()
        panel.start()
        deadline = time.monotonic() + 30
        while len(updates(sent)) < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # and a second more of changes
    finally:
        stop.set()
        writer.join()
    times = updates(sent)
    assert len(times) >= 8  # it kept following the changes
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 10
    view = panel.view.value
    assert "1000 runs" in view and "… 900 more runs" in view
    assert view.count("<tr>") == 101  # the header and the 100 busiest rows


def test_rows_show_state_and_figures_and_buttons_follow_the_sweep_state(
    tmp_path: Path, sent: list[Any], panels: list[SweepPanel]
) -> None:
    names = make_sweep(tmp_path, 3, state="paused")
    folder = tmp_path / ".sweep" / "runs"
    write_json(folder / f"{names[0]}.json", run_record(names[0], "succeeded", 1.0, 1234))
    write_json(
        folder / f"{names[1]}.json", {**run_record(names[1], "failed", 0.5), "error": "boom"}
    )
    panel = SweepPanel(tmp_path)
    panels.append(panel)
    view = panel.view.value
    assert "paused" in view and "1,234" in view and "boom" in view and "pending" in view
    assert view.index("failed") < view.index("succeeded")  # the busiest rows come first
    disabled = {name: b.disabled for name, b in panel.buttons.items()}
    assert disabled == {"pause": True, "resume": False, "cancel": False}


def test_open_run_shows_that_run_s_own_job_panel(
    tmp_path: Path, sent: list[Any], panels: list[SweepPanel]
) -> None:
    names = make_sweep(tmp_path, 2, state="succeeded")
    nk.new_project(tmp_path / names[1], premise=str(BASE["premise"]), chapters=1).close()
    panel = SweepPanel(tmp_path)
    panels.append(panel)
    assert list(panel.run_picker.options) == names
    shown = panel.open_run(names[1])
    assert shown is not None and panel.detail.children == (shown,)
    assert isinstance(shown, JobPanel) and shown.job is None  # that project has no job yet
    assert panel.open_run(names[0]) is None  # not created yet: a notice, not a traceback
    deadline = time.monotonic() + 10
    while "is not a folder" not in panel.notice.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert names[0] in panel.notice.value and "is not a folder" in panel.notice.value
