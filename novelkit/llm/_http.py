"""Pieces the HTTP backends (openai, anthropic) share: settings, prompts, per-loop clients, and
the server-sent event stream of a response read as plain JSON."""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .._errors import BackendConfigError, ConfigError, TransientBackendError
from .base import Message, Request

if TYPE_CHECKING:
    import httpx2

    from .._config import NovelConfig

__all__ = [
    "COMMON_OPTIONS",
    "LoopBound",
    "body_bytes",
    "check_base_url",
    "http_library",
    "public_url",
    "read_key",
    "resolve_credentials",
    "shared_ssl_context",
    "sse_events",
    "wire_body",
    "with_schema_instruction",
]

COMMON_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "api_key_env": str,
    "timeout": (int, float),
    "extra_body": dict,
}

LOCAL_KEY = "not-needed"  # local servers accept any key, but the SDKs want one

ClientT = TypeVar("ClientT")


def check_base_url(url: str) -> str:
    """Reject a base URL that cannot work before any request is made."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base_url = {url!r} is invalid: it must look like http://localhost:11434/v1 "
            "or https://api.openai.com/v1"
        )
    return url.rstrip("/")


def public_url(url: str) -> str:
    """The URL without user:password@ (safe to write into a cassette or an error)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def read_key(environ: Mapping[str, str], variable: str) -> str | None:
    value = environ.get(variable, "").strip()
    return value or None


def with_schema_instruction(request: Request) -> tuple[Message, ...]:
    """The messages with the JSON schema appended to the first user message (the task)."""
    if request.json_schema is None:
        return request.messages
    schema = json.dumps(request.json_schema, ensure_ascii=False, separators=(",", ":"))
    instruction = (
        "\n\nReply with one JSON object only — no prose, no Markdown code fences — that "
        f"validates against this JSON schema:\n{schema}"
    )
    messages = list(request.messages)
    for index, message in enumerate(messages):
        if message.role == "user":
            messages[index] = Message("user", message.content + instruction)
            break
    return tuple(messages)


class LoopBound(Generic[ClientT]):
    """One SDK client per event loop, closed with it.

    An httpx pool must not outlive or be shared between loops, and a job runs each time in a
    fresh ``asyncio.run``. A started async generator holds the client: when the loop shuts down
    its async generators (``asyncio.run`` does, before closing), its ``finally`` closes the
    client, so no socket is left open even if nobody calls ``aclose``.
    """

    def __init__(
        self, factory: Callable[[], ClientT], close: Callable[[ClientT], Awaitable[None]]
    ) -> None:
        self._factory = factory
        self._close = close
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: ClientT | None = None
        self._guard: AsyncGenerator[None, None] | None = None

    async def get(self) -> ClientT:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            client = self._factory()
            guard = self._hold(client)
            await guard.__anext__()  # registered with the loop from now on
            self._client, self._loop, self._guard = client, loop, guard
        return self._client

    async def _hold(self, client: ClientT) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close(client)

    async def aclose(self) -> None:
        """Close this loop's client now (a client of another, finished loop is already closed)."""
        guard, loop = self._guard, self._loop
        self._client = self._loop = self._guard = None
        if guard is not None and loop is asyncio.get_running_loop():
            await guard.aclose()


def http_library(sdk: ModuleType) -> ModuleType:
    """The HTTP library an SDK (the ``openai`` or ``anthropic`` module) is built on: httpx2
    from openai 3 and anthropic 2 on, httpx before them. Its responses, transports and errors
    are the ones the SDK's client takes and raises."""
    for cls in sdk.DefaultAsyncHttpxClient.__mro__:
        top = cls.__module__.partition(".")[0]
        if top not in (sdk.__name__, "builtins"):
            return importlib.import_module(top)
    raise ImportError(f"{sdk.__name__}.DefaultAsyncHttpxClient is not an HTTP library's client")


@functools.cache
def shared_ssl_context(http: ModuleType) -> ssl.SSLContext:
    """One TLS context for every client of the HTTP library ``http``: building one costs
    ~20 ms, and each job's loop needs a fresh client."""
    context: ssl.SSLContext = http.create_ssl_context()
    return context


def environ_or_default(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def resolve_credentials(
    config: NovelConfig,
    options: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    backend: str,
    provider: str,
    key_var: str,
    base_var: str,
    official_host: str,
    example_model: str,
    local_hint: str = "",
) -> tuple[str, str | None, str, str]:
    """``(model, base_url, key_setting, api_key)`` from novel.toml and the environment.

    A local server (any base_url but the provider's own) needs no key.
    """
    if not config.model:
        raise ConfigError(
            f"the {backend} backend needs a model: set `model` in novel.toml (for example "
            f"{example_model})"
        )
    base_url = config.base_url or read_key(environ, base_var)
    key_setting: str = options.get("api_key_env", key_var)
    api_key = read_key(environ, key_setting)
    if api_key is None:
        if base_url is None or official_host in base_url:
            raise BackendConfigError(
                f"{key_setting} is missing: set it in the environment to your {provider} API "
                f"key (or set backend_options.api_key_env to the variable that holds it{local_hint})"
            )
        api_key = LOCAL_KEY
    return config.model, base_url, key_setting, api_key


def wire_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON to send: ``extra_body`` merged over the rest, as the SDKs' ``create`` does."""
    extra = body.get("extra_body")
    wire = {key: value for key, value in body.items() if key != "extra_body"}
    return {**wire, **extra} if extra else wire


def body_bytes(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body as it arrives, without the decoding layer (one generator step per event) when
    the server did not compress it, as event streams rarely are; a body already read (a mock
    transport's) comes from memory."""
    identity = response.headers.get("content-encoding", "identity") == "identity"
    if identity and not response.is_stream_consumed:
        return response.aiter_raw()
    return response.aiter_bytes()


async def sse_events(body: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to its end or ``data: [DONE]``.

    Event names are not needed (both APIs repeat them in the payload's ``type``). After
    ``[DONE]`` the body is still read to its end (normally just the chunked terminator), so
    the connection goes back to the pool instead of being closed.
    """
    data: list[bytes] = []
    pending = b""
    done = False
    async for piece in body:
        if done:
            continue
        lines = (pending + piece).splitlines(keepends=True)
        # an unterminated last line, or a CR that may be the first half of CRLF, waits for more
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            event = _sse_line(line.rstrip(b"\r\n"), data)
            if event is _DONE:
                done = True
                break
            if event is not None:
                yield event
    if done:
        return
    if pending:
        _sse_line(pending.rstrip(b"\r\n"), data)
    if data and data != [b"[DONE]"]:
        raise TransientBackendError("the stream ended in the middle of an event")


_DONE: dict[str, Any] = {}


def _sse_line(line: bytes, data: list[bytes]) -> dict[str, Any] | None:
    """Take one line; the event's payload (or ``_DONE``) when a blank line ends the event."""
    if line.startswith(b"data:"):
        data.append(line[5:].lstrip())
        return None
    if line or not data:
        return None  # comments, event names, retry hints; or a blank line with nothing pending
    payload = b"\n".join(data)
    data.clear()
    if payload == b"[DONE]":
        return _DONE
    try:
        parsed = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TransientBackendError(
            f"the stream sent a malformed event: {payload[:200]!r}"
        ) from None
    return parsed if isinstance(parsed, dict) else None
