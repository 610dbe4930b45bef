"""The Anthropic backend against the fake Anthropic Messages server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_llm_servers import (
    FakeAnthropicServer,
    Sleeps,
    prompt_request,
    stream_in_one_loop,
    text_of,
)

from novelkit._config import NovelConfig
from novelkit._errors import BackendConfigError, BackendError, ConfigError, TransientBackendError
from novelkit.llm import make_backend
from novelkit.llm._http import http_library
from novelkit.llm._ratelimit import RateLimiter
from novelkit.llm._retry import RetryPolicy
from novelkit.llm.anthropic import AnthropicBackend
from novelkit.llm.base import Chunk, Delta, Done, Message, Request, Retrying
from novelkit.llm.offline import respond

SCHEMA = {"type": "object", "properties": {"logline": {"type": "string"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as fake:
        yield fake


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


def test_structured_output_is_forced_tool_use_with_the_schema(
    fake: FakeAnthropicServer,
) -> None:
    [chunks] = run(backend(fake), prompt_request(json_schema=SCHEMA, schema_name="Premise"))
    body = fake.calls[0].body
    assert body["system"] == "You are a novelist."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["tools"] == [
        {
            "name": "Premise",
            "description": "Record the premise as structured data.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "Premise"}
    # the schema is not pasted into the prompt: the tool carries it
    assert json.dumps(SCHEMA, separators=(",", ":")) not in body["messages"][0]["content"]
    assert body["max_tokens"] == 4096 and body["stream"] is True and body["model"] == "fake-model"
    # the tool's input streams as the answer's text: one JSON object
    assert json.loads(text_of(chunks))["logline"]


def test_a_continuation_is_plain_text_not_a_fresh_tool_call() -> None:
    request = prompt_request(json_schema=SCHEMA).with_messages(
        Message("assistant", '{"logline": "A keep'), Message("user", "go on"), task="continue"
    )
    body = AnthropicBackend(model="m", api_key="k").body(request)
    assert "tools" not in body and "tool_choice" not in body


def test_turns_alternate_even_when_the_conversation_does_not() -> None:
    request = prompt_request().with_messages(
        Message("user", "one more thing"), Message("assistant", "ok"), Message("user", "go")
    )
    body = AnthropicBackend(model="m", api_key="k").body(request)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"].endswith("\n\none more thing")


def test_calls_share_one_kept_alive_connection(fake: FakeAnthropicServer) -> None:
    stream_in_one_loop(backend(fake))
    assert fake.completed == 3 and len({call.peer for call in fake.calls}) == 1


def mocked(*events: dict[str, Any]) -> tuple[AnthropicBackend, list[Any]]:
    """A backend whose SDK client is answered with ``events`` as one event stream."""
    import anthropic

    http = http_library(anthropic)  # the SDK's own HTTP library: httpx2, or httpx before 2
    sent: list[Any] = []
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)

    def handler(request: Any) -> Any:
        sent.append(request)
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    class Mocked(AnthropicBackend):
        def _new_client(self) -> anthropic.AsyncAnthropic:
            return anthropic.AsyncAnthropic(
                api_key="k",
                base_url=self.base_url,
                max_retries=0,
                http_client=http.AsyncClient(transport=http.MockTransport(handler)),
            )

    target = Mocked(model="m", api_key="k", base_url="http://127.0.0.1:9", extra_body={"top_k": 5})
    return target, sent


def test_cached_prompt_tokens_count_and_extra_body_is_sent() -> None:
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 7}
    target, sent = mocked(
        {"type": "message_start", "message": {"model": "m-2025", "usage": usage}},
        {"type": "ping"},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    )
    [chunks] = run(target, prompt_request(model="m"))
    done = chunks[-1]
    assert text_of(chunks) == "Hi" and isinstance(done, Done) and done.model == "m-2025"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (14, 3)
    [request] = sent
    # the key as the SDK sends it: X-Api-Key before anthropic 2, a bearer token since
    assert request.headers.get("x-api-key", request.headers.get("authorization")) in (
        "k",
        "Bearer k",
    )
    assert "anthropic-version" in request.headers
    assert json.loads(request.content)["top_k"] == 5


def test_a_stream_error_that_is_not_transient_fails_without_retry() -> None:
    error = {"type": "invalid_request_error", "message": "prompt is too long"}
    target, sent = mocked(
        {"type": "message_start", "message": {}}, {"type": "error", "error": error}
    )
    with pytest.raises(BackendError, match="invalid_request_error: prompt is too long") as caught:
        run(target, prompt_request(model="m"))
    assert not isinstance(caught.value, TransientBackendError) and len(sent) == 1


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
