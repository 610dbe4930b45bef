"""The "being written" preview: one unit's text at a time, in order, labelled with its unit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import novelkit as nk
from novelkit import JobState
from novelkit._status import LiveStatus, render_status
from novelkit.llm.base import Chunk, Delta, Done, Request, Usage

WORDS = 60


def words_of(unit: str) -> str:
    count = WORDS // 3 if unit == "ch01" else WORDS  # ch01 ends while the others stream on
    return "".join(f"{unit}-{i:02d} " for i in range(count))


class TwoAtOnce:
    """Streams each unit's words slowly, so that two units stream at the same time."""

    name = "two-at-once"

    def __init__(self) -> None:
        self.streaming: set[str] = set()
        self.overlapped = threading.Event()

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.streaming.add(request.unit)
        if len(self.streaming) > 1:
            self.overlapped.set()
        for word in words_of(request.unit).split(" ")[:-1]:
            await asyncio.sleep(0.003)
            yield Delta(word + " ")
        self.streaming.discard(request.unit)
        yield Done(Usage(10, WORDS))

    async def aclose(self) -> None:
        return None


class Echo(nk.Stage):
    """A parallel per-chapter stage whose output is what the model streamed."""

    name = "echo"
    description = "What the model streams, per chapter."
    per_chapter = True
    parallel = True
    path = "echo/{ch}.md"

    async def run(self, ctx: nk.UnitContext, unit: str) -> dict[str, Any]:
        text = await ctx.complete(ctx.request("echo", {}))
        return {self.output_paths(unit)[0]: text}


def test_two_units_streaming_at_once_never_interleave_in_the_preview(
    make_project: Any,
) -> None:
    project: nk.Project = make_project(chapters=3, concurrency=3)
    backend = TwoAtOnce()
    project.backend = backend
    project.pipeline.insert(Echo(), after="premise")
    job = project.run_stage("echo")
    seen: list[nk.JobStatus] = []
    while not job.done():
        status = job.status()
        if status.preview:
            seen.append(status)
    assert job.result(30) is JobState.SUCCEEDED
    assert backend.overlapped.is_set(), "the units never streamed at the same time"
    assert len(seen) > 10
    for status in seen:
        assert status.preview_stage == "echo" and status.preview_unit is not None
        whole = words_of(status.preview_unit)
        assert status.preview in whole, (status.preview_unit, status.preview)
        assert whole.startswith(status.preview), "a unit's text is shown from its start"
    assert len({s.preview_unit for s in seen}) > 1, "the preview moved on to the next unit"


def test_the_shown_unit_keeps_the_preview_until_it_ends() -> None:
    live = LiveStatus(JobState.RUNNING)
    for i in range(5):  # two units stream in turns
        live.add_text("draft", "ch01", f"a{i} ")
        live.add_text("draft", "ch02", f"b{i} ")
        snap = live.snapshot(True)
        assert snap.preview_of == ("draft", "ch01")
        assert snap.preview == "".join(f"a{j} " for j in range(i + 1))
    live.end_text("draft", "ch01")
    snap = live.snapshot(True)
    assert snap.preview_of == ("draft", "ch02")
    assert snap.preview == "b0 b1 b2 b3 b4 ", "the next unit's text, from its start, in order"
    live.restart_text("draft", "ch02")  # its call is retried: the text starts again
    live.add_text("draft", "ch02", "again ")
    assert live.snapshot(True).preview == "again "
    live.end_text("draft", "ch02")
    assert live.snapshot(True).preview == "again ", "with nothing streaming, the last text stays"
    live.add_text("polish", "ch01", "p ")
    assert live.snapshot(True).preview_of == ("polish", "ch01")


def test_the_status_table_labels_the_preview_with_its_stage_and_chapter() -> None:
    status = nk.JobStatus(
        "j1",
        JobState.RUNNING,
        "draft",
        "ch02",
        0.5,
        "running",
        None,
        1,
        2,
        0.0,
        (),
        preview="She lit the candle.\nThe door opened.",
        preview_stage="draft",
        preview_unit="ch02",
    )
    assert "✎ draft · chapter 2: …She lit the candle. The door opened." in render_status(status)
    stopped = nk.JobStatus.from_dict({**status.to_dict(), "state": "paused"})
    assert stopped.preview_unit == "ch02"
    assert "✎" not in render_status(stopped), "a stopped job shows nothing being written"


def test_an_ended_jobs_status_shows_no_stage_running_while_a_later_job_runs(
    slow_project: nk.Project,
) -> None:
    first = slow_project.start()
    deadline = time.monotonic() + 60
    while first.status().stage != "world":
        assert time.monotonic() < deadline, first.status().message
        time.sleep(0.01)
    first.cancel()
    assert first.wait(60) is nk.JobState.CANCELLED
    second = slow_project.start()
    while second.status().stage is None:
        assert time.monotonic() < deadline, second.status().message
        time.sleep(0.01)
    try:
        assert any(s.state is nk.StageState.RUNNING for s in second.status().stages)
        old = first.status()
        assert [s.name for s in old.stages if s.state is nk.StageState.RUNNING] == []
        assert old.stage is None and old.unit is None
    finally:
        second.cancel()
        second.wait(60)
