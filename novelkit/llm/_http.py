"""Pieces the HTTP backends (openai, anthropic) share: settings, prompts, per-loop clients."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .._errors import ConfigError
from .base import Message, Request

__all__ = [
    "COMMON_OPTIONS",
    "LoopBound",
    "check_base_url",
    "public_url",
    "read_key",
    "with_schema_instruction",
]

COMMON_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "api_key_env": str,
    "timeout": (int, float),
    "extra_body": dict,
}

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
    """One SDK client per event loop: an httpx pool must not be shared between loops."""

    def __init__(self, factory: Callable[[], ClientT]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: ClientT | None = None

    def get(self) -> ClientT:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._factory()
            self._loop = loop
        return self._client

    def take(self) -> ClientT | None:
        """The current client (to close it) if it belongs to the running loop."""
        client, self._client = self._client, None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - aclose is async, so a loop runs
            return None
        return client if self._loop is running else None


def environ_or_default(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ
