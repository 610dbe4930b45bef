"""What the panel says: the HTML of the live view, error explanations, the progress mode.

Pure functions of a :class:`~novelkit.JobStatus`; no ipywidgets here, so the text fallback
and the tests use them without a notebook.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING

from .._prices import format_cost
from .._status import ICONS, preview_label

if TYPE_CHECKING:
    from .._status import JobStatus

__all__ = ["ProgressMode", "explain", "one_line", "progress_mode", "render_notice", "render_view"]

ENV = "NOVELKIT_PROGRESS"

STAGE_COLOURS = {
    "pending": "#9e9e9e",
    "running": "#1e88e5",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "stale": "#ef6c00",
    "cancelled": "#616161",
}
JOB_COLOURS = {
    "queued": "#757575",
    "running": "#1e88e5",
    "pausing": "#f9a825",
    "paused": "#f9a825",
    "cancelling": "#616161",
    "cancelled": "#616161",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "interrupted": "#ef6c00",
}
JOB_ICONS = {
    "queued": "…",
    "running": "▶",
    "pausing": "⏸",
    "paused": "⏸",
    "cancelling": "■",
    "cancelled": "■",
    "succeeded": "✔",
    "failed": "✘",
    "interrupted": "⚡",
}
# the last ~2,000 characters, anchored at the bottom without JavaScript (column-reverse)
PREVIEW_BOX = (
    "max-height:14em;overflow-y:auto;display:flex;flex-direction:column-reverse;"
    "border:1px solid #8884;border-radius:4px;padding:4px 8px;margin-top:4px"
)
PRE = "white-space:pre-wrap;word-break:break-word;margin:0;font-size:12px;line-height:1.35"
TD = "padding:1px 8px 1px 0;white-space:nowrap"


class ProgressMode(enum.Enum):
    WIDGET = "widget"
    TEXT = "text"
    OFF = "off"


def progress_mode(environ: Mapping[str, str] | None = None) -> tuple[ProgressMode, str]:
    """The mode ``NOVELKIT_PROGRESS`` asks for, and a warning when its value is unknown."""
    raw = (os.environ if environ is None else environ).get(
        ENV, "widget"
    ).strip().lower() or "widget"
    try:
        return ProgressMode(raw), ""
    except ValueError:
        return ProgressMode.TEXT, f"{ENV}={raw!r} is not one of widget, text, off; showing text"


def one_line(status: JobStatus) -> str:
    """The ``NOVELKIT_PROGRESS=off`` form: one line, no table."""
    state = status.state.value if status.state else "no job"
    return f"<novelkit job {status.id or '-'}: {state}, {status.progress:.0%}, {status.tokens:,} tokens>"


def explain(error: str) -> str:
    """A short, actionable explanation of why a job failed."""
    low = error.lower()
    if "max_tokens" in low or "max_cost" in low:
        return (
            "The budget set in novel.toml was reached. Raise max_tokens or max_cost there, "
            "then click Resume; nothing already written is lost."
        )
    if "disk is full" in low or "could not save" in low or "permission" in low:
        return "A file could not be written. Free disk space or fix permissions, then click Resume."
    if "cassette" in low or "replay" in low:
        return (
            "The replay cassette has no recorded answer for this request. Record one with a "
            "live backend, or switch to the offline backend."
        )
    if any(
        k in low
        for k in ("api key", "401", "403", "unauthori", "authentic", "base_url", "model not")
    ):
        return (
            "The backend rejected its settings (key, model or URL). Fix them in novel.toml or "
            "the environment, then click Resume."
        )
    if any(
        k in low
        for k in ("429", "rate limit", "timed out", "timeout", "503", "502", "500", "connect")
    ):
        return (
            "The backend kept failing after every retry. Wait a moment, then click Resume; "
            "finished units are kept."
        )
    return (
        "The job stopped on an error. Fix the cause, then click Resume: finished work is kept "
        "and not paid for twice."
    )


def _clock(seconds: float) -> str:
    if seconds <= 0:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes else f"{secs} s"


def _bar(fraction: float, colour: str, width: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div style="width:{width};height:8px;background:#8883;border-radius:4px;overflow:hidden">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{colour}"></div></div>'
    )


def _box(colour: str, text: str, cls: str) -> str:
    return (
        f'<div class="{cls}" style="border-left:4px solid {colour};background:{colour}1a;'
        f'padding:3px 8px;margin:4px 0">{text}</div>'
    )


def render_view(
    status: JobStatus, *, stage_elapsed: Mapping[str, float] | None = None, job_elapsed: float = 0.0
) -> str:
    """The live part of the panel as one HTML string (one comm message per refresh)."""
    state = status.state.value if status.state else "no job"
    colour = JOB_COLOURS.get(state, "#757575")
    active = status.state is not None and status.state.active
    parts = [
        '<div class="nk-panel" style="font-size:13px;line-height:1.4">',
        f'<div class="nk-header"><b>novelkit</b> job <code>{escape(status.id or "-")}</code> · '
        f'<span class="nk-job-state" data-state="{state}" style="color:{colour};font-weight:600">'
        f"{JOB_ICONS.get(state, '')} {state}</span> · {status.progress:.0%} · "
        f'<span class="nk-tokens">{status.tokens:,} tokens</span> '
        f"({status.prompt_tokens:,} in, {status.completion_tokens:,} out) · "
        f"cost {escape(format_cost(status.cost, status.currency))} · {_clock(job_elapsed)}</div>",
        _bar(status.progress, colour, "100%"),
    ]
    if status.message:
        parts.append(
            f'<div class="nk-message" style="margin-top:2px">{escape(status.message)}</div>'
        )
    if status.retry:
        parts.append(_box("#f9a825", "⟳ " + escape(status.retry), "nk-retry"))
    if status.error:
        parts.append(
            _box(
                "#c62828",
                f"<b>✘ {escape(status.error)}</b><br>{escape(explain(status.error))}",
                "nk-error",
            )
        )
    parts.append('<table class="nk-stages" style="border-collapse:collapse;margin-top:4px">')
    elapsed = stage_elapsed or {}
    for s in status.stages:
        name = s.state.value
        c = STAGE_COLOURS.get(name, "#9e9e9e")
        fraction = s.done / s.total if s.total else 0.0
        seconds = s.elapsed or elapsed.get(s.name, 0.0)
        parts.append(
            f'<tr class="nk-stage nk-{name}" data-stage="{escape(s.name)}" title="{escape(s.description)}">'
            f'<td style="{TD};text-align:right">{s.number}</td>'
            f'<td style="{TD}">{escape(s.name)}</td>'
            f'<td class="nk-stage-state" style="{TD};color:{c};font-weight:600">'
            f"{ICONS.get(name, '?')} {name}</td>"
            f'<td style="{TD}">{_bar(fraction, c, "110px")}</td>'
            f'<td style="{TD};text-align:right">{s.done}/{s.total}</td>'
            f'<td style="{TD};text-align:right">{s.tokens:,} tok</td>'
            f'<td style="{TD};text-align:right">{_clock(seconds)}</td></tr>'
        )
    parts.append("</table>")
    if active and status.stage:
        unit = f" · {escape(status.unit)}" if status.unit and status.unit != "all" else ""
        parts.append(
            f'<div class="nk-live" style="margin-top:4px">✎ writing <b>{escape(status.stage)}</b>{unit}</div>'
        )
    if status.preview:
        label = preview_label(status)
        parts.append(
            f'<div class="nk-preview-box" style="{PREVIEW_BOX}">'
            + (
                f'<div class="nk-preview-label" style="font-size:85%;opacity:.7">'
                f"✎ {escape(label)}</div>"
                if label
                else ""
            )
            + f'<pre class="nk-preview" style="{PRE}">{escape(status.preview)}</pre></div>'
        )
    parts.append("</div>")
    return "".join(parts)


def render_notice(text: str, *, error: bool) -> str:
    """A control result or a refused action, shown under the buttons."""
    if not text:
        return ""
    return _box("#c62828" if error else "#1e88e5", escape(text), "nk-notice")
