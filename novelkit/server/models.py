"""Request bodies (validated strictly) and response shapes (for the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .._config import NovelConfig

MAX_CHAPTERS: int = next(
    c.le
    for c in NovelConfig.model_fields["chapters"].metadata
    if isinstance(c, Le) and isinstance(c.le, int)
)
"""The most chapters a project can have (novel.toml's bound), so the highest chapter number."""


def _integral(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer (a number with no fractional part), so accept it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


ChapterNumber = Annotated[int, Field(ge=1, le=MAX_CHAPTERS), BeforeValidator(_integral)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PauseBody(_Body):
    now: bool = Field(
        default=False, description="Abort in-flight calls too (paused within ~100 ms)."
    )


class EmptyBody(_Body):
    pass


class RunStageBody(_Body):
    chapters: list[ChapterNumber] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CHAPTERS,
        description="Chapters of a per-chapter stage (numbers from the project's outline); "
        "all when omitted. A single-unit stage takes no chapters (422).",
    )
    force: bool = Field(default=False, description="Rerun units even when they are up to date.")


class ExportBody(_Body):
    formats: list[str] = Field(
        min_length=1, max_length=10, description="Formats to write, e.g. ['md', 'docx']."
    )


# -- responses ------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Out):
    code: str
    message: str
    state: str | None = None


class ErrorResponse(_Out):
    error: ErrorDetail


class ControlResponse(_Out):
    changed: bool
    state: str | None
    message: str
    job_id: str | None = None


class StageOut(_Out):
    number: int
    name: str
    description: str
    state: str
    done: int
    total: int
    tokens: int
    cost: float
    elapsed: float


class StatusOut(_Out):
    id: str | None
    state: str | None
    stage: str | None
    unit: str | None
    progress: float
    message: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    cost: float
    stages: list[StageOut]
    preview: str
    retry: str | None
    elapsed: float
    last_seq: int
    extra: dict[str, Any]
    actions: list[str]
    preview_stage: str | None
    preview_unit: str | None
    currency: str = "USD"


class StagesOut(_Out):
    stages: list[StageOut]


class ProjectSummary(_Out):
    id: str
    title: str
    chapters: int
    state: str | None


class ProjectList(_Out):
    projects: list[ProjectSummary]


class WriterOut(_Out):
    name: str = Field(description="The backend: offline, openai, anthropic or replay.")
    model: str | None
    stage_models: dict[str, str] = Field(description="Per-stage model overrides.")
    placeholder: bool = Field(
        description="True for the offline backend: placeholder prose, not written by a model."
    )
    label: str = Field(description="One line to show, e.g. 'openai, model gpt-4o-mini'.")


class ProjectOut(_Out):
    id: str
    title: str
    premise: str
    genre: str
    chapters: int
    words_per_chapter: int
    backend: str
    model: str | None
    writer: WriterOut
    status: StatusOut
    exports: dict[str, Any]


class EventOut(_Out):
    seq: int
    type: str
    ts: float
    job_id: str | None


class EventsPage(_Out):
    events: list[EventOut]
    first_seq: int
    last_seq: int
    next_since: int
    more: bool


class ExportInfo(_Out):
    format: str
    media_type: str
    exported: bool
    filename: str | None
    size: int | None
    created: float | None
    modified: float | None
    stale: bool | None


class ExportList(_Out):
    formats: list[str]
    exports: list[ExportInfo]


class TicketOut(_Out):
    ticket: str
    expires_in: float


class WhoAmI(_Out):
    key_id: str
    scope: str
    project: str | None
