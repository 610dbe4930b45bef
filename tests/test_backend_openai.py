"""The OpenAI-compatible backend against the fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fake_llm_servers import (
    FakeOpenAIServer,
    Sleeps,
    answer,
    prompt_request,
    stream_in_one_loop,
    text_of,
)

from novelkit._config import NovelConfig
from novelkit._errors import BackendConfigError, BackendError, ConfigError, TransientBackendError
from novelkit.llm import make_backend
from novelkit.llm._http import http_library, sse_events
from novelkit.llm._ratelimit import RateLimiter
from novelkit.llm._retry import RetryPolicy
from novelkit.llm.base import Chunk, Delta, Done, Message, Request, Retrying
from novelkit.llm.offline import respond
from novelkit.llm.openai import OpenAIBackend

SCHEMA = {"type": "object", "properties": {"logline": {"type": "string"}}, "required": ["logline"]}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIServer) -> FakeOpenAIServer:
    server.reset()
    server.latency = 0.0
    return server


def backend(fake: FakeOpenAIServer, **options: Any) -> OpenAIBackend:
    options.setdefault("retry", RetryPolicy(sleep=Sleeps()))
    return OpenAIBackend(
        model="fake-model", api_key="test-key", base_url=fake.url + "/v1", **options
    )


def run(target: OpenAIBackend, *requests: Request) -> list[list[Chunk]]:
    async def one(request: Request) -> list[Chunk]:
        return [chunk async for chunk in target.stream(request)]

    async def go() -> list[list[Chunk]]:
        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await target.aclose()

    return asyncio.run(go())


def expected(task: str = "premise") -> str:
    request = prompt_request(task)
    return respond(task, request.context, request.seed)


# -- streaming ---------------------------------------------------------------------------------


def test_streams_the_answer_with_usage(fake: FakeOpenAIServer) -> None:
    [chunks] = run(backend(fake), prompt_request())
    assert text_of(chunks) == expected()
    done = chunks[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop" and done.model == "fake-model"
    assert done.usage.completion_tokens > 0 and done.usage.prompt_tokens > 0
    assert sum(isinstance(c, Delta) for c in chunks) > 1  # really streamed
    assert fake.requests == 1 and fake.completed == 1


def test_request_body_in_json_schema_mode(fake: FakeOpenAIServer) -> None:
    run(backend(fake), prompt_request(json_schema=SCHEMA, schema_name="Premise"))
    body = fake.calls[0].body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Premise", "schema": SCHEMA, "strict": False},
    }
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["seed"] == 1 and body["temperature"] == 0.8
    assert body["max_tokens"] == 4096 and "max_completion_tokens" not in body  # a local server
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "JSON schema" not in body["messages"][1]["content"]
    assert fake.calls[0].headers["authorization"] == "Bearer test-key"


def test_json_object_mode_puts_the_schema_in_the_prompt(fake: FakeOpenAIServer) -> None:
    run(backend(fake, structured_output="json_object"), prompt_request(json_schema=SCHEMA))
    body = fake.calls[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert json.dumps(SCHEMA, separators=(",", ":")) in body["messages"][1]["content"]


def test_none_mode_only_puts_the_schema_in_the_prompt(fake: FakeOpenAIServer) -> None:
    [chunks] = run(backend(fake, structured_output="none"), prompt_request(json_schema=SCHEMA))
    body = fake.calls[0].body
    assert "response_format" not in body
    assert "JSON schema" in body["messages"][1]["content"]
    assert text_of(chunks) == expected()


def test_a_continuation_is_not_constrained_to_a_fresh_json_object() -> None:
    target = OpenAIBackend(model="m", api_key="k", base_url="http://127.0.0.1:9/v1")
    partial = prompt_request(json_schema=SCHEMA).with_messages(
        Message("assistant", '{"logline": "A lig'),
        Message("user", "Follow-up: continue. Continue exactly where you stopped."),
        task="continue",
    )
    assert "response_format" not in target.body(partial)


def test_official_api_gets_max_completion_tokens_and_options_pass_through() -> None:
    official = OpenAIBackend(model="gpt-4o-mini", api_key="k")
    body = official.body(prompt_request(model="gpt-4o-mini", max_output_tokens=900))
    assert body["max_completion_tokens"] == 900 and "max_tokens" not in body
    local = OpenAIBackend(
        model="m",
        api_key="k",
        base_url="http://localhost:11434/v1",
        max_tokens_param="max_completion_tokens",
        stream_usage=False,
        send_seed=False,
        extra_body={"top_k": 20},
    )
    body = local.body(prompt_request(model=""))
    assert body["model"] == "m"  # the request has no model: the backend's default
    assert body["max_completion_tokens"] == 4096
    assert "stream_options" not in body and "seed" not in body
    assert body["extra_body"] == {"top_k": 20}


def test_extra_body_is_merged_into_the_request_json(fake: FakeOpenAIServer) -> None:
    run(backend(fake, extra_body={"top_k": 20, "temperature": 0.3}), prompt_request())
    body = fake.calls[0].body
    assert body["top_k"] == 20 and body["temperature"] == 0.3  # extra_body wins, as in the SDK
    assert "extra_body" not in body and body["messages"][0]["role"] == "system"


def test_calls_share_one_kept_alive_connection(fake: FakeOpenAIServer) -> None:
    stream_in_one_loop(backend(fake))
    assert fake.completed == 3
    assert len({call.peer for call in fake.calls}) == 1  # the stream was read to its end


def test_a_compressed_event_stream_is_decoded() -> None:
    import openai

    http = http_library(openai)  # the SDK's own HTTP library: httpx2, or httpx before openai 3
    chunks: list[dict[str, Any]] = [{"choices": [{"delta": {"content": "Hello"}}]}]
    chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}], "model": "m"})
    sse = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"

    def handler(request: Any) -> Any:
        assert request.headers["authorization"] == "Bearer k"
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return http.Response(200, headers=headers, content=gzip.compress(sse))

    class Mocked(OpenAIBackend):
        def _new_client(self) -> openai.AsyncOpenAI:
            transport = http.MockTransport(handler)
            return openai.AsyncOpenAI(
                api_key="k",
                base_url=self.base_url,
                max_retries=0,
                http_client=http.AsyncClient(transport=transport),
            )

    target = Mocked(model="m", api_key="k", base_url="http://127.0.0.1:9/v1")
    [received] = run(target, prompt_request(model="m"))
    assert text_of(received) == "Hello"
    assert isinstance(received[-1], Done) and received[-1].model == "m"


def test_per_request_model_wins(fake: FakeOpenAIServer) -> None:
    run(backend(fake), prompt_request(model="fake-model-2"))
    assert fake.calls[0].body["model"] == "fake-model-2"


# -- the event stream --------------------------------------------------------------------------

SSE = (
    b'event: x\r\ndata: {"a": 1}\r\n\r\n: a comment\n\ndata: {"b":\ndata: 2}\n\n'
    b'retry: 5\rdata: {"c": 3}\r\rdata: [DONE]\n\n'
)


def events(pieces: list[bytes]) -> list[dict[str, Any]]:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def go() -> list[dict[str, Any]]:
        return [event async for event in sse_events(body())]

    return asyncio.run(go())


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(SSE)])
def test_events_survive_any_split_of_the_body(size: int) -> None:
    pieces = [SSE[i : i + size] for i in range(0, len(SSE), size)]
    assert events(pieces) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_the_body_is_read_to_its_end_after_done() -> None:
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for piece in (b'data: {"a": 1}\n\n', b"data: [DONE]\n\n", b"data: ignored\n\n"):
            read.append(piece)
            yield piece

    async def go() -> list[dict[str, Any]]:
        return [event async for event in sse_events(body())]

    assert asyncio.run(go()) == [{"a": 1}]
    assert len(read) == 3  # so the connection can be reused


def test_a_cut_or_malformed_event_is_a_transient_error() -> None:
    with pytest.raises(TransientBackendError, match="middle of an event"):
        events([b'data: {"a": 1}\n\ndata: {"b"'])
    with pytest.raises(TransientBackendError, match="malformed event"):
        events([b"data: {nope\n\n"])


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["rate_limit", "server_error", "overloaded", "cut", "truncate", "stream_error"]
)
def test_transient_faults_are_retried_to_the_full_answer(
    fake: FakeOpenAIServer, fault: str
) -> None:
    fake.inject(fault)
    sleeps = Sleeps()
    [chunks] = run(backend(fake, retry=RetryPolicy(sleep=sleeps)), prompt_request())
    retries = [c for c in chunks if isinstance(c, Retrying)]
    assert len(retries) == 1 and (retries[0].attempt, retries[0].max_attempts) == (2, 5)
    assert text_of(chunks) == expected()
    assert isinstance(chunks[-1], Done) and chunks[-1].finish_reason == "stop"
    assert fake.requests == 2 and fake.completed == 1  # paid once
    assert len(sleeps.waits) == 1


def test_retry_after_is_honoured(fake: FakeOpenAIServer) -> None:
    fake.inject("rate_limit", retry_after=2.5, times=2)
    sleeps = Sleeps()
    [chunks] = run(backend(fake, retry=RetryPolicy(sleep=sleeps)), prompt_request())
    assert sleeps.waits == [2.5, 2.5]
    assert [c.delay for c in chunks if isinstance(c, Retrying)] == [2.5, 2.5]
    assert "429" in next(c for c in chunks if isinstance(c, Retrying)).reason


def test_retry_after_really_waits_with_the_default_sleep(fake: FakeOpenAIServer) -> None:
    fake.inject("rate_limit", retry_after=0.2)
    target = backend(fake, retry=RetryPolicy())
    begin = time.perf_counter()
    [chunks] = run(target, prompt_request())
    assert time.perf_counter() - begin >= 0.2
    assert text_of(chunks) == expected()


def test_exhausted_retries_fail_with_a_resumable_message(fake: FakeOpenAIServer) -> None:
    fake.inject("server_error", times=10)
    target = backend(fake, retry=RetryPolicy(max_attempts=3, sleep=Sleeps()))
    with pytest.raises(TransientBackendError, match=r"failed 3 times.*500.*resume"):
        run(target, prompt_request())
    assert fake.requests == 3 and fake.completed == 0


def test_length_is_reported_and_a_continuation_completes_it(fake: FakeOpenAIServer) -> None:
    fake.inject("length", at=0.4)
    request = prompt_request()
    [chunks] = run(backend(fake), request)
    done = chunks[-1]
    assert isinstance(done, Done) and done.finish_reason == "length"
    partial = text_of(chunks)
    assert 0 < len(partial) < len(expected())
    follow = request.with_messages(
        Message("assistant", partial),
        Message("user", "Follow-up: continue. Your answer was cut off at the length limit."),
        task="continue",
    )
    [rest] = run(backend(fake), follow)
    assert partial + text_of(rest) == expected()
    assert isinstance(rest[-1], Done) and rest[-1].finish_reason == "stop"


def test_invalid_json_is_passed_through_for_the_core_to_repair(fake: FakeOpenAIServer) -> None:
    fake.inject("invalid_json")
    request = prompt_request(json_schema=SCHEMA)
    [chunks] = run(backend(fake), request)
    bad = text_of(chunks)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)
    repair = request.with_messages(
        Message("assistant", bad),
        Message("user", "Follow-up: repair. That JSON did not validate: x. Reply with JSON."),
        task="repair",
    )
    [fixed] = run(backend(fake), repair)
    assert json.loads(text_of(fixed))["genre"] == "mystery"


def test_short_and_long_chapters_come_back_as_written(fake: FakeOpenAIServer) -> None:
    context = {
        "unit": "ch01",
        "plan": {
            "number": 1,
            "title": "T",
            "summary": "S",
            "pov": "Mara Quill",
            "location": "Salt Row",
            "beats": ["a beat", "another"],
            "target_words": 600,
        },
        "scenes": [
            {
                "number": 1,
                "goal": "g",
                "conflict": "c",
                "outcome": "o",
                "location": "Salt Row",
                "cast": ["Mara Quill", "Eli Marsh"],
                "beat": "a beat",
            }
        ],
        "cast": [
            {"name": "Mara Quill", "role": "protagonist", "voice": "dry", "status": "alive"},
            {"name": "Eli Marsh", "role": "ally", "voice": "warm", "status": "alive"},
        ],
        "motifs": ["lighthouse", "letters"],
        "recent_summaries": [],
        "previous_ending": "",
        "style": "plain",
        "pov_style": "third person limited",
        "tense": "past",
        "target_words": 600,
    }
    request = prompt_request("draft", context, unit="ch01")
    full = answer([{"role": m.role, "content": m.content} for m in request.messages], 1)
    fake.inject("short")
    fake.inject("long")
    [short] = run(backend(fake), request)
    [long] = run(backend(fake), request)
    assert len(text_of(short).split()) < len(full.split()) / 2
    assert len(text_of(long).split()) > len(full.split()) * 1.5


def test_401_fails_fast_naming_the_key_setting(fake: FakeOpenAIServer) -> None:
    target = OpenAIBackend(
        model="fake-model", api_key="wrong", base_url=fake.url + "/v1", key_setting="MY_LLM_KEY"
    )
    with pytest.raises(BackendConfigError, match="MY_LLM_KEY is missing or wrong"):
        run(target, prompt_request())
    assert fake.requests == 1  # not retried


def test_injected_401_fails_fast(fake: FakeOpenAIServer) -> None:
    fake.inject("unauthorized")
    with pytest.raises(BackendConfigError, match="OPENAI_API_KEY"):
        run(backend(fake), prompt_request())
    assert fake.requests == 1


def test_unknown_model_fails_fast_naming_model_and_url(fake: FakeOpenAIServer) -> None:
    with pytest.raises(BackendConfigError) as caught:
        run(backend(fake), prompt_request(model="gpt-nope"))
    message = str(caught.value)
    assert "'gpt-nope'" in message and fake.url + "/v1" in message and "`model`" in message
    assert fake.requests == 1


def test_a_base_url_where_nothing_listens_fails_at_once_and_says_so() -> None:
    sleeps = Sleeps()
    target = OpenAIBackend(
        model="m",
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        retry=RetryPolicy(max_attempts=5, sleep=sleeps),
    )
    with pytest.raises(BackendConfigError, match=r"nothing answers at base_url.*127\.0\.0\.1:9"):
        run(target, prompt_request())
    assert sleeps.waits == []  # not retried five times: no server will appear by waiting


def test_a_400_is_not_retried(fake: FakeOpenAIServer) -> None:
    class NoStream(OpenAIBackend):
        def body(self, request: Request, mode: Any = None) -> dict[str, Any]:
            body = super().body(request, mode)
            body["extra_body"] = {"stream": False}
            return body

    target = NoStream(model="fake-model", api_key="test-key", base_url=fake.url + "/v1")
    with pytest.raises(
        BackendError, match="rejected the request.*400: this fake only streams"
    ) as caught:
        run(target, prompt_request())
    assert not isinstance(caught.value, (TransientBackendError, BackendConfigError))
    assert fake.requests == 1


# -- limits ------------------------------------------------------------------------------------


def test_max_concurrency_bounds_requests_in_flight(fake: FakeOpenAIServer) -> None:
    fake.latency = 0.05
    target = backend(fake, limiter=RateLimiter(max_concurrency=2))
    results = run(target, *(prompt_request(unit=f"u{i}") for i in range(6)))
    assert all(text_of(chunks) == expected() for chunks in results)
    assert fake.max_in_flight == 2


def test_unlimited_requests_run_in_parallel(fake: FakeOpenAIServer) -> None:
    fake.latency = 0.5  # long enough for all six to arrive on a busy machine
    run(backend(fake), *(prompt_request(unit=f"u{i}") for i in range(6)))
    assert fake.max_in_flight == 6


# -- configuration -----------------------------------------------------------------------------


def config(**values: Any) -> NovelConfig:
    return NovelConfig(premise="A lighthouse keeper", backend="openai", **values)


def test_from_config_without_a_key_names_the_variable() -> None:
    with pytest.raises(BackendConfigError, match="OPENAI_API_KEY is missing"):
        OpenAIBackend.from_config(config(model="gpt-4o-mini"), {}, environ={})
    with pytest.raises(BackendConfigError, match="TEAM_KEY is missing"):
        OpenAIBackend.from_config(
            config(model="gpt-4o-mini"), {"api_key_env": "TEAM_KEY"}, environ={}
        )


def test_local_servers_need_no_key(fake: FakeOpenAIServer) -> None:
    fake.api_key = None
    try:
        target = OpenAIBackend.from_config(
            config(model="fake-model", base_url=fake.url + "/v1"), {}, environ={}
        )
        run(target, prompt_request())
    finally:
        fake.api_key = "test-key"
    assert fake.calls[0].headers["authorization"] == "Bearer not-needed"


def test_key_and_base_url_come_from_the_environment(fake: FakeOpenAIServer) -> None:
    environ = {"OPENAI_BASE_URL": fake.url + "/v1", "TEAM_KEY": "test-key"}
    options = {
        "api_key_env": "TEAM_KEY",
        "structured_output": "json_object",
        "max_attempts": 2,
        "max_concurrency": 3,
        "rpm": 100,
        "timeout": 30,
    }
    target = OpenAIBackend.from_config(config(model="fake-model"), options, environ=environ)
    assert target.retry.max_attempts == 2 and target.limiter.max_concurrency == 3
    [chunks] = run(target, prompt_request())
    assert text_of(chunks) == expected()


def test_make_backend_reads_os_environ(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    target = make_backend(config(model="fake-model", base_url=fake.url + "/v1"), tmp_path)
    assert isinstance(target, OpenAIBackend)
    assert repr(target) == f"OpenAIBackend(model='fake-model', base_url='{fake.url}/v1')"
    [chunks] = run(target, prompt_request())
    assert text_of(chunks) == expected()


@pytest.mark.parametrize(
    ("values", "options", "match"),
    [
        ({}, {}, "needs a model"),
        ({"model": "m", "base_url": "localhost:11434"}, {}, "base_url"),
        ({"model": "m"}, {"structured_output": "xml"}, "structured_output"),
        ({"model": "m"}, {"max_tokens_param": "n_predict"}, "max_tokens_param"),
        ({"model": "m"}, {"max_concurency": 2}, "did you mean 'max_concurrency'"),
        ({"model": "m"}, {"rpm": "fast"}, "rpm"),
    ],
)
def test_bad_settings_are_config_errors(
    values: dict[str, Any], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        OpenAIBackend.from_config(config(**values), options, environ={"OPENAI_API_KEY": "k"})


def test_importing_novelkit_loads_no_sdk() -> None:
    code = (
        "import sys, novelkit.llm, novelkit.llm.replay, novelkit.llm.openai, novelkit.llm.anthropic;"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
