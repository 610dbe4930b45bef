"""The prompt's material block: written by every stage, read back by the fakes and replay."""

from __future__ import annotations

import json
import re
from typing import Any

from .base import Message

__all__ = ["parse_prompt", "render_material"]

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
