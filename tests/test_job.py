"""The job state machine: legal and illegal transitions, idempotent repeats, concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import novelkit as nk
from novelkit import Job, JobState
from novelkit._status import CONTROL, TRANSITIONS
from novelkit.widgets.panel import legal_actions as panel_actions


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def running_job(project: nk.Project) -> nk.Job:
    job = project.start()
    wait_for(lambda: job.state is JobState.RUNNING and job.status.preview)
    return job


def test_start_returns_at_once_and_job_succeeds(slow_project: nk.Project) -> None:
    started = time.perf_counter()
    job = slow_project.start()
    assert time.perf_counter() - started < 0.5
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    assert job.wait(60) is JobState.SUCCEEDED
    assert all(s.state is nk.StageState.SUCCEEDED for s in slow_project.stages)
    assert (slow_project.root / "artefacts" / "12-manuscript.md").exists()


def test_pause_lets_in_flight_calls_finish_and_resume_completes(slow_project: nk.Project) -> None:
    job = running_job(slow_project)
    result = job.pause()
    assert result.changed and result.state is JobState.PAUSING
    assert job.wait(10) is JobState.PAUSED
    calls_at_pause = slow_project.store.call_count()
    assert calls_at_pause >= 1
    time.sleep(0.2)
    assert slow_project.store.call_count() == calls_at_pause, "no call may start while paused"
    assert job.resume().changed
    assert job.wait(60) is JobState.SUCCEEDED


def test_pause_now_abandons_the_call_in_flight_and_resume_redoes_it(
    make_project: Any,
) -> None:
    """pause(now=True) does not wait for the streaming call: at 10 tokens/s the premise call
    needs several seconds more, and the job is paused with that call not saved. (How fast it
    pauses is measured in benchmarks/bench_core.py: p95 a few ms against a goal of 100 ms.)"""
    project = make_project(backend_options={"tokens_per_second": 10})
    job = running_job(project)
    assert project.store.call_count() == 0  # the first call is still streaming
    job.pause(now=True)
    assert job.wait(5) is JobState.PAUSED
    assert project.store.call_count() == 0, "the interrupted call is not saved as finished"
    assert {s.name: s.state for s in job.status.stages}["premise"] is not nk.StageState.SUCCEEDED
    project.configure(backend_options={"tokens_per_second": 20_000})
    assert job.resume().changed
    assert job.wait(60) is JobState.SUCCEEDED
    assert project.store.call_count() >= 12


def test_cancel_keeps_finished_work_and_start_continues(slow_project: nk.Project) -> None:
    job = running_job(slow_project)
    wait_for(lambda: slow_project.store.call_count() >= 2)
    assert job.cancel().state is JobState.CANCELLING
    assert job.wait(5) is JobState.CANCELLED
    kept = slow_project.store.call_count()
    assert kept >= 2
    with pytest.raises(nk.JobStateError, match="cancelled"):
        job.resume()
    second = slow_project.start()
    assert second is not job
    assert second.wait(60) is JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("method", "kwargs", "state"),
    [
        ("pause", {}, JobState.PAUSED),
        ("resume", {}, JobState.RUNNING),
        ("cancel", {}, JobState.CANCELLED),
    ],
)
def test_repeating_a_request_for_the_current_state_is_a_no_op(
    slow_project: nk.Project, method: str, kwargs: dict[str, Any], state: JobState
) -> None:
    job = running_job(slow_project)
    if state is JobState.PAUSED:
        job.pause(now=True)
        job.wait(5)
    elif state is JobState.CANCELLED:
        job.cancel()
        job.wait(5)
    before = slow_project.store.last_seq()
    result = getattr(job, method)(**kwargs)
    assert result.changed is False
    assert result.state is job.state
    if state is not JobState.RUNNING:
        assert slow_project.store.last_seq() == before, "a no-op writes no event"
    else:
        job.wait(60)


def test_illegal_transitions_raise_job_state_error_naming_the_state(project: nk.Project) -> None:
    job = project.start()
    assert job.wait(60) is JobState.SUCCEEDED
    for method in ("pause", "resume", "cancel"):
        with pytest.raises(nk.JobStateError, match="succeeded") as info:
            getattr(job, method)()
        assert info.value.state is JobState.SUCCEEDED


def test_paused_job_cancels_straight_and_queued_job_pauses_straight(
    slow_project: nk.Project,
) -> None:
    job = running_job(slow_project)
    job.pause(now=True)
    job.wait(5)
    result = job.cancel()
    assert result.changed and result.state is JobState.CANCELLED
    events = [e for e in slow_project.store.events_since(0, 10_000) if e.type == "job"]
    assert [e.data["state"] for e in events][-2:] == ["paused", "cancelled"]


def test_run_stage_while_a_job_runs_is_refused(slow_project: nk.Project) -> None:
    job = running_job(slow_project)
    with pytest.raises(nk.JobStateError, match="running"):
        slow_project.run_stage("premise", force=True)
    job.cancel()
    job.wait(5)


def test_fifty_concurrent_control_calls_end_in_a_legal_state_with_gap_free_seq(
    slow_project: nk.Project,
) -> None:
    job = running_job(slow_project)
    outcomes: list[str] = []
    barrier = threading.Barrier(50)

    def hammer(i: int) -> None:
        barrier.wait()
        action = ("pause", "resume", "cancel", "pause_now")[i % 4]
        try:
            if action == "pause_now":
                job.pause(now=True)
            else:
                getattr(job, action)()
            outcomes.append("ok")
        except nk.JobStateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 50
    final = job.wait(60)
    if final is JobState.PAUSED:
        job.resume()
        final = job.wait(60)
    assert final in (JobState.SUCCEEDED, JobState.CANCELLED)
    seqs = [e.seq for e in slow_project.store.events_since(0, 100_000)]
    assert seqs == list(range(1, len(seqs) + 1))
    states = [
        e.data["state"] for e in slow_project.store.events_since(0, 100_000) if e.type == "job"
    ]
    previous: JobState | None = None
    for state in map(JobState, states):
        assert state in TRANSITIONS[previous], f"{previous} → {state} is not a legal transition"
        previous = state


def test_wait_with_timeout_returns_the_current_state(slow_project: nk.Project) -> None:
    job = slow_project.start()
    assert job.wait(0.01) in (JobState.QUEUED, JobState.RUNNING)
    job.cancel()
    assert job.wait(5) is JobState.CANCELLED


def test_status_reports_tokens_progress_and_stages(project: nk.Project) -> None:
    job = project.start()
    job.wait(60)
    status = job.status
    assert status.state is JobState.SUCCEEDED
    assert status.progress == 1.0
    assert status.tokens > 0 and status.prompt_tokens > 0 and status.completion_tokens > 0
    assert [s.number for s in status.stages] == list(range(1, 13))
    assert "assemble" in status.table()
    assert status.to_dict()["state"] == "succeeded"


def while_the_next_status_is_read(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch, meanwhile: Any
) -> None:
    """Run ``meanwhile`` once, in the middle of the next status read on this thread (after
    the stage rows are taken, during the SQLite read of the stage timings): the run's own
    thread going on while another thread (the panel, the sidecar) puts a status together."""
    timings = project.freshness.stage_timings
    pending = [meanwhile]

    def the_run_moves_on() -> Any:
        if pending:
            pending.pop()()
        return timings()

    monkeypatch.setattr(project.freshness, "stage_timings", the_run_moves_on)


def test_a_status_read_while_the_run_moves_on_never_names_a_stage_it_shows_not_running(
    slow_project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage a status names as current must be running in its own stage list."""
    project = slow_project
    planning, go = threading.Event(), threading.Event()
    needs_run = project.freshness.needs_run

    def held_while_planning(*args: Any, **kwargs: Any) -> bool:
        planning.set()
        assert go.wait(10)
        return needs_run(*args, **kwargs)

    def first_unit_starts() -> None:
        go.set()
        wait_for(lambda: job.live.current is not None)

    monkeypatch.setattr(project.freshness, "needs_run", held_while_planning)
    job = project.run_stage("premise")
    assert planning.wait(10)
    while_the_next_status_is_read(project, monkeypatch, first_unit_starts)
    caught = job.status
    assert go.is_set()
    now = job.status
    job.cancel()
    job.wait(30)
    for status in (caught, now):
        states = {s.name: s.state for s in status.stages}
        assert status.stage is None or states[status.stage] is nk.StageState.RUNNING, status.table()
    assert now.stage == "premise"


def test_a_status_names_no_unit_of_a_stage_that_has_ended(
    slow_project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After its last unit a stage is succeeded, while the job tidies up: the status must not
    still say it is writing that stage."""
    project = slow_project
    tidying, go = threading.Event(), threading.Event()
    invalidate = project.store.invalidate

    def held_while_tidying(*args: Any, **kwargs: Any) -> Any:
        tidying.set()
        assert go.wait(10)
        return invalidate(*args, **kwargs)

    monkeypatch.setattr(project.store, "invalidate", held_while_tidying)
    job = project.run_stage("premise")
    assert tidying.wait(30)
    status = job.status
    go.set()
    assert job.wait(30) is JobState.SUCCEEDED
    assert status.state is JobState.RUNNING
    assert {s.name: s.state for s in status.stages}["premise"] is nk.StageState.SUCCEEDED
    assert status.stage is None and status.unit is None, status.table()


def test_a_status_read_as_the_job_stops_shows_one_moment(
    slow_project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status read while the job pauses is from before or after, never half of each: a
    paused job lists no stage as running, and its last_seq covers no event it does not show."""
    job = running_job(slow_project)

    def it_pauses() -> None:
        job.pause(now=True)
        wait_for(lambda: job.live.state is JobState.PAUSED)

    while_the_next_status_is_read(slow_project, monkeypatch, it_pauses)
    caught = job.status
    assert job.wait(30) is JobState.PAUSED
    for status in (caught, job.status):
        running = [s.name for s in status.stages if s.state is nk.StageState.RUNNING]
        assert status.state is not None
        assert status.state.active or not running, (status.state, running)
        job_events = [e for e in slow_project.events(limit=10_000) if e["type"] == "job"]
        shown = [e["state"] for e in job_events if e["seq"] <= status.last_seq]
        assert shown[-1] == status.state.value, (shown, status.state, status.last_seq)


def test_a_status_totals_are_the_sums_of_its_stage_rows(
    slow_project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that finishes while a status is read counts in both its totals and its stage
    rows, or in neither."""
    slow_project.configure(prices={"offline": {"prompt": 1.0, "completion": 2.0}})
    job = running_job(slow_project)
    wait_for(lambda: job.live.counters.prompt_tokens > 0)  # the first call is in
    tokens = job.live.counters.prompt_tokens

    def another_call_finishes() -> None:
        wait_for(lambda: job.live.counters.prompt_tokens > tokens)

    while_the_next_status_is_read(slow_project, monkeypatch, another_call_finishes)
    caught = job.status
    job.cancel()
    job.wait(30)
    for status in (caught, job.status):
        assert status.tokens == sum(s.tokens for s in status.stages) > 0
        assert status.cost == pytest.approx(sum(s.cost for s in status.stages))


def test_reading_project_job_while_another_thread_starts_one_keeps_the_new_job(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``project.job`` on a reopened project loads the last job from the store; a start() on
    another thread meanwhile must stay the project's job (or pause would not reach it)."""
    assert project.start().wait(60) is JobState.SUCCEEDED
    root = project.root
    project.close()
    reopened = nk.open_project(root)
    try:
        last_job = reopened.store.last_job
        started: list[nk.Job] = []
        starter = threading.Thread(target=lambda: started.append(reopened.start()))

        def read_while_it_starts() -> Any:
            row = last_job()
            if not starter.is_alive() and not started:
                starter.start()
                starter.join(0.5)  # blocked until this read is done, once it is guarded
            return row

        monkeypatch.setattr(reopened.store, "last_job", read_while_it_starts)
        loaded = reopened.job  # the last job, read from the store
        starter.join(30)
        assert loaded is not None and loaded.state is JobState.SUCCEEDED
        assert started and reopened.job is started[0]
        assert started[0].wait(60) is JobState.SUCCEEDED
    finally:
        reopened.close()


def test_a_status_snapshot_reads_back_as_the_same_status(slow_project: nk.Project) -> None:
    """Another process sees a running job through the snapshot it writes: what it reads back
    must be the status the job reported."""
    job = slow_project.start()
    deadline = time.monotonic() + 30
    while job.streamed_chars == 0:
        assert time.monotonic() < deadline, "the job never streamed"
        time.sleep(0.005)
    status = job.status
    again = nk.JobStatus.from_dict(status.to_dict())
    job.cancel()
    job.wait(30)
    assert again.state is JobState.RUNNING and again.preview
    assert again == status


STAGE_SPEC: dict[str, Any] = {
    "kind": "stage",
    "stage": "premise",
    "chapters": None,
    "force": False,
    "variant": "",
    "params": {},
}


def call_action(job: nk.Job, action: str) -> nk.ControlResult:
    if action == "pause_now":
        return job.pause(now=True)
    result: nk.ControlResult = getattr(job, action)()
    return result


@pytest.mark.parametrize("action", list(CONTROL))
@pytest.mark.parametrize("state", list(JobState), ids=str)
def test_the_views_offer_an_action_exactly_when_the_job_accepts_it(
    project: nk.Project, state: JobState, action: str
) -> None:
    """For every state and control action: the panel's buttons and the status the sidecar and
    the dashboard serve (``actions``) offer it exactly when the Job, asked, does something
    (``changed``), rather than refusing it or answering that it is already done."""
    project.writer.lock.acquire()  # as a run holds it: the recorded state is this process's
    job_id = f"job-{state.value}"
    project.store.create_job(job_id, "stage", STAGE_SPEC, state.value)
    job = Job(project, job_id, STAGE_SPEC, state, local=True)
    assert job.state is state
    offered_by_status = action in job.status.actions
    offered_by_panel = action in panel_actions(state)
    try:
        accepted = call_action(job, action).changed
    except nk.JobStateError as refused:
        assert refused.state is state
        accepted = False
    finally:
        if job.thread is not None:  # resume() launched a run: let it end
            job.cancel()
            job.wait(30)
    assert offered_by_status == accepted, f"status offers {action} in {state}: {offered_by_status}"
    assert offered_by_panel == accepted, f"panel offers {action} in {state}: {offered_by_panel}"


def test_a_queued_job_pauses_at_once_and_its_thread_then_runs_nothing(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """queued → paused: a job paused before its thread begins is paused straight away, runs no
    unit when its thread does begin, and resumes from there."""
    gate = threading.Event()

    def held(job: nk.Job) -> None:
        gate.wait(10)

    monkeypatch.setattr(Job.test_hooks, "thread_started", held)
    job = project.start()
    assert job.state is JobState.QUEUED
    result = job.pause()
    assert result.changed and result.state is JobState.PAUSED
    thread = job.thread
    assert thread is not None
    monkeypatch.undo()
    gate.set()
    thread.join(10)
    assert job.status().state is JobState.PAUSED
    assert project.store.call_count() == 0, "a job paused while queued ran a call"
    states = [e["state"] for e in project.events(limit=1000) if e["type"] == "job"]
    assert states == ["queued", "paused"]
    assert job.resume().changed
    assert job.wait(60) is JobState.SUCCEEDED


# -- the Job as Python users expect it: awaitable, result(), done(), callbacks, events ----------


class RefusingBackend:
    """A backend whose every call fails the way a wrong model name does."""

    name = "refusing"

    async def stream(self, request: Any) -> Any:
        raise nk.BackendError("the model 'nope' does not exist; set model in novel.toml")
        yield  # pragma: no cover  (an async generator)

    async def aclose(self) -> None:
        return None


def failing_project(make_project: Any) -> nk.Project:
    project: nk.Project = make_project("failing")
    project.backend = RefusingBackend()
    return project


def test_await_job_returns_the_state_it_stops_in(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    monkeypatch.setattr(Job.test_hooks, "thread_started", lambda job: gate.wait(10))

    async def notebook_cell() -> tuple[JobState, list[bool]]:
        job = project.run_stage("premise")  # held until the loop is seen to run meanwhile
        seen_running: list[bool] = []

        async def meanwhile() -> None:
            await asyncio.sleep(0)
            seen_running.append(not job.done())
            gate.set()

        ticker = asyncio.ensure_future(meanwhile())
        state = await job
        await ticker
        return state, seen_running

    state, seen_running = asyncio.run(notebook_cell())
    assert state is JobState.SUCCEEDED
    assert seen_running == [True], "await job blocked the event loop"
    assert project.job is not None and project.job.done()


def test_await_a_stopped_job_returns_at_once(project: nk.Project) -> None:
    job = project.run_stage("premise")
    assert job.wait(30) is JobState.SUCCEEDED

    async def again() -> JobState:
        return await job

    assert asyncio.run(again()) is JobState.SUCCEEDED


def test_result_returns_the_final_state_or_raises_the_jobs_error(
    project: nk.Project, make_project: Any
) -> None:
    assert project.run_stage("premise").result(30) is JobState.SUCCEEDED

    failing = failing_project(make_project)
    job = failing.run_stage("premise")
    with pytest.raises(nk.JobFailedError, match="model 'nope' does not exist") as info:
        job.result(30)
    assert isinstance(info.value, nk.NovelkitError)
    assert info.value.job_id == job.id
    assert isinstance(info.value.__cause__, nk.BackendError)
    assert job.state is JobState.FAILED
    with pytest.raises(nk.JobFailedError):
        job.wait(30, raise_on_failure=True)
    assert job.wait(30) is JobState.FAILED  # the default keeps returning the state


def test_result_of_a_failed_job_read_back_from_disk_raises_too(make_project: Any) -> None:
    failing = failing_project(make_project)
    assert failing.run_stage("premise").wait(30) is JobState.FAILED
    failing.close()
    reopened = nk.open_project(failing.root)
    try:
        assert reopened.job is not None
        with pytest.raises(nk.JobFailedError, match="model 'nope' does not exist"):
            reopened.job.result()
    finally:
        reopened.close()


def test_result_times_out_while_the_job_runs(slow_project: nk.Project) -> None:
    job = slow_project.start()
    with pytest.raises(TimeoutError, match="still"):
        job.result(timeout=0.01)
    job.cancel()
    assert job.result(30) is JobState.CANCELLED


def test_done_callbacks_run_once_when_the_job_stops(slow_project: nk.Project) -> None:
    job = running_job(slow_project)
    assert not job.done()
    seen: list[JobState] = []
    job.add_done_callback(lambda j: seen.append(j.state))
    job.add_done_callback(lambda j: 1 / 0)  # a failing callback is logged, not raised
    job.pause(now=True)
    assert job.wait(30) is JobState.PAUSED
    assert job.done()
    assert seen == [JobState.PAUSED]
    job.add_done_callback(lambda j: seen.append(j.state))  # already stopped: at once
    assert seen == [JobState.PAUSED, JobState.PAUSED]
    job.resume()
    assert job.wait(60) is JobState.SUCCEEDED
    assert seen == [JobState.PAUSED, JobState.PAUSED], "a callback runs once"


def test_async_for_events_follows_the_job_to_its_end(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    monkeypatch.setattr(Job.test_hooks, "thread_started", lambda job: gate.wait(10))

    async def follow() -> list[nk.Event]:
        job = project.run_stage("premise")  # held before its loop starts
        events = []
        async for event in job.events():
            events.append(event)
            gate.set()  # the iterator follows the job: now let it stream
        return events

    events = asyncio.run(follow())
    assert events[0].type == "job" and events[0].data["state"] == "queued"
    assert events[-1].type == "job" and events[-1].data["state"] == "succeeded"
    kinds = {e.type for e in events}
    assert {"unit", "call", "job"} <= kinds
    assert "delta" in kinds, "the streamed text comes through too"
    seqs = [e.seq for e in events if e.seq is not None]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_events_of_a_job_that_has_already_stopped_end_at_once(project: nk.Project) -> None:
    job = project.run_stage("premise")
    assert job.result(30) is JobState.SUCCEEDED

    async def follow() -> list[nk.Event]:
        return [event async for event in job.events()]

    events = asyncio.run(follow())
    assert [e.data["state"] for e in events if e.type == "job"] == [
        "queued",
        "running",
        "succeeded",
    ]


def test_status_has_one_shape_on_project_and_job(project: nk.Project) -> None:
    job = project.run_stage("premise")
    job.wait(30)
    assert project.status() == job.status() == job.status
    assert project.status().state is JobState.SUCCEEDED


def test_a_cancelled_stage_shows_the_time_it_ran_and_no_stage_running(
    slow_project: nk.Project,
) -> None:
    job = running_job(slow_project)
    cancelled_in = job.status().stage
    assert cancelled_in is not None
    job.cancel()
    assert job.wait(30) is JobState.CANCELLED
    for status in (job.status(), slow_project.status()):
        rows = {s.name: s for s in status.stages}
        assert not [s.name for s in status.stages if s.state is nk.StageState.RUNNING]
        assert status.stage is None and status.unit is None
        assert rows[cancelled_in].state is nk.StageState.CANCELLED
        assert rows[cancelled_in].elapsed > 0, "the cancelled stage ran, for some time"
