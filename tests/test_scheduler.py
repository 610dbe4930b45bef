"""Units start as soon as what they read is done, within `concurrency`, drafts in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import novelkit as nk
from novelkit import JobState
from novelkit._scheduler import PrioritySlots, unit_graph
from novelkit.llm.base import Chunk, Request
from novelkit.llm.offline import OfflineBackend
from novelkit.stages import default_stages


def unit_events(project: nk.Project) -> list[tuple[str, str, str]]:
    return [
        (e.data["stage"], e.data["unit"], e.data["state"])
        for e in project.store.events_since(0, 100_000)
        if e.type == "unit"
    ]


def test_early_chapters_are_checked_while_later_ones_are_drafted(
    make_project: Callable[..., nk.Project],
) -> None:
    project = make_project(chapters=6, concurrency=3, backend_options={"latency": 0.01})
    assert project.start().wait(60) is JobState.SUCCEEDED
    events = unit_events(project)
    polished_ch1 = events.index(("polish", "ch01", "done"))
    drafted_ch6 = events.index(("draft", "ch06", "done"))
    assert polished_ch1 < drafted_ch6, "chapter 1 was polished before the last chapter was drafted"
    drafts = [u for s, u, state in events if s == "draft" and state == "done"]
    assert drafts == [f"ch{n:02d}" for n in range(1, 7)], "drafts run in chapter order"


class PeakBackend:
    """The offline backend, counting how many requests are in flight at once."""

    name = "peak"

    def __init__(self, **options: Any) -> None:
        self.inner = OfflineBackend(**options)
        self.in_flight = 0
        self.peak = 0

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            async for chunk in self.inner.stream(request):
                yield chunk
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def test_never_more_requests_in_flight_than_concurrency(
    make_project: Callable[..., nk.Project],
) -> None:
    backend = PeakBackend(latency=0.005)
    project = make_project(chapters=6, concurrency=2, backend_instance=backend)
    assert project.start().wait(60) is JobState.SUCCEEDED
    assert backend.peak == 2


def test_a_unit_is_marked_done_only_after_the_units_it_read(
    make_project: Callable[..., nk.Project],
) -> None:
    # dependants start from outputs still being saved, but a crash must never leave a unit
    # done on top of inputs that are not: done marks follow the dependency order
    project = make_project(chapters=6, concurrency=4, backend_options={"latency": 0.002})
    assert project.start().wait(60) is JobState.SUCCEEDED
    done = {
        (e.data["stage"], e.data["unit"]): int(e.seq or 0)
        for e in project.store.events_since(0, 100_000)
        if e.type == "unit" and e.data["state"] == "done"
    }
    stages = list(project.pipeline)
    nodes = unit_graph(stages, {s.name: project.units_of(s) for s in stages})
    assert set(done) == set(nodes)
    for key, node in nodes.items():
        for dep in node.deps:
            assert done[dep] < done[key], f"{key} was marked done before {dep}"


def test_graph_edges_follow_inputs_and_the_draft_chain() -> None:
    stages = default_stages()[5:]  # scenes … assemble
    units = {s.name: (["all"] if not s.per_chapter else ["ch01", "ch02"]) for s in stages}
    nodes = unit_graph(stages, units)
    assert nodes[("draft", "ch02")].deps == [("scenes", "ch02"), ("draft", "ch01")]
    assert nodes[("continuity", "ch01")].deps == [("draft", "ch01")]
    assert set(nodes[("assemble", "all")].deps) >= {
        ("polish", "ch01"),
        ("polish", "ch02"),
        ("metadata", "all"),
    }


def test_priority_slots_serve_the_lowest_priority_first() -> None:
    async def scenario() -> list[tuple[int, int]]:
        slots = PrioritySlots(1)
        await slots.acquire((0, 0))
        order: list[tuple[int, int]] = []

        async def waiter(priority: tuple[int, int]) -> None:
            await slots.acquire(priority)
            order.append(priority)
            slots.release()

        tasks = [asyncio.create_task(waiter(p)) for p in [(3, 0), (1, 5), (2, 0), (1, 1)]]
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(waiter((0, 9)))
        await asyncio.sleep(0)
        cancelled.cancel()
        slots.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [(1, 1), (1, 5), (2, 0), (3, 0)]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_pause_and_cancel_inside_the_graph(
    make_project: Callable[..., nk.Project], concurrency: int
) -> None:
    project = make_project(
        chapters=4, concurrency=concurrency, backend_options={"tokens_per_second": 3000}
    )
    job = project.start()
    end = time.monotonic() + 30
    while not any(s == "draft" and st == "running" for s, _u, st in unit_events(project)):
        assert time.monotonic() < end
        time.sleep(0.01)
    job.pause(now=True)
    assert job.wait(5) is JobState.PAUSED
    job.resume()
    time.sleep(0.2)
    job.cancel()
    assert job.wait(5) is JobState.CANCELLED
    assert project.start().wait(60) is JobState.SUCCEEDED


class FakeWork:
    """A UnitWork that produces and saves at once, recording what happened."""

    def __init__(self, chapters: int, fail: tuple[str, str] | None = None) -> None:
        self.chapters = [f"ch{n:02d}" for n in range(1, chapters + 1)]
        self.fail = fail
        self.stop_after: int | None = None
        self.produced: list[tuple[str, str]] = []
        self.failed_at = -1  # how many units were produced when the failing one broke
        self.ended: list[tuple[str, bool]] = []

    def plan(self, stage: nk.Stage, units: list[str]) -> list[str]:
        return units

    def units_of(self, stage: nk.Stage) -> list[str]:
        return self.chapters if stage.per_chapter else ["all"]

    def stop_requested(self) -> bool:
        return self.stop_after is not None and len(self.produced) >= self.stop_after

    def save_failed(self) -> bool:
        return False

    def needs_run(self, stage: nk.Stage, unit: str) -> bool:
        return True

    def begin_stage(self, stage: nk.Stage, units: int) -> None:
        pass

    def end_stage(self, stage: nk.Stage, ok: bool) -> None:
        self.ended.append((stage.name, ok))

    async def produce(self, stage: nk.Stage, unit: str) -> tuple[str, str]:
        await asyncio.sleep(0)
        if (stage.name, unit) == self.fail:
            self.failed_at = len(self.produced)
            raise RuntimeError(f"{stage.name} {unit} broke")
        self.produced.append((stage.name, unit))
        return (stage.name, unit)

    def save(self, produced: tuple[str, str], after: list[Any]) -> Any:
        from concurrent.futures import Future

        saved: Future[bool] = Future()
        saved.set_result(all(f.result() for f in after))
        return saved

    def track(self, coro: Any) -> asyncio.Task[None]:
        return asyncio.ensure_future(coro)


def run_graph(work: FakeWork, concurrency: int = 3) -> Any:
    from novelkit._scheduler import GraphRun

    class Stop(Exception):
        pass

    return asyncio.run(GraphRun(work, default_stages(), concurrency, Stop).run())


def test_a_graph_run_produces_every_unit_once_after_what_it_reads() -> None:
    work = FakeWork(chapters=3)
    outcome = run_graph(work)
    stages = default_stages()
    nodes = unit_graph(stages, {s.name: work.units_of(s) for s in stages})
    assert sorted(work.produced) == sorted(nodes)  # each unit exactly once
    at = {key: i for i, key in enumerate(work.produced)}
    assert all(at[dep] < at[key] for key, node in nodes.items() for dep in node.deps)
    assert sorted(work.ended) == sorted((s.name, True) for s in stages)  # each once, ok
    assert not outcome.failures and not outcome.interrupted and not outcome.unsaved


def test_a_graph_run_stops_at_a_failure_and_never_runs_what_read_it() -> None:
    work = FakeWork(chapters=3, fail=("continuity", "ch02"))
    outcome = run_graph(work, concurrency=3)
    assert [str(e) for e in outcome.failures] == ["continuity ch02 broke"]
    assert len(work.produced) - work.failed_at <= 3  # only units already in flight finish
    assert ("continuity", False) in work.ended
    assert ("revision", "ch02") not in work.produced and ("assemble", "all") not in work.produced
    assert "continuity ch02" in outcome.unsaved and outcome.interrupted


def test_a_graph_run_starts_nothing_once_a_stop_is_requested() -> None:
    work = FakeWork(chapters=3)
    work.stop_after = 8  # the planning stages, scenes of a chapter or two, a draft: then stop
    outcome = run_graph(work, concurrency=3)
    assert 8 <= len(work.produced) <= 8 + 3  # only the units already in flight (3) finish
    assert outcome.unsaved and not outcome.failures
    assert work.ended  # the planning stages at least finished before the stop
    by_name = {s.name: s for s in default_stages()}
    for name, ok in work.ended:  # a stage reported done has every unit produced
        units = [u for s, u in work.produced if s == name]
        assert ok and sorted(units) == work.units_of(by_name[name])
    assert ("assemble", "all") not in work.produced
