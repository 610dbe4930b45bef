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


def stored_state(project: nk.Project, job: Job) -> str:
    """The job's state as the store records it."""
    row = project.store.job(job.id)
    assert row is not None, f"no job {job.id} in the store"
    return str(row["state"])


SLOW = {"backend_options": {"tokens_per_second": 600}}


def hold_first_thread(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the first job thread wait at its start until the returned event is set."""
    gate = threading.Event()
    held: list[Job] = []

    def held_first(job: Job) -> None:
        if not held:
            held.append(job)
            gate.wait(10)

    monkeypatch.setattr(Job.test_hooks, "thread_started", held_first)
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
    assert project.writer.held, "the second run still holds the writer lock"
    assert nk.open_project(project.root).writer.held_elsewhere()
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
    assert job.thread is not None and job.thread.is_alive()
    workers = [t for t in threading.enumerate() if t.name == f"novelkit-job-{job.id}"]
    assert workers == [job.thread], "the stale first thread stepped aside"
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
    assert stored_state(project, job) == "succeeded"


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
    assert stored_state(project, first) == "cancelled"


def test_a_refused_claim_leaves_no_orphan_job(make_project: Factory) -> None:
    project = make_project(**SLOW)
    project.run_stage("premise").wait(30)
    other = nk.open_project(project.root)
    # knows only the finished job, so its start() goes past the check
    stale = nk.open_project(project.root)
    assert stale.job is not None and stale.job.state is JobState.SUCCEEDED
    running = project.start()
    time.sleep(0.2)
    with pytest.raises((nk.JobStateError, nk.ProjectLockedError), match="running|another process"):
        other.run_stage("premise", force=True)
    with pytest.raises(nk.ProjectLockedError):
        stale.start()  # past the check, the claim comes before the row
    stale.close()
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

    def poll() -> None:  # thousands of reads a second, but no GIL hog starving the job
        while not stop.is_set():
            job.state  # noqa: B018 - reading it is the point
            time.sleep(0.0002)

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


# -- while this process runs the job, memory is the truth (``Job.local``) --------------------


def _paused_with_its_thread_ended(make_project: Factory) -> tuple[nk.Project, Job]:
    project = make_project(**SLOW)
    job = project.start()
    time.sleep(0.3)
    job.pause(now=True)
    assert job.wait(10) is JobState.PAUSED
    assert job.thread is not None and not job.thread.is_alive()
    return project, job


def _fail_recording(
    monkeypatch: pytest.MonkeyPatch, project: nk.Project, state: str, error: str
) -> Callable[[], None]:
    """Make recording the job state ``state`` fail with ``error``; returns the undo."""
    import sqlite3

    original = project.store.update_job

    def failing(job_id: str, **fields: object) -> None:
        if fields.get("state") == state:
            raise sqlite3.OperationalError(error)
        original(job_id, **fields)

    monkeypatch.setattr(project.store, "update_job", failing)
    return lambda: monkeypatch.setattr(project.store, "update_job", original)


def test_a_resume_whose_store_write_fails_leaves_the_job_as_the_store_shows_it(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When recording ``queued`` fails (a full disk) no run begins: the store, which still says
    paused, is the truth again, not an unrecorded ``queued`` in memory (``state`` would say
    queued, ``wait()`` block until its timeout, ``resume()`` answer "already queued")."""
    import sqlite3

    project, job = _paused_with_its_thread_ended(make_project)
    restore = _fail_recording(monkeypatch, project, "queued", "database or disk is full")
    with pytest.raises(sqlite3.OperationalError):
        job.resume()
    restore()
    assert stored_state(project, job) == "paused"
    started = time.monotonic()
    assert job.wait(2) is JobState.PAUSED, "memory keeps the queued state the store never took"
    assert time.monotonic() - started < 1
    assert job.resume().changed, "the disk has room again: resuming works"
    job.cancel()
    job.wait(10)


def test_a_state_read_that_spans_a_whole_run_never_leaves_it_looking_active(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view that reads the store's row while another thread resumes the job and the run
    ends (paused at once) must not apply a row older than the run's end: a ``wait()`` that did
    would wait on a state no thread will ever change."""
    project, job = _paused_with_its_thread_ended(make_project)
    original = project.store.job
    reader: list[int] = []
    seen: list[dict[str, object] | None] = []
    ran = threading.Event()
    errors: list[BaseException] = []

    def another_thread_runs_it() -> None:
        try:
            job.resume()
            deadline = time.monotonic() + 10
            while original(job.id)["state"] != "running":  # type: ignore[index]
                assert time.monotonic() < deadline
                time.sleep(0.005)
            seen.append(original(job.id))  # what the reader reads while the run goes on …
            job.pause(now=True)  # … and the run ends before the reader applies it
            assert job.thread is not None
            job.thread.join(10)
            ran.set()
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=another_thread_runs_it)

    def row_read_mid_run(job_id: str) -> dict[str, object] | None:
        if threading.get_ident() not in reader:
            return original(job_id)
        reader.clear()  # once: this is the read that the run overtakes
        runner.start()
        if ran.wait(2):
            return seen[0]
        return original(job_id)  # the run could not begin meanwhile: the row is the truth

    monkeypatch.setattr(project.store, "job", row_read_mid_run)
    outcome: list[JobState] = []

    def view() -> None:
        reader.append(threading.get_ident())
        outcome.append(job.wait(3))

    viewer = threading.Thread(target=view)
    viewer.start()
    viewer.join(20)
    runner.join(20)
    assert not errors, errors
    assert ran.is_set(), "the run never overtook the view's read: the race was not set up"
    assert stored_state(project, job) == "paused"
    assert outcome == [JobState.PAUSED], "the view waited on a run that had already paused"
    job.cancel()


def _paused_while_its_thread_tidies_up(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> tuple[nk.Project, Job]:
    """A job just paused (as a client that saw the 'paused' event knows) whose run's thread is
    still tidying up for 2 s, far longer than asyncio.run's teardown takes even on a busy
    machine, so that waiting for it shows."""

    def slow_teardown(job: Job) -> None:
        time.sleep(2.0)

    monkeypatch.setattr(Job.test_hooks, "run_ended", slow_teardown)
    project = make_project(**SLOW)
    job = project.start()
    time.sleep(0.3)
    job.pause(now=True)
    deadline = time.monotonic() + 10
    while job.state is not JobState.PAUSED:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return project, job


def test_reading_the_state_never_waits_for_a_resume(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status read (the sidecar computes it on its event loop) never waits for a resume,
    even one that comes while the previous run's thread is still tidying up."""
    project, job = _paused_while_its_thread_tidies_up(make_project, monkeypatch)
    resumer = threading.Thread(target=job.resume)
    resumer.start()
    time.sleep(0.05)  # the resume is under way while the previous thread still tidies up
    started = time.monotonic()
    project.status()
    waited = time.monotonic() - started
    resumer.join(10)
    job.cancel()
    job.wait(10)
    assert waited < 0.5, f"a status read waited {waited:.1f} s behind resume()"


def test_resuming_just_after_the_pause_lands_does_not_stall(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume that comes while the previous run's thread is still tidying up starts at once,
    without waiting for that thread, and the new run keeps the writer lock when it ends."""
    project, job = _paused_while_its_thread_tidies_up(make_project, monkeypatch)
    old_thread = job.thread
    started = time.monotonic()
    job.resume()
    took = time.monotonic() - started
    assert old_thread is not None
    old_thread.join(10)  # the earlier run's thread has ended, the new run goes on
    kept = project.writer.held and job.state.active
    job.cancel()
    job.wait(10)
    assert took < 1.5, f"resume() took {took:.1f} s"
    assert kept, "the earlier run's thread dropped the writer lock from under the new run"


def test_a_view_reading_as_the_thread_ends_never_keeps_the_lock_of_a_run_whose_end_was_lost(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the run's final state cannot be recorded, memory has it and the store still says
    ``pausing``. A view reading as the thread ends must not write that ``pausing`` over
    memory before the lock is released: the job would stay pausing for ever in this process
    (``wait()`` hanging, ``cancel()`` stuck at cancelling). It reads as interrupted instead."""

    project = make_project(**SLOW)
    restore = _fail_recording(monkeypatch, project, "paused", "disk I/O error")

    def a_view_reads_first(job: Job) -> None:
        view = threading.Thread(target=lambda: job.state)
        view.start()
        view.join(10)

    monkeypatch.setattr(Job.test_hooks, "run_ended", a_view_reads_first)
    job = project.start()
    time.sleep(0.3)
    job.pause(now=True)
    assert job.thread is not None
    job.thread.join(10)
    restore()
    assert stored_state(project, job) == "pausing"
    assert not project.writer.held, "the lock outlived the run"
    assert job.wait(2) is JobState.INTERRUPTED


@pytest.mark.parametrize("prober", ["this lock", "another lock on the same file"])
def test_probing_the_lock_never_makes_a_claim_fail(tmp_path: Path, prober: str) -> None:
    """``held_elsewhere()`` probes by taking the flock for a moment; every status read of a job
    not running here does it, from this Project's threads or from a second Project on the same
    folder (a sidecar in the notebook's kernel, another process). A ``start()`` or
    ``resume()`` claiming the lock in that moment must not fail with ProjectLockedError."""
    from novelkit._store import ProjectLock

    lock = ProjectLock(tmp_path / "lock")
    other = lock if prober == "this lock" else ProjectLock(tmp_path / "lock")
    stop = threading.Event()

    def probe() -> None:  # a thousand probes a second: far more than any view makes
        while not stop.is_set():
            other.held_elsewhere()
            time.sleep(0.001)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        for _ in range(3000):
            lock.acquire()
            lock.release()
    finally:
        stop.set()
        thread.join()
