"""The Anthropic backend against the fake Anthropic Messages server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_llm_servers import FakeAnthropicServer, Sleeps, prompt_request, text_of

from novelkit._config import NovelConfig
from novelkit._errors import BackendConfigError, ConfigError, TransientBackendError
from novelkit.llm import make_backend
from novelkit.llm._ratelimit import RateLimiter
from novelkit.llm._retry import RetryPolicy
from novelkit.llm.anthropic import AnthropicBackend
from novelkit.llm.base import Chunk, Delta, Done, Message, Request, Retrying
from novelkit.llm.offline import respond

SCHEMA = {"type": "object", "properties": {"logline": {"type": "string"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(server: FakeAnthropicServer) -> FakeAnthropicServer:
    server.reset()
    server.latency = 0.0
    return server


def backend(fake: FakeAnthropicServer, **options: Any) -> AnthropicBackend:
    options.setdefault("retry", RetryPolicy(sleep=Sleeps()))
    return AnthropicBackend(model="fake-model", api_key="test-key", base_url=fake.url, **options)


def run(target: AnthropicBackend, *requests: Request) -> list[list[Chunk]]:
    async def one(request: Request) -> list[Chunk]:
        return [chunk async for chunk in target.stream(request)]

    async def go() -> list[list[Chunk]]:
        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await target.aclose()

    return asyncio.run(go())


def expected() -> str:
    request = prompt_request()
    return respond("premise", request.context, 1)


def test_streams_the_answer_with_usage_from_the_events(fake: FakeAnthropicServer) -> None:
    [chunks] = run(backend(fake), prompt_request())
    assert text_of(chunks) == expected()
    done = chunks[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop" and done.model == "fake-model"
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert sum(isinstance(c, Delta) for c in chunks) > 1
    assert fake.completed == 1


def test_request_body_puts_system_apart_and_the_schema_in_the_prompt(
    fake: FakeAnthropicServer,
) -> None:
    run(backend(fake), prompt_request(json_schema=SCHEMA, schema_name="Premise"))
    body = fake.calls[0].body
    assert body["system"] == "You are a novelist."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert json.dumps(SCHEMA, separators=(",", ":")) in body["messages"][0]["content"]
    assert "JSON object only" in body["messages"][0]["content"]
    assert body["max_tokens"] == 4096 and body["stream"] is True and body["model"] == "fake-model"
    assert "response_format" not in body


def test_turns_alternate_even_when_the_conversation_does_not() -> None:
    request = prompt_request().with_messages(
        Message("user", "one more thing"), Message("assistant", "ok"), Message("user", "go")
    )
    body = AnthropicBackend(model="m", api_key="k").body(request)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"].endswith("\n\none more thing")


def test_base_url_with_v1_is_accepted(fake: FakeAnthropicServer) -> None:
    [chunks] = run(
        AnthropicBackend(model="fake-model", api_key="test-key", base_url=fake.url + "/v1/"),
        prompt_request(),
    )
    assert text_of(chunks) == expected()
    assert fake.calls[0].path == "/v1/messages"


@pytest.mark.parametrize(
    "fault", ["rate_limit", "server_error", "overloaded", "cut", "truncate", "stream_error"]
)
def test_transient_faults_are_retried(fake: FakeAnthropicServer, fault: str) -> None:
    fake.inject(fault, retry_after=0.5 if fault == "rate_limit" else None)
    sleeps = Sleeps()
    [chunks] = run(backend(fake, retry=RetryPolicy(sleep=sleeps)), prompt_request())
    assert [c.attempt for c in chunks if isinstance(c, Retrying)] == [2]
    assert text_of(chunks) == expected()
    assert fake.requests == 2 and fake.completed == 1
    if fault == "rate_limit":
        assert sleeps.waits == [0.5]


def test_max_tokens_is_reported_as_length_and_continues(fake: FakeAnthropicServer) -> None:
    fake.inject("length", at=0.3)
    request = prompt_request()
    [chunks] = run(backend(fake), request)
    assert isinstance(chunks[-1], Done) and chunks[-1].finish_reason == "length"
    partial = text_of(chunks)
    follow = request.with_messages(
        Message("assistant", partial),
        Message("user", "Follow-up: continue. Your answer was cut off at the length limit."),
        task="continue",
    )
    [rest] = run(backend(fake), follow)
    assert partial + text_of(rest) == expected()


def test_exhausted_retries_are_resumable(fake: FakeAnthropicServer) -> None:
    fake.inject("overloaded", times=9)
    with pytest.raises(TransientBackendError, match=r"failed 2 times.*529.*resume"):
        run(backend(fake, retry=RetryPolicy(max_attempts=2, sleep=Sleeps())), prompt_request())


def test_wrong_key_fails_fast_naming_the_variable(fake: FakeAnthropicServer) -> None:
    target = AnthropicBackend(model="fake-model", api_key="nope", base_url=fake.url)
    with pytest.raises(BackendConfigError, match="ANTHROPIC_API_KEY is missing or wrong"):
        run(target, prompt_request())
    assert fake.requests == 1


def test_unknown_model_fails_fast(fake: FakeAnthropicServer) -> None:
    with pytest.raises(BackendConfigError, match=r"model 'claude-nope' not found on http://127"):
        run(backend(fake), prompt_request(model="claude-nope"))
    assert fake.requests == 1


def test_max_concurrency(fake: FakeAnthropicServer) -> None:
    fake.latency = 0.05
    run(
        backend(fake, limiter=RateLimiter(max_concurrency=3)), *(prompt_request() for _ in range(7))
    )
    assert fake.max_in_flight == 3 and fake.completed == 7


def config(**values: Any) -> NovelConfig:
    return NovelConfig(premise="A lighthouse keeper", backend="anthropic", **values)


def test_from_config(
    fake: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    with pytest.raises(BackendConfigError, match="ANTHROPIC_API_KEY is missing"):
        AnthropicBackend.from_config(config(model="claude-x"), {}, environ={})
    with pytest.raises(ConfigError, match="needs a model"):
        AnthropicBackend.from_config(config(), {}, environ={"ANTHROPIC_API_KEY": "k"})
    with pytest.raises(ConfigError, match="structured_output"):
        AnthropicBackend.from_config(config(model="m"), {"structured_output": "none"}, environ={})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    target = make_backend(
        config(model="fake-model", base_url=fake.url, backend_options={"rpm": 600}), tmp_path
    )
    assert isinstance(target, AnthropicBackend) and target.limiter.rpm == 600
    [chunks] = run(target, prompt_request())
    assert text_of(chunks) == expected()
