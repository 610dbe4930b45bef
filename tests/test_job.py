"""The job state machine: legal and illegal transitions, idempotent repeats, concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import novelkit as nk
from novelkit import JobState


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


def test_pause_now_reaches_paused_within_100ms(slow_project: nk.Project) -> None:
    job = running_job(slow_project)
    started = time.perf_counter()
    job.pause(now=True)
    assert job.wait(5) is JobState.PAUSED
    assert time.perf_counter() - started < 0.1
    job.resume()
    assert job.wait(60) is JobState.SUCCEEDED


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
    legal = {
        None: {"queued"},
        "queued": {"running", "paused", "cancelled"},
        "running": {"pausing", "cancelling", "succeeded", "failed", "paused"},
        "pausing": {"paused", "cancelling", "failed", "succeeded"},
        "paused": {"queued", "cancelled"},
        "cancelling": {"cancelled", "failed"},
    }
    previous = None
    for state in states:
        assert state in legal.get(previous, set()), (
            f"{previous} → {state} is not a legal transition"
        )
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


def test_a_status_read_while_the_run_moves_on_never_names_a_stage_it_shows_not_running(
    slow_project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status is read on another thread (the panel, the sidecar) while the run goes on: the
    stage it names as current must be running in its own stage list."""
    project = slow_project
    planning, go = threading.Event(), threading.Event()
    needs_run = project._needs_run

    def held_while_planning(*args: Any, **kwargs: Any) -> bool:
        planning.set()
        assert go.wait(10)
        return needs_run(*args, **kwargs)

    stage_statuses = project._stage_statuses

    def the_run_moves_on_meanwhile() -> Any:
        stages = stage_statuses()
        if planning.is_set() and not go.is_set():
            go.set()  # the run starts its first unit while this status is being put together
            wait_for(lambda: job._current is not None)
        return stages

    monkeypatch.setattr(project, "_needs_run", held_while_planning)
    monkeypatch.setattr(project, "_stage_statuses", the_run_moves_on_meanwhile)
    job = project.run_stage("premise")
    assert planning.wait(10)
    caught = job.status
    assert go.is_set()
    now = job.status
    job.cancel()
    job.wait(30)
    for status in (caught, now):
        states = {s.name: s.state for s in status.stages}
        assert status.stage is None or states[status.stage] is nk.StageState.RUNNING, status.table()
    assert now.stage == "premise"


def test_a_status_snapshot_reads_back_as_the_same_status(slow_project: nk.Project) -> None:
    """Another process sees a running job through the snapshot it writes: what it reads back
    must be the status the job reported."""
    job = slow_project.start()
    deadline = time.monotonic() + 30
    while job.streamed_chars == 0:
        assert time.monotonic() < deadline, "the job never streamed"
        time.sleep(0.005)
    status = job.status
    again = nk.JobStatus.from_dict(status.to_dict(), last_seq=status.last_seq)
    job.cancel()
    job.wait(30)
    assert again.state is JobState.RUNNING and again.preview
    assert again == status
