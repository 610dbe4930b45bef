"""One sequenced event stream, and subscriptions that can never block or crash the job.

Persisted events carry a strictly increasing ``seq`` (assigned by the store); ``delta`` events
(streamed text) are ephemeral and carry ``seq=None``. Each subscriber gets a bounded queue and
its own delivery thread: a slow or failing callback only ever affects itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "EventBus", "Subscription"]

log = logging.getLogger("novelkit")

EPHEMERAL = frozenset({"delta"})


@dataclass(frozen=True)
class Event:
    """``type`` is one of job, stage, unit, progress, call, retry, log, artefact, delta."""

    type: str
    data: dict[str, Any]
    seq: int | None = None
    ts: float = field(default_factory=time.time)
    job_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "job_id": self.job_id,
            **self.data,
        }


Callback = Callable[[Event], object]


class Subscription:
    """A bounded queue of events; pull with :meth:`get` / iteration, or pass a callback."""

    def __init__(self, bus: EventBus, callback: Callback | None, maxsize: int) -> None:
        self._bus = bus
        self._callback = callback
        self._queue: deque[Event] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self._thread: threading.Thread | None = None
        if callback is not None:
            self._thread = threading.Thread(
                target=self._deliver, name="novelkit-events", daemon=True
            )
            self._thread.start()

    def _offer(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._maxsize:
                self._drop_one()
            self._queue.append(event)
            self._cond.notify()

    def _drop_one(self) -> None:
        # a queue that is full loses its oldest delta first, then its oldest event
        for index, queued in enumerate(self._queue):
            if queued.seq is None:
                del self._queue[index]
                break
        else:
            self._queue.popleft()
        self.dropped += 1

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or ``None`` after ``timeout`` seconds or once closed and drained."""
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def _deliver(self) -> None:
        assert self._callback is not None
        while True:
            event = self.get()
            if event is None:
                return
            try:
                self._callback(event)
            except Exception:  # a subscriber must never crash the job
                log.exception("novelkit event subscriber %r failed", self._callback)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callback | None = None, *, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, callback, maxsize)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def publish(self, event: Event) -> None:
        for sub in self._subs:  # copy-on-write list: no lock on the hot path
            sub._offer(event)
