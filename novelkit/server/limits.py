"""Request hygiene: body size limit, per-key rate limit, security headers, log redaction."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body

__all__ = [
    "LOOPBACK_HOSTS",
    "BodyLimitMiddleware",
    "HostCheckMiddleware",
    "RateLimit",
    "RateLimiter",
    "RedactSecrets",
    "SecurityHeadersMiddleware",
]

DEFAULT_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per key: ``per_second`` sustained, ``burst`` at once."""

    per_second: float = 20.0
    burst: int = 100


class RateLimiter:
    def __init__(self, limit: RateLimit | None) -> None:
        self.limit = limit
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, who: str) -> None:
        """Take one token for ``who`` or raise 429 with ``Retry-After``."""
        limit = self.limit
        if limit is None:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / limit.per_second))
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests for this key; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[who] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # forget idle callers, keep memory bounded
                cutoff = now - limit.burst / limit.per_second
                self._buckets = {k: v for k, v in self._buckets.items() if v[1] > cutoff}


class BodyLimitMiddleware:
    """413 as JSON for a body over ``max_body`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body
            except ValueError:
                too_big = False
            if too_big:
                await _send_json(
                    send,
                    413,
                    error_body("body_too_large", f"the request body is over {self.max_body} bytes"),
                )
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise ApiError(
                        413, "body_too_large", f"the request body is over {self.max_body} bytes"
                    )
            return message

        await self.app(scope, limited, send)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(header: str) -> str:
    """``Host`` without its port, lower-cased: ``[::1]:8765`` → ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") == 1 else header.rstrip(".")


class HostCheckMiddleware:
    """Only requests naming an allowed ``Host`` (DNS rebinding: a page on evil.example that
    resolves to 127.0.0.1 still sends ``Host: evil.example``). ``*`` allows any host."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if header is None or host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        shown = header if len(header) <= 100 and header.isprintable() else "(this host)"
        await _send_json(
            send,
            400,
            error_body(
                "bad_host",
                f"the sidecar does not answer to Host {shown!r}; if that is its name, start it "
                "with --allow-host NAME (or allowed_hosts=[...])",
            ),
        )


class SecurityHeadersMiddleware:
    """nosniff and no-referrer everywhere; the API is never cached; no page may frame us."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                headers.append((b"x-frame-options", b"DENY"))
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


SECRET_PARAMS = re.compile(
    r"((?:^|[?&])(?:ticket|key|api_key|apikey|token|access_token)=)[^&\s\"']*", re.IGNORECASE
)


# a key or ticket by its shape, whatever the parameter is called (?x-api-key=nk_…, a path, …)
SECRET_VALUES = re.compile(r"\b(nk|t)_[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """Hide ticket/key/token values in a URL or log line."""
    return SECRET_VALUES.sub(r"\1_[redacted]", SECRET_PARAMS.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    """A logging filter for uvicorn's loggers: query-string secrets never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
