"""One live feed per project, fanned out to WebSocket clients through bounded queues.

The feed takes persisted events from the project's event bus (a job in this process) and
catches up from the store by ``seq`` (a job in another process, or anything the bus missed),
so every client sees persisted events in ``seq`` order without gaps. Each client owns a
bounded queue: ``progress``, ``delta`` and ``status_update`` messages are coalesced (a slow
client gets fewer, fresher ones); when a queue is full anyway it is emptied and the client is
sent one ``resync`` instead, so memory stays bounded and nobody else waits.
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
_IDLE, _LATER, _NOW = 0, 1, 2


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
    """Bounded, coalescing, never blocks the producer."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
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
        if message.key is not None and message.key in self._by_key:
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
    """Persisted events in order, deltas as they come, status updates after state changes."""

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
        self._scheduled = _IDLE

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.last_seq = self.project.store.last_seq()
        self._subscription = self.project.subscribe(self._from_bus)
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
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
        """On the bus thread: batch events, wake the loop at most once per batch.

        Persisted events are handed over at once; deltas wait up to ``delta_interval`` so a
        fast stream becomes a few merged messages per second instead of one per token.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._inbox_lock:
            self._inbox.append(event)
            urgent = event.seq is not None
            if self._scheduled == _NOW or (self._scheduled == _LATER and not urgent):
                return
            self._scheduled = _NOW if urgent else _LATER
        try:
            if urgent:
                loop.call_soon_threadsafe(self._drain)
            else:
                loop.call_soon_threadsafe(loop.call_later, self.delta_interval, self._drain)
        except RuntimeError:
            pass  # the loop closed between the check and the call: the server is stopping

    def _drain(self) -> None:
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
            self._scheduled = _IDLE
        pending: dict[str, Outgoing] = {}  # deltas merged per stage/unit until the next event
        for event in events:
            if event.seq is None:
                message = Outgoing.from_event(event)
                key = message.key or ""
                pending[key] = pending[key].merged_with(message) if key in pending else message
                continue
            for message in pending.values():
                self._fan_out(message)
            pending.clear()
            if event.seq == self.last_seq + 1:
                self._publish(event)
            elif event.seq > self.last_seq:
                self._wake.set()  # a gap: read the missing events from the store in order
        for message in pending.values():
            self._fan_out(message)

    def _publish(self, event: Event) -> None:
        assert event.seq is not None
        self.last_seq = event.seq
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
        """The job's throttled snapshot (written by whichever process runs it) → status updates."""
        if not self.clients:
            return
        snapshot = self.project.store.snapshot()
        if snapshot != self._snapshot:
            self._snapshot = snapshot
            self.schedule_status()

    def _drop_stalled(self) -> None:
        now = time.monotonic()
        for client in list(self.clients):
            if client.stalled_for(now) > self.stall_timeout:
                log.info("novelkit sidecar: dropping a WebSocket client that stopped reading")
                client.killed.set()
                self.clients.discard(client)
