"""A per-backend limit of concurrent requests, requests per minute and tokens per minute.

Requests and tokens are token buckets that refill continuously and hold one second's worth
(at least one request / one call's tokens), so a minute never carries much more than the limit
and a burst never trips the provider's own per-second quantisation.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError

__all__ = ["LIMIT_OPTIONS", "Permit", "RateLimiter"]

LIMIT_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "max_concurrency": int,
    "rpm": (int, float),
    "tpm": (int, float),
}


RAISE_AFTER = 8  # successes per slot before the adaptive limit rises by one


@dataclass
class _Bucket:
    per_minute: float
    level: float
    stamp: float

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_minute / 60)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.per_minute / 60)
        self.stamp = now

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at the capacity, so huge calls still pass) is there."""
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing * 60 / self.per_minute)


@dataclass
class Permit:
    """What a request holds while it runs; ``settle`` returns unused estimated tokens."""

    limiter: RateLimiter
    estimated_tokens: int

    def settle(self, actual_tokens: int) -> None:
        bucket = self.limiter._tokens
        if bucket is not None and actual_tokens < self.estimated_tokens:
            bucket.level = min(
                bucket.capacity, bucket.level + self.estimated_tokens - actual_tokens
            )
            self.estimated_tokens = actual_tokens


class RateLimiter:
    """Async limiter; ``None`` for a limit means unlimited. Clock and sleep are injectable."""

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        for name, value in (("max_concurrency", max_concurrency), ("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ConfigError(f"backend_options.{name} = {value!r} must be > 0")
        self.max_concurrency = max_concurrency
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _Bucket(rpm, max(1.0, rpm / 60), now) if rpm else None
        self._tokens = _Bucket(tpm, max(1.0, tpm / 60), now) if tpm else None
        # a semaphore belongs to one event loop; a backend may outlive a job's loop
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._semaphores = weakref.WeakKeyDictionary()
        self.in_flight = 0
        # the adaptive cap: lowered when the server drops concurrent streams, raised again
        # after a run of calls that succeed; None while nothing has been dropped
        self.limit: int | None = None
        self.slots: int | None = None  # what the server said it serves at once
        self._good = 0
        self._drops = 0  # each drop doubles the successes needed before the limit rises
        self._freed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Condition]
        self._freed = weakref.WeakKeyDictionary()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RateLimiter:
        picked = {key: options[key] for key in LIMIT_OPTIONS if key in options}
        return cls(**picked)

    def __repr__(self) -> str:
        return (
            f"RateLimiter(max_concurrency={self.max_concurrency}, rpm={self.rpm}, tpm={self.tpm})"
        )

    def _semaphore(self) -> asyncio.Semaphore | None:
        if self.max_concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
        return semaphore

    async def _take(self, tokens: int) -> None:
        buckets = [
            (b, n) for b, n in ((self._requests, 1), (self._tokens, tokens)) if b is not None
        ]
        while True:
            now = self._clock()
            for bucket, _ in buckets:
                bucket.refill(now)
            wait = max((bucket.wait(amount) for bucket, amount in buckets), default=0.0)
            if wait <= 0:
                for bucket, amount in buckets:
                    bucket.level -= amount
                return
            await self._sleep(wait)

    def learn_slots(self, slots: int) -> None:
        """The server said how many requests it serves at once."""
        self.slots = max(1, slots)
        cap = self.slots if self.max_concurrency is None else min(self.slots, self.max_concurrency)
        self.limit = cap

    def dropped(self) -> int | None:
        """A stream was dropped while others ran: send fewer at once. Returns the new limit,
        or None when there was nothing to lower (no other request in flight)."""
        if self.in_flight <= 1:
            return None
        current = self.in_flight if self.limit is None else min(self.limit, self.in_flight)
        self.limit = max(1, current - 1)
        self._good = 0
        self._drops += 1
        return self.limit

    def succeeded(self) -> None:
        """A call finished: after a run of successes, allow one more at once again."""
        if self.limit is None:
            return
        self._good += 1
        if self._good >= RAISE_AFTER * self.limit * 2 ** max(0, self._drops - 1):
            self._good = 0
            ceiling = min(c for c in (self.max_concurrency, self.slots, 1 << 30) if c)
            if self.limit < ceiling:
                self.limit += 1

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        condition = self._freed.get(loop)
        if condition is None:
            condition = self._freed[loop] = asyncio.Condition()
        return condition

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[Permit]:
        """Hold one request slot for the duration of a call that may use ``tokens`` tokens."""
        semaphore = self._semaphore()
        if semaphore is not None:
            await semaphore.acquire()
        try:
            if self.limit is not None:
                condition = self._condition()
                async with condition:
                    await condition.wait_for(
                        lambda: self.limit is None or self.in_flight < self.limit
                    )
                    self.in_flight += 1
            else:
                self.in_flight += 1
            try:
                await self._take(tokens)
                yield Permit(self, tokens)
            finally:
                self.in_flight -= 1
                freed = self._freed.get(asyncio.get_running_loop())
                if freed is not None:
                    async with freed:
                        freed.notify_all()
        finally:
            if semaphore is not None:
                semaphore.release()
