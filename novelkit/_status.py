"""What a job reports: its state, the answer to a control request, per-stage and whole-job
status snapshots, and the plain-text status table shared by the CLI, text/plain reprs and
terminal IPython."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from ._pipeline import StageState

__all__ = ["ControlResult", "JobState", "JobStatus", "StageStatus", "render_status"]


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    @property
    def active(self) -> bool:
        return self in _ACTIVE


_ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSING, JobState.CANCELLING})
_RESUMABLE = frozenset({JobState.PAUSED, JobState.INTERRUPTED, JobState.FAILED})


@dataclass(frozen=True)
class ControlResult:
    """What a control request did: ``changed`` is False when the job was already there."""

    changed: bool
    state: JobState
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "state": self.state.value, "message": self.message}


@dataclass(frozen=True)
class StageStatus:
    number: int
    name: str
    description: str
    state: StageState
    done: int
    total: int
    tokens: int = 0
    cost: float = 0.0
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStatus:
        return cls(
            data["number"],
            data["name"],
            data["description"],
            StageState(data["state"]),
            data["done"],
            data["total"],
            data["tokens"],
            data["cost"],
            data["elapsed"],
        )


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job; cheap to take, safe to hand to another thread."""

    id: str | None
    state: JobState | None
    stage: str | None
    unit: str | None
    progress: float
    message: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    stages: tuple[StageStatus, ...]
    preview: str = ""
    retry: str | None = None
    elapsed: float = 0.0
    last_seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value if self.state else None
        out["tokens"] = self.tokens
        out["stages"] = [s.to_dict() for s in self.stages]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, last_seq: int | None = None) -> JobStatus:
        """The status back from :meth:`to_dict` (a job's snapshot, written by the process that
        runs it). Its ``last_seq`` is the one it was made at, unless ``last_seq`` is given:
        events after it are the ones it may not show yet."""
        return cls(
            id=data["id"],
            state=JobState(data["state"]) if data["state"] else None,
            stage=data["stage"],
            unit=data["unit"],
            progress=data["progress"],
            message=data["message"],
            error=data["error"],
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
            cost=data["cost"],
            stages=tuple(StageStatus.from_dict(s) for s in data["stages"]),
            preview=data["preview"],
            retry=data["retry"],
            elapsed=data["elapsed"],
            last_seq=int(data.get("last_seq") or 0) if last_seq is None else last_seq,
        )

    def table(self) -> str:
        """The plain-text status table (CLI, text/plain repr)."""
        return render_status(self)


ICONS = {
    "pending": "·",
    "running": "▶",
    "succeeded": "✔",
    "failed": "✘",
    "stale": "↻",
    "cancelled": "■",
}


def bar(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


def render_status(status: JobStatus) -> str:
    state = status.state.value if status.state else "no job"
    lines = [
        f"novelkit job {status.id or '-'}: {state}  {bar(status.progress)} {status.progress:4.0%}"
        f"  tokens {status.tokens:,}  cost {status.cost:.4f}",
    ]
    if status.message:
        lines.append(f"  {status.message}")
    if status.retry:
        lines.append(f"  {status.retry}")
    if status.error:
        lines.append(f"  error: {status.error}")
    for s in status.stages:
        fraction = s.done / s.total if s.total else 0.0
        lines.append(
            f"  {s.number:>2} {s.name:<11} {ICONS.get(s.state.value, '?')} {s.state.value:<9} "
            f"{bar(fraction, 12)} {s.done:>3}/{s.total:<3} {s.tokens:>8,} tok"
            + (f"  {s.cost:.4f}" if status.cost else "")
        )
    if status.extra.get("report"):
        lines.append(f"  report: {status.extra['report']}")
    return "\n".join(lines)
