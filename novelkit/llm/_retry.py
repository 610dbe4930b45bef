"""Retries for the HTTP backends: exponential backoff with full jitter, honouring Retry-After.

A backend makes one attempt as an async iterator of chunks that raises
``TransientBackendError`` (retry) or ``BackendConfigError`` (fail fast). ``with_retries`` runs
attempts until one finishes, yielding ``Retrying`` before each wait so the consumer discards
the partial text and shows "retrying in N s (attempt k/n)".
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import BackendConfigError, BackendError, ConfigError, TransientBackendError
from .base import Chunk, Retrying

__all__ = [
    "RETRY_OPTIONS",
    "RetryPolicy",
    "error_for_status",
    "parse_retry_after",
    "with_retries",
]

RETRY_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "max_attempts": int,
    "base_delay": (int, float),
    "max_delay": (int, float),
}

# 408 request timeout, 409 lock conflict, 425 too early, 429 rate limit, 529 Anthropic overloaded
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait. ``sleep`` and ``jitter`` are injectable for tests."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"backend_options.max_attempts = {self.max_attempts} must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigError("backend_options.base_delay and max_delay must be >= 0 seconds")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RetryPolicy:
        picked = {key: options[key] for key in RETRY_OPTIONS if key in options}
        return cls(**picked)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based); the server's Retry-After wins."""
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * self.jitter()


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str],
    key_setting: str,
    model: str,
    base_url: str,
    code: str | None = None,
) -> BackendError:
    """Map an HTTP error status to the error novelkit raises (transient ones are retried)."""
    where = f"{model!r} on {base_url}"
    if status == 401:
        return BackendConfigError(
            f"{key_setting} is missing or wrong: {base_url} answered 401 Unauthorized ({detail})"
        )
    if status == 403:
        return BackendConfigError(
            f"the key in {key_setting} is not allowed to use {where} (403 Forbidden: {detail}); "
            "check the key's permissions or choose another `model` in novel.toml"
        )
    if status == 404:
        return BackendConfigError(
            f"model {model!r} not found on {base_url} (404: {detail}); set `model` in novel.toml "
            "to a model the server offers, and check that `base_url` is the API root "
            "(OpenAI-compatible servers usually end in /v1)"
        )
    if status == 429 and code == "insufficient_quota":
        return BackendConfigError(
            f"the account behind {key_setting} has no quota left ({detail}); add credit or use "
            "another key — the job can be resumed afterwards"
        )
    if status in _TRANSIENT_STATUS or status >= 500:
        return TransientBackendError(
            f"{base_url} answered {status} ({detail})", retry_after=parse_retry_after(headers)
        )
    return BackendError(f"{base_url} rejected the request for {where} with {status}: {detail}")


async def with_retries(
    attempt: Callable[[], AsyncIterator[Chunk]],
    policy: RetryPolicy,
    *,
    what: str,
) -> AsyncIterator[Chunk]:
    """Run ``attempt()`` until one completes; ``what`` names the call in the final error."""
    for number in range(1, policy.max_attempts + 1):
        try:
            async for chunk in attempt():
                yield chunk
            return
        except TransientBackendError as exc:
            if number == policy.max_attempts:
                raise TransientBackendError(
                    f"{what} failed {policy.max_attempts} times; last error: {exc}. Nothing "
                    "finished was lost: resume the job to try again (or raise "
                    "backend_options.max_attempts)",
                    retry_after=exc.retry_after,
                ) from exc
            delay = policy.delay(number, exc.retry_after)
            yield Retrying(number + 1, policy.max_attempts, delay, str(exc))
            await policy.sleep(delay)
