"""The Anthropic backend, on the official ``anthropic`` SDK (async, streaming Messages API).

The SDK is imported only when this backend is chosen and its own retries are off; the system
message goes in ``system=``. A structured answer comes through forced tool use: the answer's
JSON schema is the one tool's ``input_schema`` and ``tool_choice`` names it, so the model
answers with the tool's input instead of prose around a JSON object.

    backend = "anthropic"
    model = "claude-sonnet-4-5"
    [backend_options]
    max_concurrency = 4
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from .._errors import BackendError, TransientBackendError
from ._http import (
    COMMON_OPTIONS,
    LoopBound,
    check_base_url,
    environ_or_default,
    http_library,
    public_url,
    resolve_credentials,
    shared_ssl_context,
)
from ._options import check_options
from ._ratelimit import LIMIT_OPTIONS, RateLimiter
from ._retry import RETRY_OPTIONS, RetryPolicy, error_for_status, with_retries
from .base import Chunk, Delta, Done, Request, Usage, count_tokens

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from .._config import NovelConfig

__all__ = ["AnthropicBackend"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

OPTIONS: dict[str, type | tuple[type, ...]] = {**COMMON_OPTIONS, **RETRY_OPTIONS, **LIMIT_OPTIONS}

# error types Anthropic sends in an `event: error` inside a 200 stream
_TRANSIENT_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


def _import_anthropic() -> Any:
    try:
        import anthropic
    except ImportError:
        raise ImportError(
            "the anthropic backend needs the anthropic SDK: pip install 'novelkit[anthropic]'"
        ) from None
    return anthropic


class AnthropicBackend:
    """Streams messages from Anthropic's Messages API (or a server that speaks it)."""

    name = "anthropic"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        key_setting: str = "ANTHROPIC_API_KEY",
        timeout: float = 600.0,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.model = model
        # the SDK adds /v1/messages itself
        self.base_url = check_base_url(base_url).removesuffix("/v1")
        self.key_setting = key_setting
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self._api_key = api_key
        self._clients: LoopBound[AsyncAnthropic] = LoopBound(self._new_client, _close_client)

    @classmethod
    def from_config(
        cls,
        config: NovelConfig,
        options: dict[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> AnthropicBackend:
        """Build from novel.toml settings; ``environ`` defaults to ``os.environ``."""
        check_options(options, OPTIONS, "anthropic")
        env = environ_or_default(environ)
        model, base_url, key_setting, api_key = resolve_credentials(
            config,
            options,
            env,
            backend="anthropic",
            provider="Anthropic",
            key_var="ANTHROPIC_API_KEY",
            base_var="ANTHROPIC_BASE_URL",
            official_host="api.anthropic.com",
            example_model="'claude-sonnet-4-5'",
        )
        return cls(
            model=model,
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            key_setting=key_setting,
            timeout=float(options.get("timeout", 600.0)),
            extra_body=options.get("extra_body"),
            retry=RetryPolicy.from_options(options),
            limiter=RateLimiter.from_options(options),
        )

    def __repr__(self) -> str:
        return f"AnthropicBackend(model={self.model!r}, base_url={public_url(self.base_url)!r})"

    def _new_client(self) -> AsyncAnthropic:
        anthropic = _import_anthropic()
        client: AsyncAnthropic = anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=anthropic.DefaultAsyncHttpxClient(
                verify=shared_ssl_context(http_library(anthropic))
            ),
            **_no_telemetry(anthropic.AsyncAnthropic),
        )
        return client

    def body(self, request: Request) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for ``request``."""
        system: list[str] = []
        turns: list[dict[str, str]] = []
        for message in request.messages:
            if message.role == "system":
                system.append(message.content)
            elif turns and turns[-1]["role"] == message.role:  # the API wants alternating turns
                turns[-1]["content"] += "\n\n" + message.content
            else:
                turns.append({"role": message.role, "content": message.content})
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_output_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.json_schema is not None and request.task != "continue":
            name = _tool_name(request.schema_name)
            body["tools"] = [
                {
                    "name": name,
                    "description": f"Record the {request.task} as structured data.",
                    "input_schema": request.json_schema,
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": name}
        if self.extra_body:
            body["extra_body"] = dict(self.extra_body)
        return body

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        what = f"the {request.task} call of {request.stage}/{request.unit}"
        return with_retries(lambda: self._attempt(request), self.retry, what=what)

    async def _attempt(self, request: Request) -> AsyncIterator[Chunk]:
        anthropic = _import_anthropic()
        transport_error = http_library(anthropic).TransportError
        body = self.body(request)
        model = body["model"]
        estimate = request.prompt_tokens + request.max_output_tokens
        async with self.limiter.slot(estimate) as permit:
            client = await self._clients.get()
            parts: list[str] = []
            prompt_tokens: int | None = None
            completion_tokens: int | None = None
            stop_reason: str | None = None
            stopped = False
            served_by = model
            try:
                stream = await client.messages.create(**body)
                try:
                    async for event in stream:
                        kind = event.type
                        if kind == "content_block_delta":
                            delta = event.delta
                            text = (
                                delta.text
                                if delta.type == "text_delta"
                                else delta.partial_json
                                if delta.type == "input_json_delta"
                                else ""
                            )
                            if text:
                                parts.append(text)
                                yield Delta(text)
                        elif kind == "message_start":
                            served_by = event.message.model or served_by
                            prompt_tokens = _input_tokens(event.message.usage)
                        elif kind == "message_delta":
                            stop_reason = event.delta.stop_reason or stop_reason
                            if event.usage.output_tokens is not None:
                                completion_tokens = int(event.usage.output_tokens)
                            if getattr(event.usage, "input_tokens", None) is not None:
                                prompt_tokens = _input_tokens(event.usage)
                        elif kind == "message_stop":
                            stopped = True
                finally:
                    await stream.close()
            except anthropic.APIStatusError as exc:
                raise self._status_error(exc, model) from None
            except anthropic.APITimeoutError:
                raise TransientBackendError(
                    f"{public_url(self.base_url)} did not answer within {self.timeout:g} s"
                ) from None
            except (anthropic.APIConnectionError, transport_error) as exc:
                cause = exc.__cause__ or exc
                raise TransientBackendError(
                    f"lost the connection to {public_url(self.base_url)} ({cause!r})"
                ) from None
            except anthropic.APIError as exc:  # an error event inside the stream
                raise _stream_error(exc.body if isinstance(exc.body, dict) else {}) from None
            if not stopped:
                raise TransientBackendError(
                    f"the stream from {public_url(self.base_url)} ended before message_stop "
                    f"({len(''.join(parts))} characters in)"
                )
            if stop_reason == "refusal":
                raise BackendError(
                    f"{model!r} refused to write {request.stage}/{request.unit}; edit the "
                    "material or use another model"
                )
            usage = Usage(
                request.prompt_tokens if prompt_tokens is None else prompt_tokens,
                completion_tokens
                if completion_tokens is not None
                else count_tokens("".join(parts)),
            )
            permit.settle(usage.total_tokens)
            truncated = stop_reason in ("max_tokens", "model_context_window_exceeded")
            yield Done(usage, "length" if truncated else "stop", served_by)

    def _status_error(self, exc: Any, model: str) -> BackendError:
        payload = exc.body if isinstance(exc.body, dict) else {}
        error = payload.get("error")
        error = error if isinstance(error, dict) else payload
        if exc.status_code == 200:
            # an `event: error` inside a stream that started well (overloaded and the like)
            return _stream_error(error)
        # error.message, which anthropic 2 also offers as exc.api_message
        detail = str(error.get("message") or exc.message)
        return error_for_status(
            exc.status_code,
            detail,
            headers=cast(Mapping[str, str], exc.response.headers),
            key_setting=self.key_setting,
            model=model,
            base_url=public_url(self.base_url),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


def _input_tokens(usage: Any) -> int:
    """All prompt tokens: fresh, written to and read from the prompt cache."""
    return sum(
        int(getattr(usage, name, None) or 0)
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _stream_error(error: Any) -> BackendError:
    """An ``event: error`` inside a 200 stream: overloaded and the like are retried."""
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "error")
    detail = str(error.get("message") or "no detail given")
    if kind in _TRANSIENT_TYPES:
        return TransientBackendError(f"the stream reported {kind}: {detail}")
    return BackendError(f"the stream reported {kind}: {detail}")


def _tool_name(name: str | None) -> str:
    """Tool names match ^[a-zA-Z0-9_-]{1,64}$."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name or "answer").strip("_")
    return (cleaned or "answer")[:64]


@functools.cache
def _no_telemetry(client_class: type) -> dict[str, Any]:
    """``open_telemetry=False`` where the SDK has it (anthropic 2 on), so no spans are made."""
    accepted = inspect.signature(client_class).parameters
    return {"open_telemetry": False} if "open_telemetry" in accepted else {}


async def _close_client(client: AsyncAnthropic) -> None:
    await client.close()
