"""``Idempotency-Key`` for POSTs that start work: one execution per key, the same answer again.

Keys are scoped to the API key that sent them and to the route. The same key with another
body is a client bug and gets 422. Answers are kept for ``ttl`` seconds (at most ``capacity``);
server errors and 429 are not kept, so a retry runs again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response

from .errors import ApiError

__all__ = ["IdempotencyCache"]

_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass
class _Entry:
    fingerprint: str
    created: float
    result: asyncio.Future[tuple[int, bytes, list[tuple[bytes, bytes]]]]


class IdempotencyCache:
    def __init__(self, ttl: float = 24 * 3600, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()

    async def run(
        self,
        scope_key: str,
        route: str,
        key: str,
        body: bytes,
        call: Callable[[], Awaitable[Response]],
    ) -> Response:
        if not _VALID_KEY.match(key):
            raise ApiError(
                422,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1–200 printable ASCII characters without spaces",
            )
        fingerprint = hashlib.sha256(body).hexdigest()
        ident = (scope_key, route, key)
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get(ident)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request body; "
                    "use a new key for a new request",
                )
            status, content, headers = await asyncio.shield(entry.result)
            response = Response(content, status_code=status)
            response.raw_headers = [*headers, (b"idempotent-replayed", b"true")]
            return response
        future: asyncio.Future[tuple[int, bytes, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._entries[ident] = _Entry(fingerprint, now, future)
        try:
            response = await call()
        except BaseException as exc:
            self._entries.pop(ident, None)
            future.set_exception(exc)
            future.exception()  # retrieved: waiting duplicates re-raise it themselves
            raise
        content = bytes(response.body)
        headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-length"]
        future.set_result((response.status_code, content, headers))
        if response.status_code >= 500 or response.status_code == 429:
            self._entries.pop(ident, None)
        return response

    def _expire(self, now: float) -> None:
        while self._entries:
            ident, entry = next(iter(self._entries.items()))
            if now - entry.created < self.ttl and len(self._entries) <= self.capacity:
                break
            if not entry.result.done():
                break
            del self._entries[ident]
