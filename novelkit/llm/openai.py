"""The OpenAI-compatible backend: OpenAI itself, or a local Ollama, vLLM, llama.cpp, LM Studio.

Built on the official ``openai`` SDK (async, streaming), imported only when this backend is
chosen. The SDK's own retries are off: ``_retry.with_retries`` retries, so every wait is
reported to the job as a ``Retrying`` chunk.

    backend = "openai"
    model = "gpt-4o-mini"
    base_url = "http://localhost:11434/v1"      # optional; also read from OPENAI_BASE_URL
    [backend_options]
    structured_output = "auto"      # or json_schema / json_object_schema / json_object / prompt
    max_concurrency = 8
    context_window = 8192           # when the server does not say it
    reasoning_effort = "low"        # for reasoning models
    rpm = 500

Structured output takes the strongest mechanism the server offers: ``json_schema`` (OpenAI,
vLLM, llama.cpp, Ollama), then ``json_object`` with a ``schema`` (llama-cpp-python), then
``json_object`` with the schema in the prompt, then the prompt alone. A server that rejects a
``response_format`` is found out on the first structured call and the choice is remembered in
the project (``.novelkit/server.json``). What the server says of itself (llama.cpp ``/props``,
vLLM ``/v1/models``, Ollama ``/api/show``: slots, context window) is read once, before the
first call.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from .._errors import BackendConfigError, BackendError, ConfigError, TransientBackendError
from ._http import (
    COMMON_OPTIONS,
    LoopBound,
    check_base_url,
    environ_or_default,
    http_library,
    public_url,
    resolve_credentials,
    shared_ssl_context,
    with_schema_instruction,
)
from ._options import check_options
from ._ratelimit import LIMIT_OPTIONS, RateLimiter
from ._retry import RETRY_OPTIONS, RetryPolicy, error_for_status, with_retries
from ._server import api_root, context_from, load_facts, save_facts
from .base import Chunk, Delta, Done, Request, Usage, count_tokens

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from .._config import NovelConfig

__all__ = ["OpenAIBackend"]

log = logging.getLogger("novelkit")

StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "prompt"]
LADDER: tuple[StructuredOutput, ...] = (
    "json_schema",
    "json_object_schema",
    "json_object",
    "prompt",
)
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")

DEFAULT_BASE_URL = "https://api.openai.com/v1"

OPTIONS: dict[str, type | tuple[type, ...]] = {
    **COMMON_OPTIONS,
    **RETRY_OPTIONS,
    **LIMIT_OPTIONS,
    "structured_output": str,
    "max_tokens_param": str,
    "stream_usage": bool,
    "send_seed": bool,
    "context_window": int,
    "reasoning_effort": str,
}


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise ImportError(
            "the openai backend needs the openai SDK: pip install 'novelkit[openai]'"
        ) from None
    return openai


class _FormatRejected(BackendError):
    """The server refused the response_format it was sent: the next mechanism is tried."""


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
        structured_output: StructuredOutput | Literal["auto", "none"] = "auto",
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None,
        stream_usage: bool = True,
        send_seed: bool = True,
        timeout: float = 600.0,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        context_window: int | None = None,
        reasoning_effort: str | None = None,
        facts_path: Path | None = None,
    ) -> None:
        self.model = model
        self.base_url = check_base_url(base_url)
        self.key_setting = key_setting
        self.official = "api.openai.com" in self.base_url
        self.auto = structured_output == "auto"
        # OpenAI deprecated max_tokens; most local servers only know max_tokens
        self.max_tokens_param = max_tokens_param or (
            "max_completion_tokens" if self.official else "max_tokens"
        )
        self.stream_usage = stream_usage
        self.send_seed = send_seed
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self.reasoning_effort = reasoning_effort
        self._facts_path = facts_path
        self.facts = load_facts(facts_path, self.base_url, model)
        if not self.auto:  # "none" is the name "prompt" had before 0.2
            self.facts.structured_output = (
                "prompt" if structured_output == "none" else structured_output
            )
        self.context_window = context_window
        self._answered = False  # the server answered once: a refused connection is transient
        self._probing: asyncio.Future[None] | None = None
        self._api_key = api_key
        self._clients: LoopBound[AsyncOpenAI] = LoopBound(self._new_client, _close_client)

    @property
    def structured_output(self) -> StructuredOutput:
        """The mechanism structured calls use now (learned in ``auto`` mode)."""
        chosen = self.facts.structured_output
        for mode in LADDER:
            if chosen == mode:
                return mode
        return next((m for m in LADDER if m not in self.facts.rejected), "prompt")

    @classmethod
    def from_config(
        cls,
        config: NovelConfig,
        options: dict[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        root: Path | None = None,
    ) -> OpenAIBackend:
        """Build from novel.toml settings; ``environ`` defaults to ``os.environ``; learned
        server facts are kept under ``root/.novelkit`` when a project folder is given."""
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
        structured = options.get("structured_output", "auto")
        if structured not in ("auto", "none", *LADDER):
            raise ConfigError(
                f"backend_options.structured_output = {structured!r} is invalid: expected "
                "'auto' (the default: the strongest the server accepts), "
                + ", ".join(repr(m) for m in LADDER)
            )
        param = options.get("max_tokens_param")
        if param not in (None, "max_tokens", "max_completion_tokens"):
            raise ConfigError(
                f"backend_options.max_tokens_param = {param!r} is invalid: "
                "expected 'max_tokens' or 'max_completion_tokens'"
            )
        effort = options.get("reasoning_effort")
        if effort is not None and effort not in REASONING_EFFORTS:
            raise ConfigError(
                f"backend_options.reasoning_effort = {effort!r} is invalid: expected one of "
                + ", ".join(repr(e) for e in REASONING_EFFORTS)
            )
        window = options.get("context_window")
        if window is not None and window < 256:
            raise ConfigError(
                f"backend_options.context_window = {window} is too small: give the model's "
                "context length in tokens (for example 8192)"
            )
        return cls(
            model=model,
            api_key=api_key,
            base_url=with_api_path(base_url or DEFAULT_BASE_URL),
            key_setting=key_setting,
            structured_output=structured,
            max_tokens_param=param,
            stream_usage=options.get("stream_usage", True),
            send_seed=options.get("send_seed", True),
            timeout=float(options.get("timeout", 600.0)),
            extra_body=options.get("extra_body"),
            retry=RetryPolicy.from_options(options),
            limiter=RateLimiter.from_options(options),
            context_window=window,
            reasoning_effort=effort,
            facts_path=root / ".novelkit" / "server.json" if root is not None else None,
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
            http_client=openai.DefaultAsyncHttpxClient(
                verify=shared_ssl_context(http_library(openai))
            ),
        )
        return client

    def body(self, request: Request, mode: StructuredOutput | None = None) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request``, with
        structured output by ``mode`` (the backend's current mechanism by default)."""
        mode = mode or self.structured_output
        structured = request.json_schema is not None
        # a continuation must extend the partial text, not start a fresh JSON object
        constrain = structured and request.task != "continue"
        in_prompt = structured and mode in ("json_object", "prompt")
        messages = with_schema_instruction(request) if in_prompt else request.messages
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": request.temperature,
            self.max_tokens_param: self._max_tokens(request),
            "stream": True,
        }
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if self.send_seed:
            body["seed"] = request.seed
        if self.reasoning_effort is not None:
            body["reasoning_effort"] = self.reasoning_effort
        extra = dict(self.extra_body)
        if constrain and mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.schema_name),
                    "schema": request.json_schema,
                    "strict": False,
                },
            }
        elif constrain and mode == "json_object_schema":
            # llama-cpp-python's form: a grammar built from the schema (not in the SDK's types)
            extra["response_format"] = {"type": "json_object", "schema": request.json_schema}
        elif constrain and mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        if self.facts.kind == "ollama" and self.context_window:
            extra.setdefault("options", {"num_ctx": self.context_window})
        if extra:
            body["extra_body"] = extra
        return body

    def _max_tokens(self, request: Request) -> int:
        """The call's output limit, lowered to what the context window leaves (checked before
        the call by :meth:`_check_fits`)."""
        window = self.window
        if window is None:
            return request.max_output_tokens
        return max(1, min(request.max_output_tokens, window - _prompt_tokens(request)))

    @property
    def window(self) -> int | None:
        return self.context_window or self.facts.context_window

    def _check_fits(self, request: Request) -> None:
        window = self.window
        if window is None:
            return
        prompt = _prompt_tokens(request)
        room = window - prompt
        needed = min(request.max_output_tokens, MIN_ANSWER_TOKENS)
        if room < needed:
            raise BackendConfigError(
                f"stage {request.stage!r} unit {request.unit}: the prompt (~{prompt:,} tokens) "
                f"leaves {max(room, 0):,} of the model's {window:,}-token context window for the "
                f"answer, which needs at least {needed:,}. Raise the server's context size (and "
                "backend_options.context_window), or lower context_tokens in novel.toml; "
                "nothing was sent"
            )

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        return self._stream(request)

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        await self._probe()
        self._check_fits(request)
        what = f"the {request.task} call of {request.stage}/{request.unit}"
        while True:
            mode = self.structured_output
            try:
                async for chunk in with_retries(
                    functools.partial(self._attempt, request, mode), self.retry, what=what
                ):
                    yield chunk
                return
            except _FormatRejected as rejected:
                self._reject(mode, str(rejected))

    def _reject(self, mode: StructuredOutput, reason: str) -> None:
        if not self.auto or mode == "prompt":
            raise BackendError(
                f"{public_url(self.base_url)} refused structured output "
                f"(structured_output = {mode!r}): {reason}. Set "
                "backend_options.structured_output = 'auto' to let novelkit find what the "
                "server accepts"
            )
        if mode not in self.facts.rejected:
            self.facts.rejected.append(mode)
        if self.facts.structured_output == mode:
            self.facts.structured_output = None
        log.warning(
            "%s refused response_format %r; structured output now uses %r",
            public_url(self.base_url),
            mode,
            self.structured_output,
        )
        self._save()

    def _save(self) -> None:
        save_facts(self._facts_path, self.base_url, self.model, self.facts)

    async def _probe(self) -> None:
        """Read what the server says of itself, once per backend (every caller waits for the
        first probe). Probes are free GETs; any that fails is skipped."""
        if self.facts.probed or self.official:
            return
        if self._probing is not None:
            await asyncio.shield(self._probing)
            return
        self._probing = asyncio.get_running_loop().create_future()
        try:
            client = await self._clients.get()
            root = api_root(self.base_url)
            for kind, method, url, payload in (
                ("props", "get", f"{root}/props", None),
                ("models", "get", f"{self.base_url}/models", None),
                ("show", "post", f"{root}/api/show", {"model": self.model}),
            ):
                found = await _probe_json(client, method, url, payload)
                if found is _REFUSED:
                    raise BackendConfigError(
                        f"nothing answers at base_url = {public_url(self.base_url)!r}: start the "
                        "server, or set base_url in novel.toml to the address it listens on "
                        "(for example http://127.0.0.1:8080/v1); nothing was sent"
                    )
                if kind == "models":
                    _warn_unlisted(found, self.model, self.base_url)
                window, slots = context_from(kind, found, self.model)
                if window is not None or slots is not None:
                    self.facts.kind = {"props": "llama.cpp", "models": "vllm", "show": "ollama"}[
                        kind
                    ]
                    self.facts.context_window = self.facts.context_window or window
                    self.facts.slots = slots or self.facts.slots
                    break
            if self.facts.slots:
                self.limiter.learn_slots(self.facts.slots)
            self.facts.probed = True
            self._save()
        finally:
            self._probing.set_result(None)
            self._probing = None

    async def _attempt(self, request: Request, mode: StructuredOutput) -> AsyncIterator[Chunk]:
        openai = _import_openai()
        body = self.body(request, mode)
        model = body["model"]
        estimate = request.prompt_tokens + request.max_output_tokens
        async with self.limiter.slot(estimate) as permit:
            client = await self._clients.get()
            parts: list[str] = []
            finish: str | None = None
            usage: Usage | None = None
            served_by = model
            received = False
            try:
                stream = await client.chat.completions.create(**body)
                try:
                    async for chunk in stream:
                        received = True
                        served_by = chunk.model or served_by
                        if chunk.usage is not None:
                            usage = _usage(chunk.usage)
                        for choice in chunk.choices:
                            content = choice.delta.content if choice.delta else None
                            if content:
                                parts.append(content)
                                yield Delta(content)
                            if choice.finish_reason:
                                finish = choice.finish_reason
                finally:
                    await stream.close()
            except _transport_errors() as exc:  # the connection dropped while reading the body
                raise self._dropped(
                    f"lost the connection to {public_url(self.base_url)} mid-stream ({exc!r})"
                ) from None
            except openai.APIStatusError as exc:
                raise self._status_error(exc, model, body, _where(request)) from None
            except openai.APITimeoutError:
                raise TransientBackendError(
                    f"{public_url(self.base_url)} did not answer within {self.timeout:g} s"
                ) from None
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                if not self._answered and _refused(cause):
                    raise BackendConfigError(
                        f"nothing answers at base_url = {public_url(self.base_url)!r} "
                        f"({cause!r}): start the server, or fix base_url in novel.toml"
                    ) from None
                raise TransientBackendError(
                    f"lost the connection to {public_url(self.base_url)} ({cause!r}); is the "
                    "server running and `base_url` right?"
                ) from None
            except openai.APIError as exc:  # an error event inside the stream
                raise TransientBackendError(
                    f"the stream reported an error: {exc.message}"
                ) from None
            self._answered = True
            if not received:  # some servers fail a request only after a 200 (llama-cpp-python)
                raise await self._diagnose(body, model, _where(request))
            if finish is None or (not parts and self.limiter.in_flight > 1):
                raise self._dropped(
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
            self.limiter.succeeded()
            if request.json_schema is not None and self.facts.structured_output != mode:
                self.facts.structured_output = mode
                self._save()
            reason = "length" if finish == "length" else "stop"
            yield Done(usage, reason, served_by)

    async def _diagnose(self, body: dict[str, Any], model: str, where: str) -> BackendError:
        """Why a stream came back empty: the same request, unstreamed and one token long,
        gets the server's error where it has one (a prompt over the context window)."""
        openai = _import_openai()
        probe = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        probe[self.max_tokens_param] = 1
        fresh = self._new_client()  # the pooled connection of the broken stream may be unusable
        try:
            await fresh.chat.completions.create(**probe)
        except openai.APIStatusError as exc:
            return self._status_error(exc, model, body, where)
        except openai.APIConnectionError as exc:  # the server is gone: try again later
            log.debug("diagnosing an empty stream: %r", exc)
            return self._dropped(f"the stream from {public_url(self.base_url)} was empty")
        except openai.APIError as exc:  # it answered, in a form the SDK does not read
            log.debug("diagnosing an empty stream: %r", exc)
        finally:
            await fresh.close()
        # the prompt alone is accepted: the prompt and the answer's max_tokens together are not
        asked = body.get(self.max_tokens_param)
        return BackendConfigError(
            f"{where}: {public_url(self.base_url)} answered an empty stream, yet accepts the "
            f"same prompt with a one-token answer: the prompt and max_tokens ({asked}) do not "
            "fit the model's context window together. Set backend_options.context_window to "
            "the server's context size (its n_ctx) so answers are sized to fit, or raise that "
            "size; then resume"
        )

    def _dropped(self, message: str) -> TransientBackendError:
        """A stream that ended early; with others in flight, the server may serve one at a
        time (llama-cpp-python interrupts a stream when the next request arrives)."""
        lowered = self.limiter.dropped()
        if lowered is not None:
            message += (
                f"; the server drops concurrent streams, so novelkit now sends at most "
                f"{lowered} at a time"
            )
        return TransientBackendError(message)

    def _status_error(
        self, exc: Any, model: str, body: Mapping[str, Any], where: str = "the call"
    ) -> BackendError:
        payload = exc.body if isinstance(exc.body, dict) else {}
        detail = str(payload.get("message") or exc.message)
        formatted = "response_format" in body or "response_format" in body.get("extra_body", {})
        self._answered = True
        if formatted and _names_format(exc.status_code, detail):
            return _FormatRejected(f"{exc.status_code}: {_excerpt(detail)}")
        if (
            "reasoning_effort" in body
            and exc.status_code in (400, 422)
            and ("reasoning" in detail.lower())
        ):
            return BackendConfigError(
                f"model {model!r} on {public_url(self.base_url)} rejects "
                f"backend_options.reasoning_effort = {self.reasoning_effort!r} ({_excerpt(detail)}); "
                "remove it from novel.toml or pick a value the model accepts, then resume"
            )
        if exc.status_code in (400, 413) and _names_context(detail):
            return BackendConfigError(
                f"{where}: the prompt does not fit the context window of {model!r} on "
                f"{public_url(self.base_url)} ({_excerpt(detail)}); raise the server's context "
                "size and set backend_options.context_window to it, then resume"
            )
        return error_for_status(
            exc.status_code,
            _excerpt(detail),
            headers=cast(Mapping[str, str], exc.response.headers),
            key_setting=self.key_setting,
            model=model,
            base_url=public_url(self.base_url),
            code=exc.code,
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


MIN_ANSWER_TOKENS = 256  # an answer that cannot have this much room is not worth sending
_REFUSED = object()


def with_api_path(url: str) -> str:
    """A base URL with no path is given the OpenAI API's ``/v1`` (Ollama, llama.cpp, vLLM and
    LM Studio all serve it there); any other path is kept as the user wrote it."""
    parts = urlsplit(url)
    if parts.path in ("", "/") and parts.scheme in ("http", "https") and parts.hostname:
        log.warning("base_url %s has no path; using %s/v1", public_url(url), url.rstrip("/"))
        return url.rstrip("/") + "/v1"
    return url


async def _probe_json(client: AsyncOpenAI, method: str, url: str, payload: Any) -> Any:
    openai = _import_openai()
    http = http_library(openai)
    quick = client.with_options(timeout=5.0, max_retries=0)
    try:
        if method == "get":
            response = await quick.get(url, cast_to=http.Response)
        else:
            response = await quick.post(url, cast_to=http.Response, body=payload)
        return response.json()
    except openai.APIConnectionError as exc:
        return _REFUSED if _refused(exc.__cause__ or exc) else None
    except (openai.APIError, ValueError):
        return None


def _where(request: Request) -> str:
    return f"stage {request.stage!r} unit {request.unit}"


def _warn_unlisted(payload: Any, model: str, base_url: str) -> None:
    """Servers with one model loaded (llama.cpp) answer any model name with their own."""
    data = payload.get("data") if isinstance(payload, dict) else None
    listed = [m.get("id") for m in data or () if isinstance(m, dict)]
    if listed and model not in listed:
        log.warning(
            "model %r is not among the models %s lists (%s); it may answer with its own model. "
            "Set model in novel.toml to one of them",
            model,
            public_url(base_url),
            ", ".join(str(m) for m in listed[:8]),
        )


def _refused(cause: BaseException) -> bool:
    text = repr(cause).lower()
    return isinstance(cause, ConnectionRefusedError) or any(
        word in text for word in ("connection refused", "connecterror", "name or service")
    )


def _usage(counted: Any) -> Usage:
    details = getattr(counted, "completion_tokens_details", None)
    reasoning = getattr(details, "reasoning_tokens", None) if details is not None else None
    return Usage(
        int(counted.prompt_tokens or 0),
        int(counted.completion_tokens or 0),
        int(reasoning or 0),
    )


def _prompt_tokens(request: Request) -> int:
    # the schema goes into the prompt in some modes, and chat templates add a few tokens a turn
    schema = count_tokens(json.dumps(request.json_schema)) if request.json_schema else 0
    return request.prompt_tokens + schema + 8 * len(request.messages)


def _names_format(status: int, detail: str) -> bool:
    lowered = detail.lower()
    named = any(w in lowered for w in ("response_format", "json_schema", "json_object", "schema"))
    return (status in (400, 422) or status >= 500) and named


def _names_context(detail: str) -> bool:
    lowered = detail.lower()
    return "context" in lowered and any(
        w in lowered for w in ("exceed", "too long", "window", "length")
    )


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


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
