"""Scheduling units of work across stages: a dependency graph and prioritised slots.

Stage barriers would make chapter 1's continuity check wait for the last chapter's draft. The
graph instead lets every unit start as soon as the units it reads are done, so checking,
revising and polishing early chapters overlaps with drafting later ones. The slots give
earlier stages priority, which keeps the sequential draft chain (the critical path) moving.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._pipeline import Stage

__all__ = ["Gate", "Node", "PrioritySlots", "unit_graph"]

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
