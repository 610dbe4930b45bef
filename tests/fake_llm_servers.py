"""In-process fake LLM servers on 127.0.0.1: OpenAI chat completions and Anthropic Messages.

Both stream Server-Sent Events the way the real APIs do and write their answers with the
offline backend's ``respond`` from the prompt's material, so whole jobs can run against them.
Tests inject faults (rate limits, 5xx, cut streams, truncation, invalid JSON, short and long
chapters, bad keys) and read the request log to check that no finished call was paid twice.

    with FakeOpenAIServer(latency=0.1) as fake:
        fake.inject("rate_limit", retry_after=0.05)
        ... base_url=fake.url + "/v1" ...
        assert fake.completed == store_calls
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from novelkit.llm import count_tokens, parse_prompt
from novelkit.llm.base import Chunk, Delta, Retrying
from novelkit.llm.offline import respond

__all__ = [
    "FAULTS",
    "Call",
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "FakeServer",
    "Fault",
    "Sleeps",
    "judge_answer",
    "text_of",
]


class Sleeps:
    """An injectable sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.waits.append(delay)


def text_of(chunks: list[Chunk]) -> str:
    """The text a consumer keeps: a Retrying chunk discards what came before it."""
    kept: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, Retrying):
            kept.clear()
        elif isinstance(chunk, Delta):
            kept.append(chunk.text)
    return "".join(kept)


FAULTS = (
    "rate_limit",  # 429 with Retry-After
    "server_error",  # 500
    "overloaded",  # 529 (Anthropic) / 503 (OpenAI)
    "cut",  # the connection drops mid-stream
    "truncate",  # the body ends cleanly mid-stream, without a finish reason
    "stream_error",  # an error event inside a 200 stream
    "length",  # the answer stops at the token limit (finish_reason=length / max_tokens)
    "invalid_json",  # a JSON answer that does not parse
    "short",  # a chapter at a third of its length
    "long",  # a chapter at twice its length
    "unauthorized",  # 401
    "think",  # a <think>…</think> block before the answer, as reasoning models write
    "fence",  # the JSON answer in a ```json fence, with prose around it
    "extra_item",  # one item too many in the answer's first array (a chapter, a scene)
    "foreign_name",  # a name that is not in the cast as a POV or in a scene's cast
)

FOREIGN_NAME = "Zebediah Crane"
REASONING_TOKENS = 37  # what the fake says a reasoning model thought, when asked to


class _CutStream(Exception):
    """Raised inside a streaming body to drop the connection without finishing it."""


class _QuietCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        return not isinstance(error, _CutStream)


@dataclass
class Fault:
    """An injected failure for the next ``times`` matching requests."""

    kind: str
    times: int = 1
    task: str | None = None  # the prompt's task, or "continue" / "repair" for follow-ups
    unit: str | None = None  # e.g. "ch02"
    retry_after: float | None = None
    at: float = 0.5  # where "cut", "truncate", "stream_error" and "length" stop (fraction)
    used: int = 0

    def matches(self, task: str, unit: str) -> bool:
        return self.used < self.times and self.task in (None, task) and self.unit in (None, unit)


@dataclass
class Call:
    """One request the fake received, and what became of it."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    task: str = ""
    unit: str = ""
    status: int = 200
    fault: str | None = None
    finished: bool = False  # the whole answer was streamed with a finish reason
    text: str = ""
    arrived: float = 0.0  # time.monotonic() when the request came in
    peer: str = ""  # the client's host:port: the same for requests on one kept-alive connection
    ended: float = 0.0  # time.monotonic() when the whole answer had been streamed


def answer(messages: list[dict[str, Any]], seed: int) -> str:
    """The full, valid answer to a conversation, following novelkit's follow-up messages."""
    last = messages[-1]["content"] if messages and messages[-1]["role"] == "user" else ""
    if isinstance(last, str) and last.startswith("Follow-up: continue") and len(messages) >= 3:
        before = answer(messages[:-2], seed)
        partial = messages[-2]["content"]
        return before[len(partial) :] if before.startswith(partial) else before
    task, context = parse_prompt(messages)
    if task == "judge":
        return judge_answer(context)
    return respond(task, context, seed)


def judge_answer(context: dict[str, Any]) -> str:
    """A judge's JSON scores, by rule: each quality ``10 + chapter`` (the book: 12), each fault
    4, so a chapter's score is known in advance (see tests/test_report_judge.py)."""
    chapter = int(context.get("chapter", 0))
    quality = 10 + chapter if chapter else 12
    scores = {name: quality for name in context.get("criteria", [])}
    scores.update({name: 4 for name in context.get("faults", [])})
    comment = f"Chapter {chapter}: clear enough." if chapter else "The book holds together."
    return json.dumps({"scores": scores, "comment": comment})


def followup(messages: list[dict[str, Any]]) -> str | None:
    last = messages[-1]["content"] if messages and messages[-1]["role"] == "user" else ""
    for kind in ("continue", "repair"):
        if isinstance(last, str) and last.startswith(f"Follow-up: {kind}"):
            return kind
    return None


def damage(kind: str, text: str, messages: list[dict[str, Any]], seed: int) -> str:
    """The answer a faulty model gives instead of ``text``."""
    if kind == "invalid_json":
        return "Here is the JSON you asked for:\n" + text[: len(text) // 2] + ",,}"
    if kind == "short":
        paragraphs = text.split("\n\n")
        return "\n\n".join(paragraphs[: max(1, len(paragraphs) // 3)])
    if kind == "long":
        return text + "\n\n" + answer(messages, seed + 1)
    if kind == "think":
        return "<think>\nThe user wants JSON. Let me plan {the fields} first.\n</think>\n" + text
    if kind == "fence":
        return (
            "Sure! Here is the object:\n```json\n" + text + "\n```\nLet me know if you need more."
        )
    if kind in ("extra_item", "foreign_name"):
        data = json.loads(text)
        for value in data.values():
            if isinstance(value, list) and value and isinstance(value[-1], dict):
                if kind == "extra_item":
                    value.append(dict(value[-1]))
                else:
                    for item in value:
                        if "pov" in item:
                            item["pov"] = FOREIGN_NAME
                        if isinstance(item.get("cast"), list):
                            item["cast"] = [FOREIGN_NAME]
                break
        return json.dumps(data)
    return text


class ThreadedServer:
    """A Starlette app (``self.app``) served by uvicorn in a thread, on a free port of
    127.0.0.1; a context manager."""

    app: Starlette
    port = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        logging.getLogger("uvicorn.error").addFilter(_QuietCuts())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeServer(ThreadedServer):
    """A fake LLM API, served in a thread."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = "test-key",
        models: tuple[str, ...] = ("fake-model", "fake-model-2"),
        chunk_chars: int = 40,
        formats: tuple[str, ...] = ("text", "json_schema", "json_object"),
        props: dict[str, Any] | None = None,
        interrupting: bool = False,
        reasoning_efforts: tuple[str, ...] = ("low", "medium", "high"),
    ) -> None:
        # llama.cpp's /props (n_ctx, total_slots) when given; otherwise /props is a 404
        self.props = props
        # llama-cpp-python's default: one answer at a time, and a stream in progress ends
        # (with [DONE] and no finish reason) as soon as another request arrives
        self.interrupting = interrupting
        self.reasoning_efforts = reasoning_efforts
        self._waiting = 0
        self._serial: asyncio.Lock | None = None
        self.latency = latency
        self.formats = formats  # response_format types accepted; others answer 500 as
        # llama-cpp-python's server does for json_schema
        self.api_key = api_key
        self.models = models
        self.chunk_chars = chunk_chars
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.app = Starlette(routes=self.routes())

    def routes(self) -> list[Route]:
        raise NotImplementedError

    # -- control from tests -------------------------------------------------------------------

    def inject(self, kind: str, **options: Any) -> Fault:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}")
        fault = Fault(kind, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    @property
    def requests(self) -> int:
        return len(self.calls)

    @property
    def completed(self) -> int:
        """Answers streamed to the end: what a real provider would have billed in full."""
        return sum(1 for call in self.calls if call.finished)

    def paid_twice(self) -> list[Call]:
        """Finished answers to a request whose same body had already been answered in full:
        what a provider would have billed twice (e.g. a resumed run repeating a saved call)."""
        seen: set[str] = set()
        twice = []
        with self._lock:
            calls = list(self.calls)
        for call in calls:
            if not call.finished:
                continue
            body = json.dumps(call.body, sort_keys=True)
            if body in seen:
                twice.append(call)
            seen.add(body)
        return twice

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.faults.clear()
            self.max_in_flight = 0

    # -- shared request handling --------------------------------------------------------------

    def _take_fault(self, task: str, unit: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(task, unit):
                    fault.used += 1
                    return fault
        return None

    async def _begin(self, request: Request, path: str) -> tuple[Call, dict[str, Any]]:
        arrived = time.monotonic()
        body = await request.json()
        peer = f"{request.client.host}:{request.client.port}" if request.client else ""
        call = Call(path=path, body=body, headers=dict(request.headers), arrived=arrived, peer=peer)
        with self._lock:
            self.calls.append(call)
        return call, body

    def _classify(self, call: Call, messages: list[dict[str, Any]]) -> None:
        try:
            task, context = parse_prompt(messages)
        except ValueError:
            task, context = "", {}
        call.task = followup(messages) or task
        call.unit = str(context.get("unit", ""))

    @staticmethod
    def _pieces(text: str, size: int) -> list[str]:
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]

    @asynccontextmanager
    async def _pace(self, call: Call) -> AsyncIterator[None]:
        """The first byte of the answer goes out ``latency`` after the request came in: the time
        this one-threaded fake spent writing the answer is part of it, as in a real server that
        serves many requests at once."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(max(0.0, call.arrived + self.latency - time.monotonic()))
            yield
        finally:
            with self._lock:
                self.in_flight -= 1


class FakeOpenAIServer(FakeServer):
    """Speaks ``POST /v1/chat/completions`` (streaming) and ``GET /v1/models``."""

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/props", self.server_props, methods=["GET"]),
        ]

    async def server_props(self, request: Request) -> Response:
        if self.props is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse(
            {
                "default_generation_settings": {"n_ctx": self.props.get("n_ctx", 4096)},
                "total_slots": self.props.get("total_slots", 1),
            }
        )

    @staticmethod
    def _error(status: int, message: str, kind: str, code: str | None, **headers: str) -> Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """One answer at a time when the server is ``interrupting``."""
        if not self.interrupting:
            yield
            return
        if self._serial is None:
            self._serial = asyncio.Lock()
        self._waiting += 1
        try:
            await self._serial.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._serial.release()

    async def list_models(self, request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        call, body = await self._begin(request, "/v1/chat/completions")
        messages = body.get("messages", [])
        self._classify(call, messages)
        if (
            self.api_key is not None
            and request.headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            call.status = 401
            return self._error(
                401, "Incorrect API key provided: ***.", "invalid_request_error", "invalid_api_key"
            )
        model = body.get("model")
        if model not in self.models:
            call.status = 404
            return self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        fault = self._take_fault(call.task, call.unit)
        call.fault = fault.kind if fault else None
        if fault and fault.kind == "unauthorized":
            call.status = 401
            return self._error(
                401, "Incorrect API key provided: ***.", "invalid_request_error", "invalid_api_key"
            )
        if fault and fault.kind == "rate_limit":
            call.status = 429
            after = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
            return self._error(
                429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", **after
            )
        if fault and fault.kind in ("server_error", "overloaded"):
            call.status = 500 if fault.kind == "server_error" else 503
            return self._error(
                call.status,
                "The server had an error while processing your request.",
                "server_error",
                None,
            )
        kind = (body.get("response_format") or {}).get("type", "text")
        if kind not in self.formats:
            call.status = 500
            return self._error(
                500,
                "1 validation error: ('body', 'response_format', 'type'): Input should be "
                + " or ".join(repr(f) for f in self.formats),
                "internal_server_error",
                None,
            )
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in self.reasoning_efforts:
            call.status = 400
            return self._error(
                400,
                f"Unsupported value: 'reasoning_effort' does not support {effort!r} with this model.",
                "invalid_request_error",
                "unsupported_value",
            )
        if not body.get("stream"):
            call.status = 400
            return self._error(400, "this fake only streams", "invalid_request_error", None)
        seed = int(body.get("seed") or 1)
        text = answer(messages, seed)
        if fault:
            text = damage(fault.kind, text, messages, seed)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._sse(call, fault, text, model, messages, usage, effort is not None),
            media_type="text/event-stream",
        )

    async def _sse(
        self,
        call: Call,
        fault: Fault | None,
        text: str,
        model: str,
        messages: list[dict[str, Any]],
        usage: bool,
        effort_used: bool = False,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if usage:
                data["usage"] = None
            data.update(extra)
            return f"data: {json.dumps(data)}\n\n".encode()

        kind = fault.kind if fault else None
        stop_at = int(len(text) * fault.at) if fault else len(text)
        if kind in ("cut", "truncate", "stream_error", "length"):
            text = text[:stop_at]
        async with self._turn(), self._pace(call):
            yield chunk({"role": "assistant", "content": ""})
            for piece in self._pieces(text, self.chunk_chars):
                if self.interrupting and self._waiting:
                    call.fault = "interrupted"
                    yield b"data: [DONE]\n\n"
                    return
                yield chunk({"content": piece})
                await asyncio.sleep(0.002 if self.interrupting else 0)
            if kind == "cut":
                raise _CutStream()
            if kind == "truncate":
                return
            if kind == "stream_error":
                error = {"error": {"message": "The server had an error", "type": "server_error"}}
                yield f"data: {json.dumps(error)}\n\n".encode()
                return
            finish = "length" if kind == "length" else "stop"
            yield chunk({}, finish)
            if usage:
                prompt = sum(count_tokens(str(m.get("content", ""))) for m in messages)
                completion = count_tokens(text)
                tail: dict[str, Any] = {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }
                if effort_used:
                    tail["completion_tokens_details"] = {"reasoning_tokens": REASONING_TOKENS}
                    tail["completion_tokens"] += REASONING_TOKENS
                    tail["total_tokens"] += REASONING_TOKENS
                data = json.loads(chunk({})[6:])
                data["choices"] = []
                data["usage"] = tail
                yield f"data: {json.dumps(data)}\n\n".encode()
            call.text = text
            call.finished = True
            call.ended = time.monotonic()
            yield b"data: [DONE]\n\n"


class FakeAnthropicServer(FakeServer):
    """Speaks ``POST /v1/messages`` with Anthropic's streaming event format."""

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    @staticmethod
    def _error(status: int, kind: str, message: str, **headers: str) -> Response:
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def messages(self, request: Request) -> Response:
        call, body = await self._begin(request, "/v1/messages")
        messages = list(body.get("messages", []))
        self._classify(call, messages)
        # Anthropic takes the key as x-api-key or (as the current SDK sends it) a bearer token
        keys = {request.headers.get("x-api-key"), request.headers.get("authorization")}
        if self.api_key is not None and not keys & {self.api_key, f"Bearer {self.api_key}"}:
            call.status = 401
            return self._error(401, "authentication_error", "invalid x-api-key")
        model = body.get("model")
        if model not in self.models:
            call.status = 404
            return self._error(404, "not_found_error", f"model: {model}")
        fault = self._take_fault(call.task, call.unit)
        call.fault = fault.kind if fault else None
        if fault and fault.kind == "unauthorized":
            call.status = 401
            return self._error(401, "authentication_error", "invalid x-api-key")
        if fault and fault.kind == "rate_limit":
            call.status = 429
            after = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
            return self._error(
                429, "rate_limit_error", "Number of requests has exceeded your rate limit", **after
            )
        if fault and fault.kind in ("server_error", "overloaded"):
            call.status = 500 if fault.kind == "server_error" else 529
            kind = "api_error" if fault.kind == "server_error" else "overloaded_error"
            return self._error(
                call.status, kind, "Overloaded" if call.status == 529 else "Internal server error"
            )
        if not body.get("stream"):
            call.status = 400
            return self._error(400, "invalid_request_error", "this fake only streams")
        text = answer(messages, 1)
        if fault:
            text = damage(fault.kind, text, messages, 1)
        return StreamingResponse(
            self._sse(call, fault, text, model, body), media_type="text/event-stream"
        )

    async def _sse(
        self, call: Call, fault: Fault | None, text: str, model: str, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        kind = fault.kind if fault else None
        if kind in ("cut", "truncate", "stream_error", "length"):
            text = text[: int(len(text) * fault.at)]  # type: ignore[union-attr]
        system = body.get("system") or ""
        prompt = count_tokens(system if isinstance(system, str) else json.dumps(system)) + sum(
            count_tokens(str(m.get("content", ""))) for m in body.get("messages", [])
        )
        tool = (body.get("tool_choice") or {}).get("name")
        block: dict[str, Any] = (
            {"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {}}
            if tool
            else {"type": "text", "text": ""}
        )
        async with self._pace(call):
            yield event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": model,
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": prompt, "output_tokens": 1},
                    },
                },
            )
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": block,
                },
            )
            yield event("ping", {"type": "ping"})
            for piece in self._pieces(text, self.chunk_chars):
                delta = (
                    {"type": "input_json_delta", "partial_json": piece}
                    if tool
                    else {"type": "text_delta", "text": piece}
                )
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
                await asyncio.sleep(0)
            if kind == "cut":
                raise _CutStream()
            if kind == "truncate":
                return
            if kind == "stream_error":
                error = {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                }
                yield event("error", error)
                return
            yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
            stop = "max_tokens" if kind == "length" else "tool_use" if tool else "end_turn"
            yield event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": count_tokens(text)},
                },
            )
            call.text = text
            call.finished = True
            call.ended = time.monotonic()
            yield event("message_stop", {"type": "message_stop"})


PREMISE_CONTEXT = {
    "premise": "A lighthouse keeper finds letters in bottles that predict the next storm",
    "genre": "mystery",
    "unit": "all",
}


def stream_in_one_loop(backend: Any, units: tuple[str, ...] = ("u1", "u2", "u3")) -> None:
    """Stream one request per unit, one after another on one event loop, then close."""

    async def go() -> None:
        try:
            for unit in units:
                assert [chunk async for chunk in backend.stream(prompt_request(unit=unit))]
        finally:
            await backend.aclose()

    asyncio.run(go())


def prompt_request(
    task: str = "premise",
    context: dict[str, Any] | None = None,
    *,
    model: str = "fake-model",
    json_schema: dict[str, Any] | None = None,
    schema_name: str | None = None,
    extra: tuple[Any, ...] = (),
    stage: str | None = None,
    unit: str = "all",
    max_output_tokens: int = 4096,
) -> Any:
    """A Request shaped like the ones novelkit's stages send (Task line + material block)."""
    from novelkit.llm import render_material
    from novelkit.llm.base import Message
    from novelkit.llm.base import Request as LLMRequest

    context = dict(PREMISE_CONTEXT if context is None else context)
    user = f"Task: {task}\n\nDo the task.\n\n{render_material(context)}"
    request = LLMRequest(
        stage=stage or task,
        unit=unit,
        task=task,
        messages=(Message("system", "You are a novelist."), Message("user", user)),
        model=model,
        max_output_tokens=max_output_tokens,
        json_schema=json_schema,
        schema_name=schema_name,
        context=context,
    )
    return request.with_messages(*extra) if extra else request


def main() -> None:
    """Serve a fake in its own process: prints its URL, stops when stdin closes (benchmarks)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="a fake LLM server on 127.0.0.1")
    parser.add_argument("--kind", choices=("openai", "anthropic"), default="openai")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--no-key", action="store_true", help="accept requests without a key")
    args = parser.parse_args()
    server_class = FakeOpenAIServer if args.kind == "openai" else FakeAnthropicServer
    key = None if args.no_key else args.api_key
    with server_class(latency=args.latency, api_key=key) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
