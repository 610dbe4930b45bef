"""NovelConfig: the validated contents of ``novel.toml``."""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import ConfigError, excerpt

__all__ = ["NovelConfig", "StageOverride", "Price", "dump_toml", "load_config", "render_toml"]

BackendName = Literal["offline", "openai", "anthropic", "replay"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class StageOverride(_Strict):
    """Per-stage model and parameter overrides (``[stages.draft]`` in novel.toml)."""

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(default=None, ge=16, le=200_000)
    prompt: str | None = Field(
        default=None, description="Replaces the stage's prompt template ({placeholders} allowed)."
    )


class Price(_Strict):
    """Price of one model per million tokens, in the project's ``currency``."""

    prompt: float = Field(ge=0.0)
    completion: float = Field(ge=0.0)


class NovelConfig(_Strict):
    """Everything a project needs to know; every field has a safe default except ``premise``."""

    premise: str = Field(min_length=1, max_length=20_000)
    title: str | None = Field(default=None, max_length=300)
    genre: str = Field(default="literary fiction", max_length=200)
    style: str = Field(default="clear, vivid, character-driven prose", max_length=2_000)
    chapters: int = Field(default=12, ge=1, le=200)
    words_per_chapter: int = Field(default=2000, ge=100, le=20_000)
    seed: int = Field(default=1, ge=0, le=2**31 - 1)
    concurrency: int = Field(default=4, ge=1, le=64)

    backend: BackendName = "offline"
    model: str | None = None
    base_url: str | None = None
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    max_output_tokens: int = Field(default=4096, ge=16, le=200_000)
    context_tokens: int = Field(
        default=6000, ge=500, le=1_000_000, description="Token budget of each prompt."
    )
    backend_options: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageOverride] = Field(default_factory=dict)

    prices: dict[str, Price] = Field(default_factory=dict)
    max_cost: float | None = Field(default=None, ge=0.0)
    max_tokens: int | None = Field(default=None, ge=1, description="Budget cap on all tokens.")
    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of [prices] and max_cost; the built-in prices are USD.",
    )

    author: str = Field(default="Anonymous", max_length=200)
    contact: str = Field(default="", max_length=1_000)
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

    @field_validator("premise")
    @classmethod
    def _premise_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the premise is blank; give one or two sentences about the story")
        return value.strip()

    def stage_override(self, stage: str) -> StageOverride:
        return self.stages.get(stage, StageOverride())

    def to_toml(self, previous: str | None = None) -> str:
        """novel.toml text: ``previous`` edited in place (comments kept), or a commented one."""
        return render_toml(self, previous)


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"


def _model_for(loc: tuple[int | str, ...]) -> type[BaseModel]:
    if len(loc) >= 3 and loc[0] == "stages":
        return StageOverride
    if len(loc) >= 3 and loc[0] == "prices":
        return Price
    return NovelConfig


def _format_errors(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        dotted = ".".join(str(part) for part in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            valid = sorted(_model_for(loc).model_fields)
            lines.append(f"unknown key {dotted!r}{_suggest(str(loc[-1]), valid)}")
            continue
        if item["type"] == "missing":
            lines.append(f"{dotted!r} is required")
            continue
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{dotted} = {excerpt(item.get('input'))} is invalid: {message}")
    return f"{where}: " + "; ".join(lines)


def validate_config(data: dict[str, Any], where: str = "config") -> NovelConfig:
    try:
        return NovelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def read_config_text(path: Path) -> str:
    """novel.toml's text, or a ConfigError naming the file and what is wrong with it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist; create the project with nk.new_project"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a folder, not a file; move it away and restore novel.toml"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 and retry"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_config(path: Path) -> NovelConfig:
    text = read_config_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # the message ends "(at line L, column C)"
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix it and retry") from None
    return validate_config(data, where=str(path))


# What each setting is, written above it in a new novel.toml (an example for settings left
# unset). ``configure()`` edits the file in place (tomlkit), so these and the user's own
# comments, and the order of the keys, stay as they are.
_HEADER = """\
# novel.toml: the settings of one novelkit project (README, "Configuration").
# Edit it by hand or with project.configure(); comments and order are kept either way.
"""
_KEYS: dict[str, tuple[str, str | None]] = {
    "premise": ("The story in one or two sentences.", None),
    "title": ("The book's title; without one the outline proposes it.", '"The Keeper"'),
    "genre": ("Genre, used in every prompt.", None),
    "style": ("How the prose should read.", None),
    "chapters": ("Number of chapters (1-200).", None),
    "words_per_chapter": ("Target length of a chapter (100-20000).", None),
    "seed": ("Same seed, same novel offline, and the same memo keys.", None),
    "concurrency": ("Units written in parallel (scenes, continuity, revision, polish).", None),
    "backend": ("offline | openai | anthropic | replay", None),
    "model": ("The model, for openai / anthropic.", '"gpt-4o-mini"'),
    "base_url": ("An OpenAI-compatible server's URL.", '"http://127.0.0.1:8000/v1"'),
    "temperature": ("Sampling temperature (0-2).", None),
    "max_output_tokens": ("Per call; an answer cut at the limit is continued.", None),
    "context_tokens": ("Token budget of each prompt.", None),
    "max_cost": ("Budget cap: the job pauses before a call would pass it.", "5.0"),
    "max_tokens": ("Budget cap on all tokens.", "2000000"),
    "author": ("Shown on the title page of exports.", None),
    "contact": ("Shown on the title page of exports.", None),
    "language": ("Language tag of the book (en, fr, pt-BR, ...).", None),
}
_TABLES: dict[str, str] = {
    "backend_options": (
        "Options of the chosen backend, e.g. for offline:\n"
        "#   tokens_per_second = 400   # slows it down for demos\n"
        "# or for openai: timeout = 60"
    ),
    "stages": (
        "Per-stage overrides, one table each, e.g.:\n"
        "#   [stages.draft]\n"
        '#   model = "gpt-4o"\n'
        "#   temperature = 0.9\n"
        '#   prompt = "Write chapter {unit} ..."'
    ),
    "prices": (
        "Prices per million tokens, for the cost ledger, e.g.:\n"
        '#   [prices."gpt-4o-mini"]\n'
        "#   prompt = 0.15\n"
        "#   completion = 0.60"
    ),
}


def _template(data: dict[str, Any]) -> str:
    """A commented novel.toml whose keys hold ``data``'s top-level scalars (as TOML text)."""
    import tomlkit

    lines = [_HEADER]
    for key, (comment, example) in _KEYS.items():
        lines.append(f"# {comment}")
        if key in data:
            lines.append(tomlkit.dumps({key: data[key]}).rstrip("\n"))
        elif example is not None:
            lines.append(f"# {key} = {example}")
    for name, comment in _TABLES.items():
        lines.append(f"\n[{name}]\n# {comment}")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _sync(container: Any, data: dict[str, Any]) -> None:
    """Make a tomlkit table hold ``data``, touching only the keys whose values differ."""
    import tomlkit

    for key in [k for k in container if k not in data]:
        del container[key]
    for key, value in data.items():
        current = container.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _sync(current, value)
        elif isinstance(value, dict):
            table = tomlkit.table()
            _sync(table, value)
            table.add(tomlkit.nl())
            container[key] = table
        elif (
            current is None or _plain(current) != value or type(_plain(current)) is not type(value)
        ):
            container[key] = value


def render_toml(config: NovelConfig, previous: str | None = None, where: str = "novel.toml") -> str:
    """``config`` as novel.toml text: ``previous`` edited in place, or a commented template.

    Any string round-trips (tomlkit escapes control characters); the user's comments and key
    order in ``previous`` are kept. ``previous`` that is not valid TOML is an error, so a file
    the user is still editing is never replaced.
    """
    import tomlkit
    from tomlkit.exceptions import ParseError

    data = config.model_dump(mode="json", exclude_none=True)
    for value in _floats(data):
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(f"cannot store {value!r} in novel.toml")
    if previous is None:
        previous = _template(data)
    try:
        document = tomlkit.parse(previous)
    except ParseError as exc:
        raise ConfigError(
            f"{where} is not valid TOML (line {exc.line}, column {exc.col}); fix it and retry: "
            "nothing was written"
        ) from None
    _sync(document, data)
    return tomlkit.dumps(document)


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


def dump_toml(data: dict[str, Any]) -> str:
    """``data`` as TOML text (tomlkit: any string, control characters included, round-trips)."""
    import tomlkit

    for value in _floats(data):
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(f"cannot store {value!r} in a TOML file")
    return tomlkit.dumps(data)


def _toml_key(key: str) -> str:
    """``key`` as a TOML key: bare when it may be, else a quoted string (every character escaped)."""
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)
