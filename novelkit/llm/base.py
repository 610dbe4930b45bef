"""What every language-model backend speaks: Request in, a stream of Delta then one Done out.

A backend is injected into a project the way httpx takes a transport. The job never imports an
LLM SDK; it only calls ``backend.stream(request)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Backend",
    "Delta",
    "Done",
    "Message",
    "Request",
    "Retrying",
    "Usage",
    "count_tokens",
]

Role = Literal["system", "user", "assistant"]


def count_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token, as for English BPE vocabularies)."""
    return math.ceil(len(text) / 4) if text else 0


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Request:
    """One call to a language model.

    ``task`` and ``context`` describe the call in structured form; real backends read only the
    messages, the offline backend writes from the context. Both take part in the request hash.
    """

    stage: str
    unit: str
    task: str
    messages: tuple[Message, ...]
    model: str | None = None
    temperature: float = 0.8
    max_output_tokens: int = 4096
    seed: int = 1
    json_schema: dict[str, Any] | None = None
    schema_name: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    variant: str = ""

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(m.content) for m in self.messages)

    def canonical(self) -> dict[str, Any]:
        """The JSON form stored in cassettes and hashed for the memo."""
        return {
            "task": self.task,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "model": self.model,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
            "seed": self.seed,
            "json_schema": self.json_schema,
            "schema_name": self.schema_name,
            "context": self.context,
            "variant": self.variant,
        }

    @functools.cached_property
    def key(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def with_messages(self, *extra: Message, task: str | None = None) -> Request:
        """A follow-up request (continue, repair, extend) that shares this one's settings."""
        return Request(
            stage=self.stage,
            unit=self.unit,
            task=task or self.task,
            messages=self.messages + extra,
            model=self.model,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
            seed=self.seed,
            json_schema=self.json_schema,
            schema_name=self.schema_name,
            context=self.context,
            variant=self.variant,
        )


@dataclass(frozen=True)
class Usage:
    """Tokens of one call; ``reasoning_tokens`` (of a reasoning model's hidden thinking) are
    part of ``completion_tokens``, as the APIs count and bill them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Delta:
    """A chunk of streamed text."""

    text: str


@dataclass(frozen=True)
class Retrying:
    """The backend hit a transient error and will try again after ``delay`` seconds."""

    attempt: int
    max_attempts: int
    delay: float
    reason: str


@dataclass(frozen=True)
class Done:
    """The end of a response. ``finish_reason`` is "stop" or "length" (cut at the token limit)."""

    usage: Usage
    finish_reason: str = "stop"
    model: str = ""


Chunk = Delta | Retrying | Done


@runtime_checkable
class Backend(Protocol):
    """Anything with a ``name`` and an async ``stream(request)`` yielding Delta*, then Done."""

    name: str

    def stream(self, request: Request) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...
