"""Language-model backends: offline (default), OpenAI-compatible, Anthropic, record/replay.

SDK-backed modules are imported only when their backend is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import ConfigError
from ._options import check_options
from ._prompt import parse_prompt, render_material
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
