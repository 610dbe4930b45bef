"""Retry/backoff (novelkit/llm/_retry.py) and the rate limiter (novelkit/llm/_ratelimit.py)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator

import pytest
from fake_llm_servers import Sleeps

from novelkit._errors import BackendConfigError, ConfigError, TransientBackendError
from novelkit.llm._ratelimit import RateLimiter
from novelkit.llm._retry import RetryPolicy, error_for_status, parse_retry_after, with_retries
from novelkit.llm.base import Chunk, Delta, Done, Retrying, Usage


def flaky(failures: list[Exception], text: str = "hello world") -> tuple[list[int], object]:
    attempts: list[int] = []

    async def attempt() -> AsyncIterator[Chunk]:
        attempts.append(1)
        yield Delta(text[:5])
        if failures:
            raise failures.pop(0)
        yield Delta(text[5:])
        yield Done(Usage(3, 4))

    return attempts, attempt


def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in stream]

    return asyncio.run(run())


# -- Retry-After -------------------------------------------------------------------------------


def test_retry_after_in_seconds_and_milliseconds() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None


def test_retry_after_as_http_date() -> None:
    now = time.time()
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered() -> None:
    full = RetryPolicy(base_delay=1, max_delay=5, jitter=lambda: 1.0)
    assert [full.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    half = RetryPolicy(base_delay=1, max_delay=5, jitter=lambda: 0.5)
    assert [half.delay(n) for n in range(1, 4)] == [0.5, 1, 2]
    assert full.delay(1, retry_after=12.0) == 12.0  # the server's word wins


def test_policy_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy.from_options({"max_attempts": 0})
    with pytest.raises(ConfigError, match="base_delay"):
        RetryPolicy.from_options({"base_delay": -1})


def test_transient_errors_are_retried_with_retrying_chunks() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=4, base_delay=1, jitter=lambda: 1.0, sleep=sleeps)
    errors: list[Exception] = [
        TransientBackendError("500"),
        TransientBackendError("429", retry_after=3),
    ]
    attempts, attempt = flaky(errors)
    chunks = collect(with_retries(attempt, policy, what="the draft call"))  # type: ignore[arg-type]
    retries = [c for c in chunks if isinstance(c, Retrying)]
    assert [(r.attempt, r.max_attempts, r.delay) for r in retries] == [(2, 4, 1.0), (3, 4, 3.0)]
    assert retries[0].reason == "500"
    assert sleeps.waits == [1.0, 3.0]
    assert len(attempts) == 3
    # what a consumer keeps after discarding text on every Retrying: the full text once
    kept: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, Retrying):
            kept.clear()
        elif isinstance(chunk, Delta):
            kept.append(chunk.text)
    assert "".join(kept) == "hello world"
    assert isinstance(chunks[-1], Done)


def test_last_attempt_raises_a_resumable_error() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=3, sleep=sleeps)
    attempts, attempt = flaky([TransientBackendError("503 busy") for _ in range(5)])
    with pytest.raises(TransientBackendError) as caught:
        collect(with_retries(attempt, policy, what="the draft call of draft/ch01"))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "draft/ch01" in message and "3 times" in message and "503 busy" in message
    assert "resume" in message
    assert len(attempts) == 3 and len(sleeps.waits) == 2


def test_config_errors_are_not_retried() -> None:
    sleeps = Sleeps()
    attempts, attempt = flaky([BackendConfigError("OPENAI_API_KEY is missing or wrong")])
    with pytest.raises(BackendConfigError):
        collect(with_retries(attempt, RetryPolicy(sleep=sleeps), what="x"))  # type: ignore[arg-type]
    assert len(attempts) == 1 and sleeps.waits == []


# -- status mapping ----------------------------------------------------------------------------


def status(
    code: int, headers: dict[str, str] | None = None, error_code: str | None = None
) -> Exception:
    return error_for_status(
        code,
        "detail",
        headers=headers or {},
        key_setting="OPENAI_API_KEY",
        model="gpt-x",
        base_url="http://localhost:8000/v1",
        code=error_code,
    )


def test_status_mapping_names_the_setting_to_fix() -> None:
    auth = status(401)
    assert isinstance(auth, BackendConfigError) and "OPENAI_API_KEY" in str(auth)
    assert isinstance(status(403), BackendConfigError)
    missing = status(404)
    assert isinstance(missing, BackendConfigError)
    assert "'gpt-x'" in str(missing) and "http://localhost:8000/v1" in str(missing)
    assert "`model`" in str(missing)
    quota = status(429, error_code="insufficient_quota")
    assert isinstance(quota, BackendConfigError)
    for code in (408, 409, 429, 500, 502, 503, 529):
        assert isinstance(status(code), TransientBackendError), code
    limited = status(429, {"retry-after": "2"})
    assert isinstance(limited, TransientBackendError) and limited.retry_after == 2.0
    bad = status(400)
    assert not isinstance(bad, (TransientBackendError, BackendConfigError))


# -- rate limiter ------------------------------------------------------------------------------


def test_limiter_bounds_concurrency() -> None:
    limiter = RateLimiter(max_concurrency=3)
    seen: list[int] = []

    async def one() -> None:
        async with limiter.slot():
            seen.append(limiter.in_flight)
            await asyncio.sleep(0.01)

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(12)))

    asyncio.run(run())
    assert max(seen) == 3 and len(seen) == 12


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay
        await asyncio.sleep(0)


def test_limiter_spaces_requests_to_the_rpm() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def run() -> None:
        for _ in range(10):
            async with limiter.slot():
                starts.append(clock.now)

    asyncio.run(run())
    # one a second at 60 rpm: a minute never holds more than the limit (plus a 1 s burst)
    assert starts == pytest.approx([float(i) for i in range(10)])
    assert sum(1 for t in starts if t < 60) <= 60 + 1


def test_limiter_spaces_tokens_to_the_tpm_and_refunds_unused() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)  # 100 tokens a second

    async def run() -> None:
        for _ in range(3):
            async with limiter.slot(200):
                pass

    asyncio.run(run())
    # 200 tokens each at 100/s: the second and third wait ~2 s each
    assert clock.now == pytest.approx(4.0, abs=0.01)

    clock2 = FakeClock()
    refunding = RateLimiter(tpm=6000, clock=clock2, sleep=clock2.sleep)

    async def run_settled() -> None:
        for _ in range(3):
            async with refunding.slot(200) as permit:
                permit.settle(10)  # the call used far less than estimated

    asyncio.run(run_settled())
    assert clock2.now < 1.0


def test_limiter_rejects_bad_limits() -> None:
    with pytest.raises(ConfigError, match="rpm"):
        RateLimiter.from_options({"rpm": 0})
    assert (
        repr(RateLimiter(max_concurrency=2)) == "RateLimiter(max_concurrency=2, rpm=None, tpm=None)"
    )
