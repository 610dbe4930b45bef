"""What a job reports: its state, the answer to a control request, per-stage and whole-job
status snapshots, and the plain-text status table shared by the CLI, text/plain reprs and
terminal IPython."""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ._pipeline import StageState
from ._prices import format_cost

__all__ = [
    "ControlResult",
    "Counters",
    "JobState",
    "JobStatus",
    "LiveSnapshot",
    "LiveStatus",
    "StageStatus",
    "legal_actions",
    "render_status",
]

PREVIEW_CHARS = 2000


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

_S = JobState

# The one table of control actions: per action, the states that accept it and the state each
# moves to. ``Job.pause/resume/cancel`` follow it; the panel, the dashboard and the sidecar
# (``JobStatus.actions``) offer an action exactly when it is here for the job's state.
CONTROL: dict[str, dict[JobState, JobState]] = {
    "pause": {_S.QUEUED: _S.PAUSED, _S.RUNNING: _S.PAUSING},
    "pause_now": {_S.QUEUED: _S.PAUSED, _S.RUNNING: _S.PAUSING, _S.PAUSING: _S.PAUSING},
    "resume": {_S.PAUSED: _S.QUEUED, _S.INTERRUPTED: _S.QUEUED, _S.FAILED: _S.QUEUED},
    "cancel": {
        _S.QUEUED: _S.CANCELLED,
        _S.RUNNING: _S.CANCELLING,
        _S.PAUSING: _S.CANCELLING,
        _S.PAUSED: _S.CANCELLED,
        _S.INTERRUPTED: _S.CANCELLED,
    },
}

# States where an action is answered "already there" (``changed=False``) rather than refused.
REPEATS: dict[str, frozenset[JobState]] = {
    "pause": frozenset({_S.PAUSING, _S.PAUSED}),
    "pause_now": frozenset({_S.PAUSED}),
    "resume": frozenset({_S.QUEUED, _S.RUNNING}),
    "cancel": frozenset({_S.CANCELLING, _S.CANCELLED}),
}

# Every move a job's state makes: the control actions above, and the run's own (it starts,
# ends, and a pausing or cancelling run comes to rest; a run over budget pauses at once; a
# process that dies leaves its job interrupted, found so when the project is next opened).
TRANSITIONS: dict[JobState | None, frozenset[JobState]] = {
    None: frozenset({_S.QUEUED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.PAUSED, _S.CANCELLED, _S.INTERRUPTED}),
    _S.RUNNING: frozenset(
        {_S.PAUSING, _S.CANCELLING, _S.SUCCEEDED, _S.FAILED, _S.PAUSED, _S.INTERRUPTED}
    ),
    _S.PAUSING: frozenset({_S.PAUSED, _S.CANCELLING, _S.FAILED, _S.SUCCEEDED, _S.INTERRUPTED}),
    _S.PAUSED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.CANCELLING: frozenset({_S.CANCELLED, _S.FAILED, _S.INTERRUPTED}),
    _S.INTERRUPTED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.FAILED: frozenset({_S.QUEUED}),
    _S.SUCCEEDED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def legal_actions(state: JobState | None) -> frozenset[str]:
    """The control actions a job in ``state`` accepts (see ``CONTROL``)."""
    if state is None:
        return frozenset()
    return frozenset(action for action, moves in CONTROL.items() if state in moves)


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
    preview_stage: str | None = None
    """The stage and unit whose streamed text ``preview`` is (one unit's, in order)."""
    preview_unit: str | None = None
    currency: str = "USD"
    """The currency of ``cost`` (novel.toml's ``currency``)."""

    def __call__(self) -> JobStatus:
        """Itself: ``job.status()`` reads like ``project.status()`` (``job.status`` works too)."""
        return self

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def actions(self) -> list[str]:
        """The control actions the job accepts now (pause, pause_now, resume, cancel)."""
        return sorted(legal_actions(self.state))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value if self.state else None
        out["tokens"] = self.tokens
        out["actions"] = self.actions
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
            preview_stage=data.get("preview_stage"),
            preview_unit=data.get("preview_unit"),
            currency=data.get("currency") or "USD",
        )

    def table(self) -> str:
        """The plain-text status table (CLI, text/plain repr)."""
        return render_status(self)


@dataclass
class Counters:
    """Tokens and cost of a job's calls so far, in all and per stage."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    by_stage: dict[str, list[float]] = field(default_factory=dict)  # prompt, completion, cost

    def add(self, stage: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost += cost
        row = self.by_stage.setdefault(stage, [0, 0, 0.0])
        row[0] += prompt_tokens
        row[1] += completion_tokens
        row[2] += cost


@dataclass(frozen=True)
class LiveSnapshot:
    """One reading of a :class:`LiveStatus`, safe to hand to another thread."""

    state: JobState
    message: str
    error: str | None
    current: tuple[str, str] | None  # (stage, unit) being written, when this process runs it
    rows: dict[str, tuple[StageState, int, int]] | None  # per stage while it runs here
    by_stage: dict[str, dict[str, Any]]  # the run's ledger rows (with rows)
    stage_started: dict[str, float]
    preview: str
    preview_of: tuple[str, str] | None  # the (stage, unit) the preview's text is from
    retry: str | None
    elapsed: float


class _Stream:
    """The tail of one unit's streamed text, at most about ``PREVIEW_CHARS`` long. The run's
    thread replaces ``value`` whole, so a reader on another thread takes it in one step."""

    def __init__(self) -> None:
        self.value = ""
        self.ended = False

    def add(self, text: str) -> None:
        value = self.value + text
        if len(value) > 2 * PREVIEW_CHARS:  # trimmed now and then, not on every chunk
            value = value[-PREVIEW_CHARS:]
        self.value = value

    def clear(self) -> None:
        self.value = ""

    def text(self) -> str:
        return self.value[-PREVIEW_CHARS:]


class LiveStatus:
    """What a job's status shows, kept in memory by the job and its run: state, message,
    error, the unit being written, the live stage rows, the counters, the preview, the retry
    notice and the times. The run's thread changes it; any thread reads it through
    :meth:`snapshot`, which takes each part in one step."""

    def __init__(
        self,
        state: JobState,
        message: str = "",
        error: str | None = None,
        *,
        started: float | None = None,
        finished: float | None = None,
    ) -> None:
        self.state = state
        self.message = message
        self.error = error
        self.current: tuple[str, str] | None = None
        self.current_stage: str | None = None
        self.rows: dict[str, list[Any]] | None = None  # stage → [state, done, total] while running
        self.counters = Counters()
        self.stage_started: dict[str, float] = {}
        self.retry: str | None = None
        self.started = time.time() if started is None else started
        self.finished = finished
        self.streamed_chars = 0
        self.version = 0
        """Bumped on every change a view may show (state, progress, streamed text)."""
        self.dirty = False  # changed since the last snapshot written for other processes
        # the preview: each streaming unit's text apart, and the one unit shown; it is shown
        # until its unit ends and another streams, so two units' words never interleave
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._shown: tuple[str, str] | None = None

    def changed(self) -> None:
        self.dirty = True
        self.version += 1

    def set_row(self, stage: str, state: StageState, done: int, total: int) -> None:
        if self.rows is not None:
            self.rows[stage] = [state, done, total]

    def add_text(self, stage: str, unit: str, text: str) -> None:
        """Streamed text of ``stage`` ``unit``, for the preview (on the run's thread)."""
        key = (stage, unit)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        stream.add(text)
        self.streamed_chars += len(text)
        shown = self._shown
        if shown != key and (shown is None or self._streams[shown].ended):
            self._show(key)
        self.retry = None
        self.changed()

    def restart_text(self, stage: str, unit: str) -> None:
        """The unit's call is tried again from the start: its text so far is void."""
        stream = self._streams.get((stage, unit))
        if stream is not None:
            stream.clear()
            self.changed()

    def end_text(self, stage: str, unit: str) -> None:
        """The unit has finished (or stopped): the preview moves on to a unit still streaming
        (the one that began first); with none, it keeps this unit's text until one streams."""
        key = (stage, unit)
        stream = self._streams.get(key)
        if stream is None:
            return
        stream.ended = True
        if key != self._shown:
            del self._streams[key]
            return
        live = [k for k, s in self._streams.items() if not s.ended]
        if live:
            self._show(live[0])

    def _show(self, key: tuple[str, str]) -> None:
        self._shown = key
        # the streams that have ended are not shown again: drop them
        for other in [k for k, s in self._streams.items() if s.ended and k != key]:
            del self._streams[other]

    def preview(self) -> str:
        """The shown unit's text, in the order it streamed."""
        return self._shown_text()[1]

    def _shown_text(self) -> tuple[tuple[str, str] | None, str]:
        shown = self._shown  # read once: the text is this unit's
        stream = self._streams.get(shown) if shown is not None else None
        return (shown, stream.text()) if stream is not None else (None, "")

    def running_stage(self, local: bool) -> str | None:
        """The stage a run of this process is in now (``local``: this process runs the job)."""
        return self.current_stage if local and self.state.active else None

    def snapshot(self, local: bool) -> LiveSnapshot:
        """State, message and error first, then the current unit, then one reading of the live
        rows and counters (the run clears the rows before it sets a final state, so a final
        state never comes with a stage shown running). ``local``: this process runs the job,
        so the live rows are the truth; otherwise the caller reads the store."""
        state, message, error = self.state, self.message, self.error
        current = self.current if local else None
        rows = self.rows if local else None  # read once
        if rows is None:
            table, ledger, started = None, {}, {}
        else:
            table = {name: (row[0], row[1], row[2]) for name, row in tuple(rows.items())}
            ledger = {
                name: {"prompt_tokens": row[0], "completion_tokens": row[1], "cost": row[2]}
                for name, row in tuple(self.counters.by_stage.items())
            }
            started = dict(self.stage_started)
        preview_of, preview = self._shown_text()
        return LiveSnapshot(
            state=state,
            message=message,
            error=error,
            current=current,
            rows=table,
            by_stage=ledger,
            stage_started=started,
            preview=preview,
            preview_of=preview_of,
            retry=self.retry,
            elapsed=(self.finished or time.time()) - self.started,
        )


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


def preview_label(status: JobStatus) -> str:
    """Whose text the preview is: "draft · chapter 2", "premise"."""
    stage = status.preview_stage or ""
    unit = status.preview_unit
    if not unit or unit == "all":
        return stage
    chapter = unit[2:].lstrip("0") if unit.startswith("ch") else unit
    return f"{stage} · chapter {chapter}" if chapter.isdigit() else f"{stage} · {unit}"


def render_status(status: JobStatus) -> str:
    state = status.state.value if status.state else "no job"
    lines = [
        f"novelkit job {status.id or '-'}: {state}  {bar(status.progress)} {status.progress:4.0%}"
        f"  tokens {status.tokens:,}  cost {format_cost(status.cost, status.currency)}",
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
    if status.preview and status.state is not None and status.state.active:
        tail = " ".join(status.preview.split())[-72:]
        lines.append(f"  ✎ {preview_label(status)}: …{tail}")
    if status.extra.get("report"):
        lines.append(f"  report: {status.extra['report']}")
    return "\n".join(lines)
