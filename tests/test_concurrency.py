"""Races between processes, threads and runs (regressions from a review of the core)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import novelkit as nk
from novelkit import Job, JobState

Factory = Callable[..., nk.Project]
SLOW = {"backend_options": {"tokens_per_second": 600}}


def hold_first_thread(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the first job thread wait at its start until the returned event is set."""
    gate = threading.Event()
    original = Job._thread_main
    held: list[Job] = []

    def patched(self: Job, generation: int) -> None:
        if not held:
            held.append(self)
            gate.wait(10)
        original(self, generation)

    monkeypatch.setattr(Job, "_thread_main", patched)
    return gate


def test_a_finished_run_never_drops_the_lock_of_the_next_one(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(**SLOW)
    gate = hold_first_thread(monkeypatch)
    first = project.start()
    assert first.cancel().state is JobState.CANCELLED  # still queued: cancelled straight away
    second = project.start()
    gate.set()  # the first run's thread now starts, sees it was cancelled, and tidies up
    time.sleep(0.3)
    assert second.state is JobState.RUNNING
    assert project._lock.held, "the second run still holds the writer lock"
    assert nk.open_project(project.root)._lock.held_elsewhere()
    second.cancel()
    second.wait(10)


def test_pause_and_resume_before_the_thread_starts_runs_once(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(**SLOW)
    gate = hold_first_thread(monkeypatch)
    job = project.start()
    assert job.pause().state is JobState.PAUSED
    assert job.resume().changed
    gate.set()
    time.sleep(0.4)
    assert job.state is JobState.RUNNING
    assert job._loop is not None and job._thread is not None and job._thread.is_alive()
    workers = [t for t in threading.enumerate() if t.name == f"novelkit-job-{job.id}"]
    assert workers == [job._thread], "the stale first thread stepped aside"
    started = time.perf_counter()
    job.pause(now=True)
    assert job.wait(5) is JobState.PAUSED and time.perf_counter() - started < 0.5


def test_writes_from_a_second_project_object_do_not_break_the_running_job(
    make_project: Factory,
) -> None:
    project = make_project(backend_options={"tokens_per_second": 4000})
    assert project.start().wait(60) is JobState.SUCCEEDED
    project.configure(backend_options={"tokens_per_second": 600})
    job = project.run_stage("draft", variant="slow", seed=7)
    time.sleep(0.3)
    other = nk.open_project(project.root)  # a notebook exporting while `novelkit run` works
    other.export("md")
    assert job.wait(60) is JobState.SUCCEEDED
    seqs = [e.seq for e in project.store.events_since(0, 100_000)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert project.store.job(job.id)["state"] == "succeeded"


def test_a_stale_view_of_a_job_defers_to_the_process_that_runs_it(make_project: Factory) -> None:
    project = make_project(**SLOW)
    first = project.start()
    time.sleep(0.3)
    first.pause()
    assert first.wait(10) is JobState.PAUSED
    runner = nk.open_project(project.root)  # `novelkit resume DIR` elsewhere
    runner.job.resume()  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while first.state is not JobState.RUNNING:  # the old view reads the store, not its memory
        assert time.monotonic() < deadline, first.state
        time.sleep(0.01)
    assert not first.local
    assert first.cancel().message == "cancel requested from another process"
    with pytest.raises((nk.JobStateError, nk.ProjectLockedError)):
        project.save_artefact("premise", project.artefacts["premise"])
    assert runner.job.wait(10) is JobState.CANCELLED  # type: ignore[union-attr]
    assert project.store.job(first.id)["state"] == "cancelled"


def test_a_refused_claim_leaves_no_orphan_job(make_project: Factory) -> None:
    project = make_project(**SLOW)
    project.run_stage("premise").wait(30)
    other = nk.open_project(project.root)
    running = project.start()
    time.sleep(0.2)
    with pytest.raises((nk.JobStateError, nk.ProjectLockedError), match="running|another process"):
        other.run_stage("premise", force=True)
    with pytest.raises(nk.ProjectLockedError):
        other._new_job({"kind": "all"})  # even past the check, the claim comes before the row
    third = nk.open_project(project.root)
    assert third.job is not None and third.job.id == running.id
    running.cancel()
    running.wait(10)


def test_control_requests_left_over_from_a_run_do_not_hit_the_next(make_project: Factory) -> None:
    project = make_project(**SLOW)
    job = project.start()
    time.sleep(0.3)
    job.pause(now=True)
    job.wait(10)
    project.store.request_control(job.id, "cancel", True)  # arrived after the job had paused
    job.resume()
    time.sleep(0.4)
    assert job.state is JobState.RUNNING, "a cancel left from the earlier run is void"
    job.cancel()
    job.wait(10)


def test_a_zero_temperature_override_makes_the_stage_stale(project: nk.Project) -> None:
    project.run_stage("premise").wait(30)
    project.configure(stages={"premise": {"temperature": 0.0}})
    assert {s.name: s.state for s in project.stages}["premise"] is nk.StageState.STALE


def test_a_hand_edit_shows_as_stale_without_any_event(project: nk.Project) -> None:
    project.run_stage("premise").wait(30)
    project.run_stage("world").wait(30)
    assert {s.name: s.state for s in project.stages}["world"] is nk.StageState.SUCCEEDED
    path = project.root / "artefacts" / "01-premise.json"
    path.write_text(path.read_text().replace('"tense": "past"', '"tense": "present"'))
    assert {s.name: s.state for s in project.stages}["world"] is nk.StageState.STALE


@pytest.mark.parametrize("action", ["pause_now", "cancel"])
def test_stopping_while_the_first_units_are_being_set_up_never_hangs(
    make_project: Factory, action: str
) -> None:
    # a unit whose task is cancelled before its first step never runs its own clean-up: the
    # graph must still hear that it ended, or the job stays pausing or cancelling for ever
    project = make_project(backend_options={"tokens_per_second": 20000})
    job = project.start()
    for attempt in range(40):
        time.sleep(attempt % 5 * 0.002)  # stop at different points of the start-up
        if action == "pause_now":
            job.pause(now=True)
            assert job.wait(10) is JobState.PAUSED, job.state
            job.resume()
        else:
            job.cancel()
            assert job.wait(10) is JobState.CANCELLED, job.state
            job = project.start()
    job.cancel()
    assert job.wait(10) in (JobState.CANCELLED, JobState.SUCCEEDED)


def test_reading_the_state_from_other_threads_never_rewinds_a_run(make_project: Factory) -> None:
    """Views poll ``job.state`` from their own threads (the panel, the sidecar) while runs are
    paused and resumed: a poll must never write an older state over the run's own, nor make
    the run look interrupted, nor make its claim of the lock fail."""
    project = make_project(
        chapters=6,
        words_per_chapter=1500,
        backend_options={"tokens_per_second": 3000, "latency": 0.005},
    )
    job = project.start()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            job.state  # noqa: B018 - reading it is the point

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    answers = []
    try:
        for _ in range(40):
            seen = job.streamed_chars
            deadline = time.monotonic() + 10
            while job.streamed_chars == seen and time.monotonic() < deadline:
                time.sleep(0.001)
            answers.append(job.pause(now=True).state)  # it is streaming: pausing, never paused
            assert job.wait(10) is JobState.PAUSED
            assert job.resume().state is JobState.QUEUED
    finally:
        stop.set()
        for poller in pollers:
            poller.join()
        job.cancel()
        job.wait(10)
    assert answers == [JobState.PAUSING] * 40
    states = [e["state"] for e in project.events(limit=1000) if e["type"] == "job"]
    assert "interrupted" not in states
    assert states.count("pausing") == 40 and states.count("paused") == 40


def test_probing_the_lock_never_makes_its_own_claim_fail(tmp_path: Path) -> None:
    from novelkit._store import ProjectLock

    lock = ProjectLock(tmp_path / "lock")
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            lock.held_elsewhere()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(2000):
            lock.acquire()  # raised ProjectLockedError while a probe held the lock for a moment
            lock.release()
    finally:
        stop.set()
        prober.join()
