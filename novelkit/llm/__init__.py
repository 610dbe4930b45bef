"""Language-model backends: offline (default), OpenAI-compatible, Anthropic, record/replay.

SDK-backed modules are imported only when their backend is chosen.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .base import Backend, Delta, Done, Message, Request, Retrying, Usage, count_tokens

if TYPE_CHECKING:
    from .._config import NovelConfig

__all__ = [
    "Backend",
    "Delta",
    "Done",
    "Message",
    "Request",
    "Retrying",
    "Usage",
    "check_options",
    "count_tokens",
    "make_backend",
    "parse_prompt",
    "render_material",
]

_MATERIAL = re.compile(r"<material>\n(.*)\n</material>", re.DOTALL)
_TASK = re.compile(r"^Task: ([\w-]+)", re.MULTILINE)


def render_material(context: dict[str, Any]) -> str:
    """The structured story material every prompt carries, as a fenced JSON block."""
    body = json.dumps(context, ensure_ascii=False, indent=1, sort_keys=True)
    return f"<material>\n{body}\n</material>"


def parse_prompt(
    messages: list[dict[str, Any]] | tuple[Message, ...],
) -> tuple[str, dict[str, Any]]:
    """Recover ``(task, context)`` from the first user message (used by fakes and replay)."""
    for message in messages:
        role = message.role if isinstance(message, Message) else message.get("role")
        content = message.content if isinstance(message, Message) else message.get("content")
        if role != "user" or not isinstance(content, str):
            continue
        task = _TASK.search(content)
        material = _MATERIAL.search(content)
        if task and material:
            parsed: dict[str, Any] = json.loads(material.group(1))
            return task.group(1), parsed
    raise ValueError("no 'Task:' line and <material> block in the prompt")


def check_options(
    options: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], backend: str
) -> None:
    """Reject unknown or mistyped ``backend_options`` with a did-you-mean hint."""
    for key, value in options.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"backend_options.{key} is not an option of the {backend} backend{hint} "
                f"(valid: {', '.join(sorted(allowed))})"
            )
        expected = allowed[key]
        if not isinstance(value, expected) or (
            isinstance(value, bool) and bool not in _as_tuple(expected)
        ):
            names = "/".join(t.__name__ for t in _as_tuple(expected))
            raise ConfigError(f"backend_options.{key} = {value!r} is invalid: expected {names}")


def _as_tuple(value: type | tuple[type, ...]) -> tuple[type, ...]:
    return value if isinstance(value, tuple) else (value,)


def make_backend(config: NovelConfig, root: Path) -> Backend:
    """Build the backend ``config`` asks for; ``root`` is the project folder (for cassettes)."""
    options = dict(config.backend_options)
    record = options.pop("record", None)
    backend: Backend
    if config.backend == "offline":
        from .offline import OfflineBackend

        backend = OfflineBackend.from_options(options)
    elif config.backend == "openai":
        from .openai import OpenAIBackend

        backend = OpenAIBackend.from_config(config, options, root=root)
    elif config.backend == "anthropic":
        from .anthropic import AnthropicBackend

        backend = AnthropicBackend.from_config(config, options)
    elif config.backend == "replay":
        from .replay import ReplayBackend

        backend = ReplayBackend.from_config(config, options, root)
    else:  # pragma: no cover - NovelConfig validates the name
        raise ConfigError(f"unknown backend {config.backend!r}")
    if record:
        from .replay import RecordingBackend

        path = root / "cassette.jsonl" if record is True else root / str(record)
        backend = RecordingBackend(backend, path, config=config)
    return backend
