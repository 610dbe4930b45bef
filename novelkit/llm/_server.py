"""What an OpenAI-compatible server says of itself, learned once and kept with the project.

Local servers differ in what they accept and how much they hold: llama.cpp's server says its
slots and context window at ``/props``, vLLM its ``max_model_len`` at ``/v1/models``, Ollama
its context length at ``/api/show``; llama-cpp-python says nothing and rejects
``response_format: json_schema``. The facts are kept per project in ``.novelkit/server.json``
(keyed by base URL and model), so a rejected mechanism is found out once, not on every run.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["ServerFacts", "api_root", "context_from", "load_facts", "save_facts"]


@dataclass
class ServerFacts:
    """Learned facts; ``None`` where nothing is known."""

    structured_output: str | None = None  # the mechanism that worked
    rejected: list[str] = field(default_factory=list)  # mechanisms the server refused
    slots: int | None = None
    context_window: int | None = None
    kind: str | None = None  # "llama.cpp", "vllm", "ollama" where it said so
    probed: bool = False


def api_root(base_url: str) -> str:
    """The server's root: ``http://host:port/v1`` → ``http://host:port``."""
    parts = urlsplit(base_url)
    path = re.sub(r"/v1/?$", "", parts.path)
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def context_from(kind: str, payload: Any, model: str) -> tuple[int | None, int | None]:
    """(context window, slots) from a probe's JSON, or Nones."""
    if not isinstance(payload, dict):
        return None, None
    if kind == "props":
        settings = payload.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        slots = payload.get("total_slots")
        return _int(n_ctx), _int(slots)
    if kind == "models":
        for entry in payload.get("data") or ():
            if isinstance(entry, dict) and entry.get("id") == model:
                return _int(entry.get("max_model_len")), None
        return None, None
    if kind == "show":
        info = payload.get("model_info") or {}
        if isinstance(info, dict):
            for key, value in info.items():
                if key.endswith(".context_length"):
                    return _int(value), None
    return None, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _key(base_url: str, model: str) -> str:
    return f"{base_url} {model}"


def load_facts(path: Path | None, base_url: str, model: str) -> ServerFacts:
    if path is None:
        return ServerFacts()
    try:
        stored = json.loads(path.read_text(encoding="utf-8")).get(_key(base_url, model))
    except (OSError, ValueError, AttributeError):
        return ServerFacts()
    if not isinstance(stored, dict):
        return ServerFacts()
    known = {k: v for k, v in stored.items() if k in ServerFacts.__dataclass_fields__}
    try:
        return ServerFacts(**known)
    except TypeError:
        return ServerFacts()


def save_facts(path: Path | None, base_url: str, model: str, facts: ServerFacts) -> None:
    """Write the facts beside others' (atomically; a failure to write only loses a cache)."""
    if path is None:
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[_key(base_url, model)] = asdict(facts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".server-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(temp, path)
    except OSError:
        pass
