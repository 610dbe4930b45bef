"""The notebook panel without a browser: widgets talk to a recording comm (as ipywidgets' own
tests do with their DummyComm), so every update message the frontend would get is counted."""

from __future__ import annotations

import html
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest

pytest.importorskip("ipywidgets")

import comm  # noqa: E402
from _tools import RecordingComm  # noqa: E402

import novelkit as nk  # noqa: E402
from novelkit import widgets  # noqa: E402
from novelkit._job import Job  # noqa: E402
from novelkit.widgets import JobPanel, compare_variants, mimebundle  # noqa: E402
from novelkit.widgets.panel import legal_actions  # noqa: E402
from novelkit.widgets.variants import VariantView, field_diff, word_diff  # noqa: E402

S = nk.JobState
BUTTONS = ("pause", "pause_now", "resume", "cancel", "run")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str, dict[str, Any]]]:
    log: list[tuple[float, str, dict[str, Any]]] = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(log))
    return log


@pytest.fixture
def panels(sent: list[Any]) -> Iterator[Callable[..., JobPanel]]:
    """``panels(job_or_project)`` → a started JobPanel, closed before its project is."""
    made: list[JobPanel] = []

    def make(target: Any, **options: Any) -> JobPanel:
        panel = JobPanel(target, **options).start()
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.close()


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the panel")
        time.sleep(0.02)


def shown_state(panel: JobPanel) -> str | None:
    match = re.search(r'class="nk-job-state" data-state="([^"]+)"', panel.view.value)
    return match.group(1) if match else None


def enabled(panel: JobPanel) -> set[str]:
    return {name for name in BUTTONS if not panel.buttons[name].disabled}


def stage_rows(panel: JobPanel) -> dict[str, str]:
    """Stage name → the state its row shows."""
    rows = re.findall(r'class="nk-stage nk-(\w+)" data-stage="(\w+)"', panel.view.value)
    return {stage: state for state, stage in rows}


def preview_of(value: str) -> str:
    match = re.search(r'<pre class="nk-preview"[^>]*>(.*?)</pre>', value, re.S)
    return html.unescape(match.group(1)) if match else ""


@pytest.mark.parametrize("state", [*S, None], ids=lambda s: str(s))
def test_run_is_offered_only_when_no_job_is_active(state: nk.JobState | None) -> None:
    """The control buttons follow the job's table (tests/test_job.py checks them against the
    Job); "run" needs a project with no active job."""
    assert ("run" in legal_actions(state)) == (state is None or not state.active)
    assert "run" not in legal_actions(state, project_busy=True)


# -- the panel follows the job through its states ----------------------------------------------


def test_queued_job_shows_queued_and_its_buttons_call_the_job(
    project: nk.Project, panels: Callable[..., JobPanel], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.writer.lock.acquire()  # as start() does: the writer lock first, then the job row
    job = Job.create(project, {"kind": "all"})  # recorded, not launched: stays queued
    panel = panels(job)
    assert shown_state(panel) == "queued"
    assert enabled(panel) == {"pause", "pause_now", "cancel"}

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake(name: str) -> Callable[..., nk.ControlResult]:
        def call(**kwargs: Any) -> nk.ControlResult:
            calls.append((name, kwargs))
            return nk.ControlResult(True, S.QUEUED, f"{name} called")

        return call

    for name in ("pause", "resume", "cancel"):
        monkeypatch.setattr(job, name, fake(name))
    for button in ("pause", "pause_now", "resume", "cancel"):
        panel.buttons[button].click()
    assert calls == [("pause", {}), ("pause", {"now": True}), ("resume", {}), ("cancel", {})]
    wait_until(lambda: "cancel called" in panel.notice.value)


def test_a_refused_action_is_shown_in_the_panel_not_raised(
    project: nk.Project, panels: Callable[..., JobPanel], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.writer.lock.acquire()  # as start() does: the writer lock first, then the job row
    job = Job.create(project, {"kind": "all"})
    panel = panels(job)

    def refuse(**kwargs: Any) -> nk.ControlResult:
        raise nk.JobStateError(
            "cannot resume a job that is queued", state=S.QUEUED, action="resume"
        )

    monkeypatch.setattr(job, "resume", refuse)
    panel.buttons["resume"].click()  # does not raise
    wait_until(lambda: "cannot resume a job that is queued" in panel.notice.value)


def test_running_paused_resumed_cancelled(
    slow_project: nk.Project, panels: Callable[..., JobPanel]
) -> None:
    job = slow_project.start()
    panel = panels(job)
    wait_until(lambda: shown_state(panel) == "running" and "nk-preview" in panel.view.value)
    assert enabled(panel) == {"pause", "pause_now", "cancel"}
    assert "running" in stage_rows(panel).values()

    panel.buttons["pause"].click()
    wait_until(lambda: shown_state(panel) == "paused")
    assert job.state is S.PAUSED
    assert enabled(panel) == {"resume", "cancel", "run"}

    panel.buttons["resume"].click()
    wait_until(lambda: shown_state(panel) == "running")
    assert job.state.active

    panel.buttons["pause_now"].click()
    wait_until(lambda: shown_state(panel) == "paused")
    panel.buttons["cancel"].click()
    wait_until(lambda: shown_state(panel) == "cancelled")
    assert job.status().state is S.CANCELLED
    assert enabled(panel) == {"run"}
    wait_until(lambda: not panel.running)  # a finished job's panel stops its renderer
    assert "running" not in stage_rows(panel).values(), "a cancelled job shows no stage running"
    assert "▶" not in panel.view.value and "✎ writing" not in panel.view.value


def test_succeeded_shows_every_stage_succeeded_and_stops_refreshing(
    project: nk.Project, panels: Callable[..., JobPanel]
) -> None:
    job = project.start()
    panel = panels(job)
    job.wait()
    wait_until(lambda: not panel.running)
    assert shown_state(panel) == "succeeded"
    rows = stage_rows(panel)
    assert len(rows) == 12 and set(rows.values()) == {"succeeded"}
    messages = panel.stats.messages
    time.sleep(0.3)
    assert panel.stats.messages == messages  # nothing more is sent once the end is on screen


class BrokenBackend:
    """Streams like the offline backend until stage 2, then fails like a wrong API key."""

    name = "broken"

    def __init__(self) -> None:
        from novelkit.llm.offline import OfflineBackend

        self._inner = OfflineBackend()

    async def stream(self, request: Any) -> Any:
        if request.stage == "world":
            raise nk.BackendConfigError("401 Unauthorized: invalid API key for the backend")
        async for chunk in self._inner.stream(request):
            yield chunk

    async def aclose(self) -> None:
        return None


def test_failed_job_shows_the_error_and_an_explanation(
    make_project: Callable[..., nk.Project], panels: Callable[..., JobPanel]
) -> None:
    project = make_project(backend_instance=BrokenBackend())
    job = project.start()
    panel = panels(job)
    assert job.wait(30) is S.FAILED
    wait_until(lambda: shown_state(panel) == "failed")
    assert "invalid API key" in panel.view.value
    assert "Fix them in novel.toml" in panel.view.value  # the explanation
    assert stage_rows(panel)["world"] == "failed"
    assert enabled(panel) == {"resume", "run"}


def test_interrupted_after_reopen_and_resumed_from_the_panel(
    slow_project: nk.Project, panels: Callable[..., JobPanel]
) -> None:
    root = slow_project.root
    job = slow_project.start()
    time.sleep(0.3)
    job.pause(now=True)
    job.wait()
    slow_project.close()
    # what a killed kernel leaves behind: the job recorded as running, its process gone
    with closing(sqlite3.connect(root / ".novelkit" / "state.db")) as db, db:
        db.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))
    reopened = nk.open_project(root)
    try:
        panel = panels(reopened)
        assert shown_state(panel) == "interrupted"
        assert enabled(panel) == {"resume", "cancel", "run"}
        panel.buttons["resume"].click()
        assert panel.job is not None and panel.job.wait(60) is S.SUCCEEDED
        wait_until(lambda: shown_state(panel) == "succeeded")
        panel.close()
    finally:
        reopened.close()


def test_run_stage_from_the_panel_follows_the_new_job_and_stale_stages_show(
    project: nk.Project, panels: Callable[..., JobPanel]
) -> None:
    project.start().wait()
    panel = panels(project)
    wait_until(lambda: shown_state(panel) == "succeeded")
    assert panel.chapter_picker.disabled  # stage 1 has a single unit

    panel.stage_picker.value = "draft"
    wait_until(lambda: not panel.chapter_picker.disabled)
    panel.chapter_picker.value = (2,)
    panel.force.value = True
    first = panel.job
    panel.buttons["run"].click()
    assert panel.job is not first and panel.job is not None
    assert panel.job.spec["chapters"] == [2] and panel.job.spec["force"] is True
    panel.job.wait()
    wait_until(lambda: "running stage draft chapters 2" in panel.notice.value)
    # re-running a chapter of the draft makes everything after it stale
    wait_until(lambda: stage_rows(panel).get("continuity") == "stale")
    assert stage_rows(panel)["chapters"] == "succeeded"

    panel.stage_picker.value = "premise"
    wait_until(lambda: panel.chapter_picker.disabled)  # single-unit stages take no chapters


def test_run_stage_refused_is_explained(
    project: nk.Project, panels: Callable[..., JobPanel]
) -> None:
    panel = panels(project)
    assert shown_state(panel) == "no job"
    panel.stage_picker.value = "draft"
    panel.buttons["run"].click()  # its inputs do not exist yet
    wait_until(lambda: "has not run yet" in panel.notice.value)
    assert panel.job is None


# -- light updates -------------------------------------------------------------------------------


def test_5000_tokens_per_second_sends_at_most_10_messages_a_second_and_the_final_text(
    make_project: Callable[..., nk.Project], panels: Callable[..., JobPanel], sent: list[Any]
) -> None:
    project = make_project(
        words_per_chapter=1200, backend_options={"tokens_per_second": 5000, "latency": 0.01}
    )
    streamed: list[tuple[str, str, str]] = []
    with project.subscribe(
        lambda e: (
            streamed.append((e.data["stage"], e.data["unit"], e.data["text"]))
            if e.type == "delta"
            else None
        )
    ):
        job = project.start()
        panel = panels(job)
        view_id = panel.view.model_id
        begin = len(sent)
        started = time.monotonic()
        assert job.wait(60) is S.SUCCEEDED
        wait_until(lambda: not panel.running)
        duration = time.monotonic() - started
        time.sleep(0.1)  # let the subscription deliver the last deltas
    updates = [(t, d) for t, _, d in sent[begin:] if d.get("method") == "update"]
    times = [t for t, _ in updates]
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert duration > 2.0  # long enough to mean something
    assert busiest <= 10, f"{busiest} messages in one second"
    assert len(updates) / duration <= 10.5
    assert len(updates) / duration >= 4  # and it is live, not silent
    last_unit = streamed[-1][:2]  # the preview ends on the last unit that streamed, whole
    text = "".join(t for stage, unit, t in streamed if (stage, unit) == last_unit)
    last_view = [d for t, cid, d in sent if cid == view_id and "value" in d.get("state", {})][-1]
    preview = preview_of(last_view["state"]["value"])
    assert preview == text[-2000:] and len(preview) == min(2000, len(text))


# -- the text fallback ---------------------------------------------------------------------------


def test_text_plain_is_always_the_status_table(
    project: nk.Project, sent: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOVELKIT_PROGRESS", raising=False)
    bundle = project._repr_mimebundle_()
    assert bundle == {"text/plain": project.status().table()}  # no kernel: text only

    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    bundle = mimebundle(project)
    assert bundle["text/plain"] == project.status().table()
    assert widgets.WIDGET_VIEW in bundle

    monkeypatch.setenv("NOVELKIT_PROGRESS", "text")
    assert mimebundle(project) == {"text/plain": project.status().table()}
    monkeypatch.setenv("NOVELKIT_PROGRESS", "off")
    (line,) = mimebundle(project).values()
    assert "\n" not in line and "no job" in line
    monkeypatch.setenv("NOVELKIT_PROGRESS", "loud")
    assert "is not one of widget, text, off" in mimebundle(project)["text/plain"]
    for panel in _open_panels():
        panel.close()


def _open_panels() -> list[JobPanel]:
    from ipywidgets.widgets.widget import _instances

    return [w for w in list(_instances.values()) if isinstance(w, JobPanel)]


def test_import_novelkit_does_not_import_ipywidgets() -> None:
    code = (
        "import sys, novelkit, novelkit.widgets; "
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_ipywidgets_says_how_to_install_and_text_still_works(tmp_path: Any) -> None:
    code = f"""
import sys
sys.modules["ipywidgets"] = None  # as if not installed
import novelkit as nk
from novelkit.widgets import mimebundle
p = nk.new_project({str(tmp_path / "n")!r}, premise="A letter arrives.")
assert list(mimebundle(p)) == ["text/plain"]
try:
    from novelkit.widgets import JobPanel
except ImportError as exc:
    assert "pip install 'novelkit[widgets]'" in str(exc), exc
    assert exc.__cause__ is None
else:
    raise SystemExit("no ImportError")
p.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True)


# -- variants ------------------------------------------------------------------------------------


def test_word_diff_marks_changes_and_escapes() -> None:
    old, new, ratio = word_diff("The <b>sea</b> was grey.", "The <b>sea</b> was green.")
    assert "&lt;b&gt;sea" in old and "<b>" not in old
    assert '<del class="nk-del"' in old and "grey." in old
    assert '<ins class="nk-ins"' in new and "green." in new
    assert 0.5 < ratio < 1


def test_field_diff_lists_only_changed_fields() -> None:
    a = {"title": "Salt", "cast": [{"name": "Ann", "age": 30}], "tags": ["x"]}
    b = {"title": "Salt", "cast": [{"name": "Ann", "age": 31}], "extra": 1}
    assert [k for k, _, _ in field_diff(a, b)] == ["cast[0].age", "tags[0]", "extra"]


def test_compare_prose_variants_and_choose_one(project: nk.Project, sent: list[Any]) -> None:
    project.start().wait()
    assert (
        project.run_stage("draft", chapters=[1], variant="warm", temperature=1.1).wait()
        is S.SUCCEEDED
    )
    view = compare_variants(project, "draft", "", "warm", chapter=1)
    body = view.children[1].value
    assert "nk-prose-diff" in body
    choose_a, choose_b = view.children[2].children
    assert choose_a.disabled  # "" is already the active artefact
    choose_b.click()
    assert (
        project.read_variant("draft", "", 1).text == project.read_variant("draft", "warm", 1).text
    )
    assert "now uses variant" in view.children[3].value
    assert project.stage_states()["continuity"][0] is nk.StageState.STALE
    view.close()


def test_compare_json_variants_field_by_field(project: nk.Project, sent: list[Any]) -> None:
    project.start().wait()
    project.run_stage("premise", variant="other", seed=99).wait()
    view = compare_variants(project, "premise", "", "other")
    assert "nk-field-diff" in view.children[1].value
    assert "fields differ" in view.children[0].value or "identical" in view.children[0].value
    with pytest.raises(nk.PipelineError, match="chapter=N"):
        compare_variants(project, "draft", "", "other")

    listing = VariantView(project, "premise")
    assert "other" in listing.children[0].value
    listing._b.value = "other"
    listing.compare()
    assert (
        listing._result.children
        and "nk-field-diff" in listing._result.children[0].children[1].value
    )
    listing.close()


def test_the_panel_names_the_backend_and_flags_placeholder_prose(
    make_project: Callable[..., nk.Project], panels: Callable[..., JobPanel]
) -> None:
    offline = panels(make_project("offline"))
    wait_until(lambda: "nk-backend" in offline.view.value)
    line = re.search(
        r'<div class="nk-backend" data-placeholder="(\w+)"[^>]*>([^<]*)<', offline.view.value
    )
    assert line is not None
    assert line.groups() == (
        "true",
        "backend: offline — placeholder prose, not written by a model",
    )
    real = panels(make_project("real", backend="openai", model="gpt-4o"))
    wait_until(lambda: "nk-backend" in real.view.value)
    assert 'data-placeholder="false"' in real.view.value
    assert "backend: openai, model gpt-4o<" in real.view.value
