"""One live feed per project, fanned out to WebSocket clients through bounded queues.

The feed takes persisted events from the project's event bus (a job in this process) and
catches up from the store by ``seq`` (a job in another process, or anything the bus missed),
so every client sees persisted events in ``seq`` order without gaps. Streamed text (``delta``)
is merged per stage and unit and sent at most once per ``delta_interval``, one message
serialised once for every client; an event about a unit first flushes that unit's text, so
nobody sees text after the event that ends it. Each client owns a bounded queue:
``progress``, ``delta`` and ``status_update`` messages are coalesced (a slow client gets
fewer, fresher ones); when a queue is full anyway it is emptied and the client is sent one
``resync`` instead, so memory stays bounded and nobody else waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._events import Event

if TYPE_CHECKING:
    from .._events import Subscription
    from .._project import Project

__all__ = ["Client", "ClientQueue", "Outgoing", "ProjectFeed"]

log = logging.getLogger("novelkit.server")

DELTA_TAIL = 2000
RESYNC = "resync"


class Outgoing:
    """A server → client message, serialised once however many clients it goes to."""

    __slots__ = ("key", "payload", "_text")

    def __init__(self, payload: dict[str, Any], key: str | None = None) -> None:
        self.payload = payload
        self.key = key
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps(self.payload, ensure_ascii=False, separators=(",", ":"))
        return self._text

    @classmethod
    def from_event(cls, event: Event) -> Outgoing:
        payload = event.to_dict()
        if event.type == "delta":
            return cls(payload, f"delta:{payload.get('stage')}:{payload.get('unit')}")
        if event.type == "progress":
            return cls(payload, f"progress:{payload.get('stage')}")
        return cls(payload)

    def merged_with(self, newer: Outgoing) -> Outgoing:
        """The message a client gets instead of this one followed by ``newer`` (same key)."""
        if self.payload.get("type") != "delta":
            return newer
        text = str(self.payload.get("text", "")) + str(newer.payload.get("text", ""))
        payload = {**newer.payload, "text": text[-DELTA_TAIL:]}
        if len(text) > DELTA_TAIL or self.payload.get("truncated"):
            payload["truncated"] = True
        return Outgoing(payload, newer.key)


class ClientQueue:
    """Bounded, coalescing, never blocks the producer.

    Deltas and status updates replace or extend a queued one of the same key at once; a
    persisted ``progress`` event (it has a ``seq``) does so only once the client is behind
    (``backlog`` messages waiting), so a client that keeps up never misses a seq.
    """

    def __init__(self, maxsize: int = 1000, backlog: int = 64) -> None:
        self.maxsize = maxsize
        self.backlog = min(backlog, maxsize // 2)
        self._items: dict[int, Outgoing] = {}
        self._by_key: dict[str, int] = {}
        self._next = 0
        self._ready = asyncio.Event()
        self.resync_pending = False
        self.overflows = 0
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Outgoing) -> None:
        if (
            message.key is not None
            and message.key in self._by_key
            and (message.payload.get("seq") is None or len(self._items) >= self.backlog)
        ):
            older = self._items.pop(self._by_key.pop(message.key))
            message = older.merged_with(message)
            self.coalesced += 1
        elif len(self._items) >= self.maxsize:
            self._items.clear()
            self._by_key.clear()
            self.resync_pending = True
            self.overflows += 1
            self._ready.set()
            return
        self._next += 1
        self._items[self._next] = message
        if message.key is not None:
            self._by_key[message.key] = self._next
        self._ready.set()

    async def get(self) -> Outgoing | str:
        """The next message, or :data:`RESYNC` when the queue overflowed."""
        while True:
            if self.resync_pending:
                self.resync_pending = False
                return RESYNC
            if self._items:
                ident = next(iter(self._items))
                message = self._items.pop(ident)
                if message.key is not None and self._by_key.get(message.key) == ident:
                    del self._by_key[message.key]
                return message
            self._ready.clear()
            await self._ready.wait()


class Client:
    """One WebSocket connection's queue and liveness."""

    def __init__(self, maxsize: int) -> None:
        self.queue = ClientQueue(maxsize)
        self.sending_since: float | None = None
        self.killed = asyncio.Event()

    def stalled_for(self, now: float) -> float:
        return 0.0 if self.sending_since is None else now - self.sending_since


StatusFn = Callable[[], Awaitable[dict[str, Any]]]


class ProjectFeed:
    """Persisted events in order, deltas a few times a second, status updates after changes."""

    def __init__(
        self,
        project: Project,
        status: StatusFn,
        *,
        poll_interval: float = 0.2,
        stall_timeout: float = 30.0,
        delta_interval: float = 0.1,
    ) -> None:
        self.project = project
        self.status = status
        self.poll_interval = poll_interval
        self.stall_timeout = stall_timeout
        self.delta_interval = delta_interval
        self.clients: set[Client] = set()
        self.last_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._subscription: Subscription | None = None
        self._poller: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._snapshot: dict[str, Any] | None = None
        self._inbox: list[Event] = []
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False  # persisted events wait in the inbox; a drain is on its way
        self._flush_scheduled = False  # deltas wait; a flush is armed
        self._deltas: dict[tuple[Any, Any], Outgoing] = {}  # (stage, unit) → text merged so far
        self._stopped = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.last_seq = self.project.store.last_seq()
        self._subscription = self.project.subscribe(self._from_bus)
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        self._stopped = True  # a drain or flush already scheduled on the loop does nothing
        if self._subscription is not None:
            self._subscription.close()
        for task in (self._poller, self._status_task):
            if task is not None:
                task.cancel()
        for client in list(self.clients):
            client.killed.set()

    def add(self, client: Client) -> int:
        """Register a client; returns the last seq it will not get live (replay up to it)."""
        self.clients.add(client)
        return self.last_seq

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    # -- intake -----------------------------------------------------------------------------

    def _from_bus(self, event: Event) -> None:
        """On the bus thread: queue the event, wake the loop at most once per batch.

        A persisted event is drained at once; the first delta of a batch arms a flush
        ``delta_interval`` later, so a fast stream costs the loop a few wake-ups a second.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._inbox_lock:
            self._inbox.append(event)
            if event.seq is not None:
                if self._drain_scheduled:
                    return
                self._drain_scheduled = True
                callback = self._drain
            else:
                if self._flush_scheduled:
                    return
                self._flush_scheduled = True
                callback = self._arm_flush
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # the loop closed between the check and the call: the server is stopping

    def _arm_flush(self) -> None:
        assert self._loop is not None
        self._loop.call_later(self.delta_interval, self._flush)

    def _drain(self) -> None:
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
            self._drain_scheduled = False
        if self._stopped:
            return
        for event in events:
            if event.seq is None:
                self._merge_delta(event)
            elif event.seq == self.last_seq + 1:
                self._publish(event)
            elif event.seq > self.last_seq:
                self._wake.set()  # a gap: read the missing events from the store in order

    def _flush(self) -> None:
        with self._inbox_lock:
            self._flush_scheduled = False
        self._drain()
        deltas, self._deltas = self._deltas, {}
        for message in deltas.values():
            self._fan_out(message)

    def _merge_delta(self, event: Event) -> None:
        message = Outgoing.from_event(event)
        where = (event.data.get("stage"), event.data.get("unit"))
        pending = self._deltas.get(where)
        self._deltas[where] = message if pending is None else pending.merged_with(message)

    def _flush_deltas_before(self, event: Event) -> None:
        """Text streamed for a unit goes out before any event that says the unit, its stage or
        the job has moved on."""
        if not self._deltas:
            return
        stage, unit = event.data.get("stage"), event.data.get("unit")
        if event.type == "job":
            due = list(self._deltas)
        elif unit is not None:
            due = [(stage, unit)] if (stage, unit) in self._deltas else []
        elif event.type == "stage":
            due = [where for where in self._deltas if where[0] == stage]
        else:
            return
        for where in due:
            self._fan_out(self._deltas.pop(where))

    def _publish(self, event: Event) -> None:
        assert event.seq is not None
        self.last_seq = event.seq
        self._flush_deltas_before(event)
        self._fan_out(Outgoing.from_event(event))
        if event.type in ("job", "stage"):
            self.schedule_status()

    def _fan_out(self, message: Outgoing) -> None:
        for client in self.clients:
            client.queue.put(message)

    def schedule_status(self) -> None:
        if self._status_task is None or self._status_task.done():
            self._status_task = asyncio.create_task(self._send_status())

    async def _send_status(self) -> None:
        try:
            status = await self.status()
        except Exception:
            log.exception("novelkit sidecar: could not compute the status")
            return
        self._fan_out(Outgoing({"type": "status_update", "status": status}, "status_update"))

    async def _poll(self) -> None:
        store = self.project.store
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while True:
                    events = store.events_since(self.last_seq, 500)
                    for event in events:
                        if event.seq is not None and event.seq > self.last_seq:
                            self._publish(event)
                    if len(events) < 500:
                        break
                self._follow_remote_snapshot()
            except Exception:
                log.exception("novelkit sidecar: reading events failed; retrying")
            self._drop_stalled()

    def _follow_remote_snapshot(self) -> None:
        """A job in another process: its throttled snapshot (status, preview) → status updates.

        A job in this process needs none: its deltas and events come over the bus.
        """
        if not self.clients:
            return
        snapshot = self.project.store.snapshot()
        if snapshot == self._snapshot:
            return
        self._snapshot = snapshot
        job = self.project.job
        if job is None or not (job.local and job.state.active):
            self.schedule_status()

    def _drop_stalled(self) -> None:
        now = time.monotonic()
        for client in list(self.clients):
            if client.stalled_for(now) > self.stall_timeout:
                log.info("novelkit sidecar: dropping a WebSocket client that stopped reading")
                client.killed.set()
                self.clients.discard(client)
