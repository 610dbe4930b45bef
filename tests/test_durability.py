"""Durability: kill -9 at several points, the writer lock, a full disk, events and subscribers."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import novelkit as nk
from novelkit import JobState
from novelkit.llm.base import Chunk, Request
from novelkit.llm.offline import OfflineBackend

CONFIG = {"chapters": 3, "words_per_chapter": 300, "seed": 5}
PREMISE = "A clockmaker hides a map inside a broken clock."

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import novelkit as nk
    from novelkit import _artefacts, _store
    point, count = sys.argv[2], int(sys.argv[3])
    seen = {"n": 0}

    def bump():
        seen["n"] += 1
        return seen["n"] >= count

    if point == "before_save":  # a response arrived but was not committed yet
        original = _store.Store.save_call
        def save_call(self, record):
            if bump():
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, record)
        _store.Store.save_call = save_call
    elif point == "after_save":  # the call is saved, its unit is not done yet
        original = _store.Store.save_call
        def save_call(self, record):
            original(self, record)
            if bump():
                os.kill(os.getpid(), signal.SIGKILL)
        _store.Store.save_call = save_call
    elif point == "mid_write":  # the temp file of an artefact is half written
        original = _artefacts.write_atomic
        import tempfile
        def write_atomic(path, data, **kw):
            if bump():
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                os.write(fd, data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return original(path, data, **kw)
        _artefacts.write_atomic = write_atomic
    project = nk.open_project(sys.argv[1])
    job = project.start()
    print("started", flush=True)
    job.wait()
    """
)


class CountingBackend:
    """Wraps the offline backend and records every request actually sent."""

    name = "counting"

    def __init__(self, **options: Any) -> None:
        self.inner = OfflineBackend(**options)
        self.sent: list[str] = []

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.sent.append(request.key)
        async for chunk in self.inner.stream(request):
            yield chunk

    async def aclose(self) -> None:
        return None


def artefact_files(root: Path) -> dict[str, bytes]:
    base = root / "artefacts"
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("reference") / "novel"
    project = nk.new_project(root, premise=PREMISE, **CONFIG)  # type: ignore[arg-type]
    assert project.start().wait(60) is JobState.SUCCEEDED
    project.close()
    return artefact_files(root)


def run_child(root: Path, point: str, count: int, kill_after: float | None = None) -> int:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), point, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started", (
            proc.stderr.read() if proc.stderr else ""
        )
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "count", "kill_after", "options"),
    [
        ("timer", 0, 0.6, {"tokens_per_second": 3000}),  # during a streamed call
        ("before_save", 9, None, {}),
        ("after_save", 14, None, {}),
        ("mid_write", 20, None, {}),
    ],
)
def test_kill_9_then_resume_repeats_no_finished_call(
    tmp_path: Path,
    reference: dict[str, bytes],
    point: str,
    count: int,
    kill_after: float | None,
    options: dict[str, Any],
) -> None:
    root = tmp_path / "novel"
    nk.new_project(root, premise=PREMISE, backend_options=options, **CONFIG).close()  # type: ignore[arg-type]
    assert run_child(root, point, count, kill_after) == -signal.SIGKILL

    db = sqlite3.connect(root / ".novelkit" / "state.db")
    finished_before = {row[0] for row in db.execute("SELECT key FROM calls")}
    db.close()
    assert finished_before, "the child finished some calls before it died"

    backend = CountingBackend()
    project = nk.open_project(root, backend_instance=backend)
    try:
        assert project.job is not None and project.job.state is JobState.INTERRUPTED
        assert not list(root.rglob("*.tmp")), "temp files of the dead process are cleaned"
        job = project.start()
        assert job is project.job, "start() resumes the interrupted job"
        assert job.wait(60) is JobState.SUCCEEDED
        assert not set(backend.sent) & finished_before, "a finished call was paid twice"
        assert len(backend.sent) == len(set(backend.sent))
        assert project.store.integrity_check() == "ok"
    finally:
        project.close()
    assert not list(root.rglob("*.tmp"))
    assert artefact_files(root) == reference


@pytest.mark.slow
def test_second_process_gets_project_locked_error(slow_project: nk.Project) -> None:
    job = slow_project.start()
    script = textwrap.dedent(
        f"""
        import novelkit as nk
        project = nk.open_project({str(slow_project.root)!r})
        assert project.job.state.value in ("queued", "running"), project.job.state
        try:
            project.run_stage("premise", force=True)
        except nk.JobStateError as exc:
            print("refused:", exc)
        try:
            project.writer.claim(project.job.id)
        except nk.ProjectLockedError as exc:
            print("locked:", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused: a job is running" in out.stdout
    assert (
        f"locked: {slow_project.root} is being written by another process (pid {os.getpid()})"
        in out.stdout
    )
    job.cancel()
    job.wait(10)


def test_second_project_object_in_same_process_is_locked_out(slow_project: nk.Project) -> None:
    job = slow_project.start()
    other = nk.open_project(slow_project.root)
    try:
        with pytest.raises(nk.ProjectLockedError, match="being written by another process"):
            other.writer.claim(job.id)
    finally:
        job.cancel()
        job.wait(10)
        other.close()


def test_calls_saved_by_another_writer_between_runs_are_never_paid_again(
    tmp_path: Path,
) -> None:
    """While a project runs, the memo trusts its own record of which calls exist; another
    writer that saves calls between two runs (here a second Project on the folder, as another
    process would) must be seen by the next run, which then pays for none of them."""
    backend = CountingBackend()
    root = tmp_path / "novel"
    project = nk.new_project(root, premise=PREMISE, backend_instance=backend, **CONFIG)
    assert project.run_stage("premise").wait(30) is JobState.SUCCEEDED
    other = nk.open_project(root)
    assert other.run_stage("world").wait(30) is JobState.SUCCEEDED
    saved_elsewhere = other.store.call_count() - len(backend.sent)
    other.close()
    assert saved_elsewhere >= 1

    sent_before = len(backend.sent)
    assert project.run_stage("world", force=True).wait(30) is JobState.SUCCEEDED
    assert backend.sent[sent_before:] == [], "a call the other writer paid for was sent again"
    assert project.run_stage("characters").wait(30) is JobState.SUCCEEDED
    assert len(backend.sent) > sent_before, "a call nobody made is still sent"
    project.close()


def test_disk_full_fails_the_job_clearly_and_keeps_earlier_artefacts(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from novelkit import _artefacts

    assert project.run_stage("premise").wait(30) is JobState.SUCCEEDED
    premise = (project.root / "artefacts" / "01-premise.json").read_bytes()
    original = _artefacts.write_atomic

    def full(path: Path, data: bytes, **kw: bool) -> None:
        if "02-world" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, data, **kw)

    monkeypatch.setattr("novelkit._project.a.write_atomic", full)
    job = project.start()
    assert job.wait(30) is JobState.FAILED
    assert "could not save the output of stage 'world' unit all: the disk is full" in (
        job.status.error or ""
    )
    assert (project.root / "artefacts" / "01-premise.json").read_bytes() == premise
    assert not (project.root / "artefacts" / "02-world.json").exists()
    assert {s.name: s.state for s in project.stages}["world"] is nk.StageState.FAILED
    monkeypatch.setattr("novelkit._project.a.write_atomic", original)
    assert job.resume().changed
    assert job.wait(60) is JobState.SUCCEEDED


def test_subscribers_cannot_block_or_crash_the_job(project: nk.Project) -> None:
    blocker = threading.Event()
    received: list[nk.Event] = []

    def stuck(event: nk.Event) -> None:
        blocker.wait(30)

    def broken(event: nk.Event) -> None:
        raise RuntimeError("subscriber bug")

    subs = [project.subscribe(stuck), project.subscribe(broken), project.subscribe(received.append)]
    started = time.perf_counter()
    assert project.start().wait(30) is JobState.SUCCEEDED
    assert time.perf_counter() - started < 10
    deadline = time.monotonic() + 5
    while not any(e.type == "job" and e.data["state"] == "succeeded" for e in received):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    persisted = [e.seq for e in received if e.seq is not None]
    assert persisted == sorted(persisted) and len(persisted) == len(set(persisted))
    assert any(e.type == "delta" and e.seq is None for e in received), (
        "streamed text arrives as deltas"
    )
    assert not any(e.type == "delta" for e in project.store.events_since(0, 100_000)), (
        "deltas are not persisted"
    )
    blocker.set()
    for sub in subs:
        sub.close()


def test_pull_subscription_and_bounded_queue(project: nk.Project) -> None:
    sub = project.bus.subscribe(maxsize=50)
    project.start().wait(30)
    events = []
    while (event := sub.get(timeout=0.1)) is not None:
        events.append(event)
    assert len(events) <= 50 and sub.dropped > 0
    assert events[-1].type == "job" and events[-1].data["state"] == "succeeded", (
        "the newest events are kept"
    )
    sub.close()


def test_events_since_reads_the_persisted_stream(project: nk.Project) -> None:
    project.start().wait(30)
    everything = project.events(0, 100_000)
    tail = project.events(everything[10]["seq"], 5)
    assert [e["seq"] for e in tail] == [e["seq"] for e in everything[11:16]]
