"""NovelConfig: the validated contents of ``novel.toml``."""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import ConfigError

__all__ = ["NovelConfig", "StageOverride", "Price", "load_config", "dump_toml"]

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

    def to_toml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return dump_toml(data)


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
        lines.append(f"{dotted} = {item.get('input')!r} is invalid: {message}")
    return f"{where}: " + "; ".join(lines)


def validate_config(data: dict[str, Any], where: str = "config") -> NovelConfig:
    try:
        return NovelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def load_config(path: Path) -> NovelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist; create the project with nk.new_project"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return validate_config(data, where=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(f"cannot store {value!r} in novel.toml")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise ConfigError(f"cannot store a {type(value).__name__} in novel.toml")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def dump_toml(data: dict[str, Any]) -> str:
    """Write a flat-or-nested dict as TOML (tables for nested dicts of dicts)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    out = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items()]
    for name, table in tables.items():
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        flat = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if flat or not nested:
            out.append(f"\n[{_toml_key(name)}]")
            out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in flat.items())
        for sub, values in nested.items():
            out.append(f"\n[{_toml_key(name)}.{_toml_key(sub)}]")
            out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(out) + "\n"
