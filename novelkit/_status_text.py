"""The plain-text status table shared by the CLI, text/plain reprs and terminal IPython."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._job import JobStatus

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
