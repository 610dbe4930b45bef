"""Record/replay cassettes: a run recorded once reproduces with zero network calls.

A cassette is JSON Lines. The first line (and one more each time a different backend, model or
server appends) is metadata saying honestly who recorded it; every other line is one finished
call — the canonical request, its key, the full response text, usage, finish reason and model.
API keys are never written.

    # record while running against any backend
    [backend_options]
    record = true                         # -> cassette.jsonl in the project folder

    # replay later, offline (Binder, CI)
    backend = "replay"
    [backend_options]
    cassette = "cassette.jsonl"
    fallback = "openai"                   # optional: send misses to a live backend
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError, ReplayMissError
from ._http import public_url
from ._options import check_options
from .base import Backend, Chunk, Delta, Done, Request, Retrying, Usage

if TYPE_CHECKING:
    from .._config import NovelConfig

__all__ = ["Cassette", "CassetteEntry", "RecordingBackend", "ReplayBackend"]

FORMAT = "novelkit-cassette"
VERSION = 1

OPTIONS: dict[str, type | tuple[type, ...]] = {
    "cassette": str,
    "fallback": (str, type(None)),
    "fallback_options": dict,
    "chunk_chars": int,
    "latency": (int, float),
}
FALLBACKS = ("openai", "anthropic", "offline")


def _loose_key(canonical: dict[str, Any]) -> str:
    """The request key without the model, so a cassette replays under another model name."""
    reduced = {k: v for k, v in canonical.items() if k != "model"}
    blob = json.dumps(reduced, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CassetteEntry:
    key: str
    stage: str
    unit: str
    task: str
    text: str
    usage: Usage
    finish_reason: str
    model: str


class Cassette:
    """A loaded cassette: calls by request key (the last recording of a key wins)."""

    def __init__(
        self, path: Path, entries: list[tuple[CassetteEntry, str]], meta: list[dict[str, Any]]
    ):
        self.path = path
        self.meta = meta
        self._by_key = {entry.key: entry for entry, _ in entries}
        self._by_loose = {loose: entry for entry, loose in entries}
        self._units = {(e.stage, e.unit, e.task) for e, _ in entries}

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, calls={len(self)})"

    @classmethod
    def load(cls, path: Path) -> Cassette:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(
                f"the cassette {path} does not exist; record one by running with "
                "backend_options record = true, or set backend_options.cassette"
            ) from None
        entries: list[tuple[CassetteEntry, str]] = []
        meta: list[dict[str, Any]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # a write cut short by a crash: that call was not kept
                    break
                raise ConfigError(
                    f"{path}:{number} is not valid JSON; the cassette is damaged"
                ) from None
            if item.get("type") == "meta":
                meta.append(item)
            elif item.get("type") == "call":
                usage = item.get("usage", {})
                entry = CassetteEntry(
                    key=item["key"],
                    stage=item.get("stage", ""),
                    unit=item.get("unit", ""),
                    task=item["request"]["task"],
                    text=item["response"],
                    usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
                    finish_reason=item.get("finish_reason", "stop"),
                    model=item.get("model", ""),
                )
                entries.append((entry, _loose_key(item["request"])))
        if meta and meta[0].get("format") != FORMAT:
            raise ConfigError(f"{path} is not a novelkit cassette")
        return cls(path, entries, meta)

    def find(self, request: Request) -> CassetteEntry | None:
        return self._by_key.get(request.key) or self._by_loose.get(_loose_key(request.canonical()))

    def has_unit(self, request: Request) -> bool:
        return (request.stage, request.unit, request.task) in self._units

    def recorded_by(self) -> str:
        if not self.meta:
            return "an unknown backend"
        first = self.meta[0]
        where = f" at {first['base_url']}" if first.get("base_url") else ""
        return f"the {first.get('backend')} backend, model {first.get('model')!r}{where}"


class ReplayBackend:
    """Answers from a cassette, streaming the recorded text; misses raise or fall through."""

    name = "replay"

    def __init__(
        self,
        cassette: Cassette,
        *,
        fallback: Backend | None = None,
        chunk_chars: int = 48,
        latency: float = 0.0,
    ) -> None:
        if chunk_chars < 1 or latency < 0:
            raise ConfigError("backend_options: chunk_chars must be >= 1 and latency >= 0")
        self.cassette = cassette
        self.fallback = fallback
        self.chunk_chars = chunk_chars
        self.latency = latency
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_config(cls, config: NovelConfig, options: dict[str, Any], root: Path) -> ReplayBackend:
        check_options(options, OPTIONS, "replay")
        path = Path(options.get("cassette", "cassette.jsonl"))
        path = path if path.is_absolute() else root / path
        fallback_name = options.get("fallback")
        fallback_options = dict(options.get("fallback_options", {}))
        fallback: Backend | None = None
        if fallback_name is not None and fallback_name not in FALLBACKS:
            raise ConfigError(
                f"backend_options.fallback = {fallback_name!r} is invalid: expected one of "
                f"{', '.join(FALLBACKS)} (or leave it out to fail on a miss)"
            )
        if fallback_name == "openai":
            from .openai import OpenAIBackend

            fallback = OpenAIBackend.from_config(config, fallback_options)
        elif fallback_name == "anthropic":
            from .anthropic import AnthropicBackend

            fallback = AnthropicBackend.from_config(config, fallback_options)
        elif fallback_name == "offline":
            from .offline import OfflineBackend

            fallback = OfflineBackend.from_options(fallback_options)
        if fallback is not None and not path.exists():
            cassette = Cassette(path, [], [])
        else:
            cassette = Cassette.load(path)
        return cls(
            cassette,
            fallback=fallback,
            chunk_chars=options.get("chunk_chars", 48),
            latency=float(options.get("latency", 0.0)),
        )

    def __repr__(self) -> str:
        return f"ReplayBackend({self.cassette!r}, fallback={self.fallback!r})"

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        entry = self.cassette.find(request)
        if entry is None:
            self.misses += 1
            if self.fallback is None:
                raise ReplayMissError(self._miss_message(request))
            async for chunk in self.fallback.stream(request):
                yield chunk
            return
        self.hits += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        for start in range(0, len(entry.text), self.chunk_chars):
            yield Delta(entry.text[start : start + self.chunk_chars])
            await asyncio.sleep(0)  # let pause/cancel in between chunks
        yield Done(entry.usage, entry.finish_reason, entry.model)

    def _miss_message(self, request: Request) -> str:
        changed = (
            " A call of that unit is in the cassette with other settings: did the config, a "
            "stage's prompt, the seed or an upstream artefact change since recording?"
            if self.cassette.has_unit(request)
            else ""
        )
        return (
            f"the cassette {self.cassette.path} (recorded by {self.cassette.recorded_by()}) has "
            f"no response for the {request.task} call of {request.stage}/{request.unit} "
            f"(request {request.key[:12]}).{changed} Record it by running against a live "
            "backend with backend_options record = true, or set backend_options.fallback = "
            "'openai', 'anthropic' or 'offline' to send misses to a live backend."
        )

    async def aclose(self) -> None:
        if self.fallback is not None:
            await self.fallback.aclose()


class RecordingBackend:
    """Wraps any backend and appends every finished call to a cassette."""

    def __init__(self, inner: Backend, path: Path, *, config: NovelConfig | None = None) -> None:
        self.inner = inner
        self.path = Path(path)
        self.name = inner.name
        self.recorded = 0
        self._meta = self._describe(config)
        self._meta_written = False

    def __repr__(self) -> str:
        return f"RecordingBackend({self.inner!r}, {str(self.path)!r})"

    def _describe(self, config: NovelConfig | None) -> dict[str, Any]:
        model = getattr(self.inner, "model", None) or (config.model if config else None)
        base_url = getattr(self.inner, "base_url", None) or (config.base_url if config else None)
        stage_models = (
            {name: o.model for name, o in config.stages.items() if o.model} if config else {}
        )
        return {
            "type": "meta",
            "format": FORMAT,
            "version": VERSION,
            "backend": self.inner.name,
            "model": model or self.inner.name,
            "stage_models": stage_models,
            "base_url": public_url(base_url) if base_url else None,
        }

    def _needs_meta(self) -> bool:
        """A meta line unless the file's last one already describes this recorder."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return True
        for line in reversed(lines):
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if item.get("type") == "meta":
                same = {k: item.get(k) for k in self._meta} == self._meta
                return not same
        return True

    def _append(self, request: Request, text: str, done: Done) -> None:
        lines = []
        if not self._meta_written:
            if self._needs_meta():
                meta = {
                    **self._meta,
                    "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                lines.append(meta)
            self._meta_written = True
        lines.append(
            {
                "type": "call",
                "key": request.key,
                "stage": request.stage,
                "unit": request.unit,
                "request": request.canonical(),
                "response": text,
                "usage": {
                    "prompt_tokens": done.usage.prompt_tokens,
                    "completion_tokens": done.usage.completion_tokens,
                },
                "finish_reason": done.finish_reason,
                "model": done.model,
            }
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        blob = "".join(json.dumps(line, ensure_ascii=False, default=str) + "\n" for line in lines)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        self.recorded += 1

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        parts: list[str] = []
        async for chunk in self.inner.stream(request):
            if isinstance(chunk, Retrying):
                parts.clear()  # the retry restarts the response from scratch
            elif isinstance(chunk, Delta):
                parts.append(chunk.text)
            else:
                self._append(request, "".join(parts), chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()
