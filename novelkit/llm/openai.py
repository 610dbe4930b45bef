"""The OpenAI-compatible backend: OpenAI itself, or a local Ollama, vLLM, llama.cpp, LM Studio.

Built on the official ``openai`` SDK (async, streaming), imported only when this backend is
chosen. The SDK's own retries are off: ``_retry.with_retries`` retries, so every wait is
reported to the job as a ``Retrying`` chunk.

    backend = "openai"
    model = "gpt-4o-mini"
    base_url = "http://localhost:11434/v1"      # optional; also read from OPENAI_BASE_URL
    [backend_options]
    structured_output = "json_schema"           # or "json_object" / "none"
    max_concurrency = 8
    rpm = 500
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from .._errors import BackendError, ConfigError, TransientBackendError
from . import check_options
from ._http import (
    COMMON_OPTIONS,
    LoopBound,
    body_bytes,
    check_base_url,
    environ_or_default,
    public_url,
    resolve_credentials,
    shared_ssl_context,
    sse_events,
    wire_body,
    with_schema_instruction,
)
from ._ratelimit import LIMIT_OPTIONS, RateLimiter
from ._retry import RETRY_OPTIONS, RetryPolicy, error_for_status, with_retries
from .base import Chunk, Delta, Done, Request, Usage, count_tokens

if TYPE_CHECKING:
    import httpx2
    from openai import AsyncOpenAI

    from .._config import NovelConfig

__all__ = ["OpenAIBackend"]

StructuredOutput = Literal["json_schema", "json_object", "none"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

OPTIONS: dict[str, type | tuple[type, ...]] = {
    **COMMON_OPTIONS,
    **RETRY_OPTIONS,
    **LIMIT_OPTIONS,
    "structured_output": str,
    "max_tokens_param": str,
    "stream_usage": bool,
    "send_seed": bool,
}


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise ImportError(
            "the openai backend needs the openai SDK: pip install 'novelkit[openai]'"
        ) from None
    return openai


class OpenAIBackend:
    """Streams chat completions from any server that speaks the OpenAI chat API."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        key_setting: str = "OPENAI_API_KEY",
        structured_output: StructuredOutput = "json_schema",
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None,
        stream_usage: bool = True,
        send_seed: bool = True,
        timeout: float = 600.0,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.model = model
        self.base_url = check_base_url(base_url)
        self.key_setting = key_setting
        self.structured_output: StructuredOutput = structured_output
        official = "api.openai.com" in self.base_url
        # OpenAI deprecated max_tokens; most local servers only know max_tokens
        self.max_tokens_param = max_tokens_param or (
            "max_completion_tokens" if official else "max_tokens"
        )
        self.stream_usage = stream_usage
        self.send_seed = send_seed
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self._api_key = api_key
        self._clients: LoopBound[AsyncOpenAI] = LoopBound(self._new_client, _close_client)

    @classmethod
    def from_config(
        cls,
        config: NovelConfig,
        options: dict[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> OpenAIBackend:
        """Build from novel.toml settings; ``environ`` defaults to ``os.environ``."""
        check_options(options, OPTIONS, "openai")
        env = environ_or_default(environ)
        model, base_url, key_setting, api_key = resolve_credentials(
            config,
            options,
            env,
            backend="openai",
            provider="OpenAI",
            key_var="OPENAI_API_KEY",
            base_var="OPENAI_BASE_URL",
            official_host="api.openai.com",
            example_model="'gpt-4o-mini', or 'llama3.1' for Ollama",
            local_hint=", or `base_url` for a local server",
        )
        structured = options.get("structured_output", "json_schema")
        if structured not in ("json_schema", "json_object", "none"):
            raise ConfigError(
                f"backend_options.structured_output = {structured!r} is invalid: "
                "expected 'json_schema', 'json_object' or 'none'"
            )
        param = options.get("max_tokens_param")
        if param not in (None, "max_tokens", "max_completion_tokens"):
            raise ConfigError(
                f"backend_options.max_tokens_param = {param!r} is invalid: "
                "expected 'max_tokens' or 'max_completion_tokens'"
            )
        return cls(
            model=model,
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            key_setting=key_setting,
            structured_output=structured,
            max_tokens_param=param,
            stream_usage=options.get("stream_usage", True),
            send_seed=options.get("send_seed", True),
            timeout=float(options.get("timeout", 600.0)),
            extra_body=options.get("extra_body"),
            retry=RetryPolicy.from_options(options),
            limiter=RateLimiter.from_options(options),
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={public_url(self.base_url)!r})"

    def _new_client(self) -> AsyncOpenAI:
        openai = _import_openai()
        client: AsyncOpenAI = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        )
        return client

    def body(self, request: Request) -> dict[str, Any]:
        """The request body for ``POST /chat/completions``, in the form of
        ``chat.completions.create``'s keyword arguments (``extra_body`` is merged in when it is
        sent)."""
        structured = request.json_schema is not None and self.structured_output != "none"
        # a continuation must extend the partial text, not start a fresh JSON object
        constrain = structured and request.task != "continue"
        needs_text_schema = (
            request.json_schema is not None and self.structured_output != "json_schema"
        )
        messages = with_schema_instruction(request) if needs_text_schema else request.messages
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": request.temperature,
            self.max_tokens_param: request.max_output_tokens,
            "stream": True,
        }
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if self.send_seed:
            body["seed"] = request.seed
        if constrain and self.structured_output == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.schema_name),
                    "schema": request.json_schema,
                    "strict": False,
                },
            }
        elif constrain and self.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        if self.extra_body:
            body["extra_body"] = dict(self.extra_body)
        return body

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        what = f"the {request.task} call of {request.stage}/{request.unit}"
        return with_retries(lambda: self._attempt(request), self.retry, what=what)

    async def _attempt(self, request: Request) -> AsyncIterator[Chunk]:
        openai = _import_openai()
        body = self.body(request)
        model = body["model"]
        estimate = request.prompt_tokens + request.max_output_tokens
        async with self.limiter.slot(estimate) as permit:
            client = await self._clients.get()
            parts: list[str] = []
            finish: str | None = None
            usage: Usage | None = None
            served_by = model
            try:
                response = await _post_stream(openai, client, wire_body(body))
                try:
                    async for chunk in sse_events(body_bytes(response)):
                        if "error" in chunk:
                            error = chunk["error"]
                            message = error.get("message") if isinstance(error, dict) else error
                            raise TransientBackendError(f"the stream reported an error: {message}")
                        served_by = chunk.get("model") or served_by
                        counted = chunk.get("usage")
                        if counted:
                            usage = Usage(
                                int(counted.get("prompt_tokens") or 0),
                                int(counted.get("completion_tokens") or 0),
                            )
                        for choice in chunk.get("choices") or ():
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                parts.append(content)
                                yield Delta(content)
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
                finally:
                    await response.aclose()
            except _transport_errors() as exc:  # the connection dropped while reading the body
                raise TransientBackendError(
                    f"lost the connection to {public_url(self.base_url)} mid-stream ({exc!r})"
                ) from None
            except openai.APIStatusError as exc:
                raise self._status_error(exc, model) from None
            except openai.APITimeoutError:
                raise TransientBackendError(
                    f"{public_url(self.base_url)} did not answer within {self.timeout:g} s"
                ) from None
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                raise TransientBackendError(
                    f"lost the connection to {public_url(self.base_url)} ({cause!r}); is the "
                    "server running and `base_url` right?"
                ) from None
            if finish is None:
                raise TransientBackendError(
                    f"the stream from {public_url(self.base_url)} ended before the response "
                    f"was finished ({len(''.join(parts))} characters in)"
                )
            if finish == "content_filter":
                raise BackendError(
                    f"the content filter of {model!r} stopped {request.stage}/{request.unit}; "
                    "edit the material or use another model"
                )
            if usage is None:  # servers that ignore stream_options
                usage = Usage(request.prompt_tokens, count_tokens("".join(parts)))
            permit.settle(usage.total_tokens)
            reason = "length" if finish == "length" else "stop"
            yield Done(usage, reason, served_by)

    def _status_error(self, exc: Any, model: str) -> BackendError:
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = str(body.get("message") or exc.message)
        if exc.status_code == 400 and self.structured_output == "json_schema":
            detail += (
                " — if this server does not support structured outputs, set "
                "backend_options.structured_output = 'json_object' (or 'none')"
            )
        return error_for_status(
            exc.status_code,
            detail,
            headers=cast(Mapping[str, str], exc.response.headers),
            key_setting=self.key_setting,
            model=model,
            base_url=public_url(self.base_url),
            code=exc.code,
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


async def _post_stream(openai: Any, client: AsyncOpenAI, body: dict[str, Any]) -> httpx2.Response:
    """POST the chat completion through the SDK's own request path (auth, base_url, timeouts,
    status errors) and return the response with its body unread.

    ``chat.completions.create`` would first walk every message through the SDK's recursive
    TypedDict transform, which costs milliseconds a call and changes nothing for plain
    role/content dicts; ``client.post(..., cast_to=httpx2.Response)`` is how the SDK's README
    ("Undocumented endpoints") gets the response itself.
    """
    import httpx2  # the SDK's own HTTP library, loaded with it

    response: httpx2.Response = await client.post(
        "/chat/completions",
        cast_to=httpx2.Response,
        body=body,
        options={"security": {"bearer_auth": True}},
        stream=True,
        stream_cls=openai.AsyncStream,
    )
    return response


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """The transport error classes of the HTTP library the openai SDK uses (httpx or httpx2)."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)


def _schema_name(name: str | None) -> str:
    """OpenAI wants ^[a-zA-Z0-9_-]{1,64}$."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name or "response").strip("_")
    return (cleaned or "response")[:64]


async def _close_client(client: AsyncOpenAI) -> None:
    await client.close()
