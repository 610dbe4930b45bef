"""Scheduling units of work across stages: a dependency graph, prioritised slots, a graph run.

Stage barriers would make chapter 1's continuity check wait for the last chapter's draft. The
graph instead lets every unit start as soon as the units it reads are done, so checking,
revising and polishing early chapters overlaps with drafting later ones. The slots give
earlier stages priority, which keeps the sequential draft chain (the critical path) moving.
:class:`GraphRun` runs the graph; what running and saving a unit means is the job's
(:class:`UnitWork`).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
from collections.abc import Awaitable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._runner import complete

if TYPE_CHECKING:
    from ._pipeline import Stage

__all__ = ["Gate", "GraphOutcome", "GraphRun", "Node", "PrioritySlots", "UnitWork", "unit_graph"]

P = TypeVar("P")

Key = tuple[str, str]


@dataclass
class Node:
    stage: Stage
    unit: str
    priority: tuple[int, int]
    deps: list[Key] = field(default_factory=list)
    ready: Gate = field(default_factory=lambda: Gate())  # outputs readable (maybe unsaved)
    done: bool = False  # finished: saved, skipped or failed
    ok: bool = False  # its outputs exist (on disk or staged)
    saved: bool = False  # its outputs are on disk and it is marked done
    saving: Future[bool] | None = None  # its save, queued on the store's writer


def unit_graph(stages: Sequence[Stage], units: dict[str, list[str]]) -> dict[Key, Node]:
    """One node per (stage, unit); edges from the units whose outputs it reads.

    ``units`` gives each stage's units. Inputs from stages outside ``stages`` are already done.
    A non-parallel per-chapter stage also waits for its own previous unit.
    """
    names = {s.name for s in stages}
    producer: dict[str, Key] = {}
    for stage in stages:
        for unit in units[stage.name]:
            for path in stage.output_paths(unit):
                producer[path] = (stage.name, unit)
    by_name = {s.name: s for s in stages}
    nodes: dict[Key, Node] = {}
    for index, stage in enumerate(stages):
        previous: str | None = None
        for position, unit in enumerate(units[stage.name]):
            deps: list[Key] = []
            for name in stage.inputs:
                if name not in names:
                    continue
                source = by_name[name]
                if source.per_chapter and stage.per_chapter:
                    if unit in units[name]:
                        deps.append((name, unit))
                else:
                    deps += [(name, other) for other in units[name]]
            deps += [producer[p] for p in stage.extra_inputs(unit) if p in producer]
            if stage.per_chapter and not stage.parallel and previous is not None:
                deps.append((stage.name, previous))
            node = Node(stage, unit, (index, position), list(dict.fromkeys(deps)))
            nodes[(stage.name, unit)] = node
            previous = unit
    return nodes


class Gate:
    """An event whose waiters wake lowest priority value first.

    ``asyncio.Event`` wakes waiters in arrival order; when a draft finishes, the next draft
    (the critical path) should run before the checks of the chapter just written.
    """

    def __init__(self) -> None:
        self._open = False
        self._waiters: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    async def wait(self, priority: tuple[int, int] = (0, 0)) -> None:
        if self._open:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._counter), future))
        await future

    def set(self) -> None:
        self._open = True
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)


class PrioritySlots:
    """A semaphore whose waiters are served lowest priority value first."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    async def acquire(self, priority: tuple[int, int]) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._counter), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: pass the slot on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


class UnitWork(Protocol[P]):
    """The job's side of a graph run: what planning, running and saving a unit means."""

    def plan(self, stage: Stage, units: list[str]) -> list[str]:
        """Those of ``units`` (all of the stage's) not done yet: they run without a freshness
        check."""

    def units_of(self, stage: Stage) -> list[str]: ...

    def stop_requested(self) -> bool: ...

    def save_failed(self) -> bool: ...

    def needs_run(self, stage: Stage, unit: str) -> bool: ...

    def begin_stage(self, stage: Stage, units: int) -> None: ...

    def end_stage(self, stage: Stage, ok: bool) -> None:
        """``ok``: every unit of the stage is saved; else one of them failed."""

    async def produce(self, stage: Stage, unit: str) -> P:
        """Run the unit: its outputs readable (staged), not yet on disk."""

    def save(self, produced: P, after: list[Future[bool]]) -> Future[bool]:
        """Queue the save behind ``after``; the future says whether it was saved."""

    def track(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        """Start a unit's task where control (pause now, cancel) can reach it."""


@dataclass
class GraphOutcome:
    failures: list[BaseException]  # a unit failed (the first is the cause)
    interrupted: bool  # some unit stopped or was cancelled before it ended
    unsaved: list[str]  # "stage unit" of every unit that did not end saved


class GraphRun(Generic[P]):
    """Every unit of ``stages`` as soon as the units it reads are ready, within ``concurrency``.

    The sequential chain (the draft) is the critical path: it gets a lane of its own so
    parallel units never make it wait; together they stay within ``concurrency``. The stages
    before the first per-chapter one decide how many chapters there are: the per-chapter units
    join the graph as soon as those are ready (saved or not). ``stop`` is the exception a unit
    raises when control stops it, which is not a failure.
    """

    def __init__(
        self,
        work: UnitWork[P],
        stages: list[Stage],
        concurrency: int,
        stop: type[BaseException],
    ) -> None:
        self.work = work
        self.stages = stages
        self.stop = stop
        chained = any(s.per_chapter and not s.parallel for s in stages)
        lane = chained and concurrency > 1
        self.shared = PrioritySlots(concurrency - 1 if lane else concurrency)
        self.lane = PrioritySlots(1) if lane else self.shared
        self.nodes: dict[Key, Node] = {}
        self.units: dict[str, list[str]] = {}
        self.remaining: dict[str, int] = {}  # stage → its nodes not finished
        self.started: set[str] = set()
        self.failed: list[BaseException] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.to_run: set[Key] = set()  # not done when the graph was built: run them

    async def run(self) -> GraphOutcome:
        stages = self.stages
        first = next((i for i, s in enumerate(stages) if s.per_chapter), len(stages))
        if first:
            self._add(stages[:first])
        if first < len(stages):
            planning = list(self.nodes.values())
            for node in planning:
                await node.ready.wait()
            if not self.failed and not self.work.stop_requested():
                if all(n.ok for n in planning):
                    self._add(stages[first:])
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        return GraphOutcome(
            failures=self.failed,
            interrupted=any(isinstance(r, BaseException) for r in results),
            unsaved=[f"{n.stage.name} {n.unit}" for n in self.nodes.values() if not n.saved],
        )

    def _add(self, part: list[Stage]) -> None:
        work = self.work
        self.units.update({s.name: work.units_of(s) for s in part})
        for stage in part:
            todo = work.plan(stage, self.units[stage.name])
            self.to_run.update((stage.name, unit) for unit in todo)
        upto = self.stages[: self.stages.index(part[-1]) + 1]
        for key, node in unit_graph(upto, self.units).items():
            if key in self.nodes:
                continue  # already running
            self.nodes[key] = node
            self.remaining[node.stage.name] = self.remaining.get(node.stage.name, 0) + 1
            task = work.track(self._run(node))
            task.add_done_callback(functools.partial(self._unstarted, node))
            self.tasks.append(task)

    def _halted(self) -> bool:
        return bool(self.failed) or self.work.save_failed() or self.work.stop_requested()

    def _finish(self, node: Node, ok: bool) -> None:
        node.ok = node.saved = ok
        node.ready.set()
        node.done = True
        name = node.stage.name
        self.remaining[name] -= 1
        if self.remaining[name] or name not in self.started:
            return
        if self.failed or self.work.stop_requested():
            return
        if all(n.ok for n in self.nodes.values() if n.stage.name == name):
            self.work.end_stage(node.stage, True)

    def _unstarted(self, node: Node, task: asyncio.Task[None]) -> None:
        if not node.done:  # cancelled before its first step: _run() never began
            self._finish(node, False)

    def _fail(self, stage: Stage, exc: BaseException) -> None:
        self.failed.append(exc)
        self.work.end_stage(stage, False)

    async def _run(self, node: Node) -> None:
        ok = False
        try:
            for dep in node.deps:
                await self.nodes[dep].ready.wait(node.priority)
            if self._halted() or not all(self.nodes[d].ok for d in node.deps):
                return
            stage, unit = node.stage, node.unit
            # a unit done before the run may have gone stale as this run redid its inputs
            if (stage.name, unit) not in self.to_run and not self.work.needs_run(stage, unit):
                ok = True
                return
            slots = self.lane if stage.per_chapter and not stage.parallel else self.shared
            await slots.acquire(node.priority)
            try:
                if self._halted():
                    return
                if stage.name not in self.started:
                    self.started.add(stage.name)
                    self.work.begin_stage(stage, self.remaining[stage.name])
                try:
                    produced = await self.work.produce(stage, unit)
                except (self.stop, asyncio.CancelledError):
                    raise
                except BaseException as exc:
                    self._fail(stage, exc)
                    raise
            finally:
                slots.release()
            # the save is queued behind the saves of what it read (the writer keeps that
            # order) and overlaps whatever runs next: dependants start from the staged
            # outputs meanwhile. It completes even if the job is paused or cancelled.
            after = [self.nodes[d].saving for d in node.deps]
            node.saving = self.work.save(produced, [f for f in after if f is not None])
            node.ok = True
            node.ready.set()
            try:
                ok = await complete(asyncio.wrap_future(node.saving))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._fail(stage, exc)
                raise
        finally:
            self._finish(node, ok)  # dependants must always hear about this node
