"""SweepPanel: a live ipywidgets view of a sweep, a row per run, with its control buttons.

Throttled like JobPanel (panel.py): one renderer thread reads the sweep's status at most every
100 ms, turns it into one HTML string and sets the widgets inside ``hold_sync``; it sends
nothing when nothing changed, and at most ``max_messages`` comm messages in any second, however
many runs the sweep has. With many runs the table shows the busiest rows first (running, then
failed, queued, paused, pending, finished) up to ``max_rows``; ``sweep.status`` has them all.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

try:
    import ipywidgets as w
except ImportError:
    raise ImportError(
        "the sweep panel needs ipywidgets; install it with pip install 'novelkit[widgets]'"
    ) from None

from .._errors import NovelkitError
from .._status import ControlResult, JobState
from .._sweep import Sweep, SweepStatus, control_sweep, legal_sweep_actions, read_sweep_status
from .._sweep._status import RunFiles
from .panel import INTERVAL, MAX_MESSAGES, PanelStats, close_tree

__all__ = ["SweepPanel", "render_sweep"]

log = logging.getLogger("novelkit")

IDLE_POLL = 0.5
MAX_ROWS = 100
_ORDER = {
    JobState.RUNNING: 0,
    JobState.PAUSING: 0,
    JobState.CANCELLING: 0,
    JobState.FAILED: 1,
    JobState.QUEUED: 2,
    JobState.INTERRUPTED: 3,
    JobState.PAUSED: 3,
    None: 4,
    JobState.CANCELLED: 5,
    JobState.SUCCEEDED: 6,
}
_COLOURS = {
    "running": "#1565c0",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "paused": "#ef6c00",
    "cancelled": "#6d6d6d",
    "interrupted": "#ef6c00",
}


def render_sweep(status: SweepStatus, *, max_rows: int = MAX_ROWS) -> str:
    """The panel's HTML: a summary line and a table of the busiest ``max_rows`` runs."""
    state = status.state.value if status.state is not None else "not started"
    counts = " · ".join(f"{n} {s}" for s, n in sorted(status.counts.items()))
    pct = f"{status.progress:.0%}"
    budget = []
    if status.max_tokens is not None:
        budget.append(f"{status.tokens:,} / {status.max_tokens:,} tokens")
    if status.max_cost is not None:
        budget.append(f"{status.cost:.4f} / {status.max_cost:.4f} cost")
    rows = sorted(status.runs, key=lambda r: _ORDER.get(r.state, 4))[:max_rows]
    body = []
    for run in rows:
        rstate = run.state.value if run.state is not None else "pending"
        colour = _COLOURS.get(rstate, "#555")
        params = ", ".join(f"{k}={v}" for k, v in run.params.items())
        error = f'<div style="color:#c62828">{html.escape(run.error)}</div>' if run.error else ""
        body.append(
            "<tr>"
            f'<td title="{html.escape(run.name)}">{html.escape(params)}{error}</td>'
            f'<td style="color:{colour}">{rstate}</td>'
            f'<td><div style="background:#eee;width:80px;height:8px">'
            f'<div style="background:{colour};width:{run.progress * 80:.0f}px;height:8px">'
            "</div></div></td>"
            f"<td style='text-align:right'>{run.tokens:,}</td>"
            f"<td style='text-align:right'>{run.cost:.4f}</td>"
            f"<td style='text-align:right'>{run.elapsed:.1f}s</td>"
            "</tr>"
        )
    more = len(status.runs) - len(rows)
    tail = f"<div>… {more} more runs (sweep.status has all)</div>" if more > 0 else ""
    return (
        "<style>.nk-sweep td,.nk-sweep th{padding:2px 10px;text-align:left}"
        ".nk-sweep tr:nth-child(even){background:#f7f7f9}</style>"
        '<div class="nk-sweep">'
        f"<div><b>sweep {html.escape(os.path.basename(status.root))}</b>: {state} — {pct} · "
        f"{len(status.runs)} runs: {counts} · {status.tokens:,} tokens · cost "
        f"{status.cost:.4f}{' · budget ' + ', '.join(budget) if budget else ''}</div>"
        + (f"<div>{html.escape(status.message)}</div>" if status.message else "")
        + '<table style="border-collapse:collapse"><tr><th>parameters</th><th>state</th>'
        "<th>progress</th><th>tokens</th><th>cost</th><th>wall</th></tr>"
        + "".join(body)
        + "</table>"
        + tail
        + "</div>"
    )


class _Source:
    """The sweep on show: a Sweep in this process, or a ROOT driven by another process."""

    def __init__(self, target: Sweep | str | os.PathLike[str]) -> None:
        self.sweep = target if isinstance(target, Sweep) else None
        self.root = target.root if isinstance(target, Sweep) else Path(target).resolve()
        self._files = RunFiles(self.root)  # re-reads only the runs whose file changed

    def status(self) -> SweepStatus:
        if self.sweep is not None:
            return self.sweep.status
        return read_sweep_status(self.root, self._files)

    def control(self, action: str) -> ControlResult:
        if self.sweep is not None:
            method: Callable[[], ControlResult] = getattr(self.sweep, action)
            return method()
        return control_sweep(self.root, action)


class _Renderer:
    """The only writer of the panel's widgets; runs on its own daemon thread."""

    def __init__(
        self, source: _Source, *, interval: float, max_messages: int, max_rows: int
    ) -> None:
        self.source = source
        self.parts: dict[str, w.DOMWidget] = {}
        self.interval = interval
        self.max_messages = max_messages
        self.max_rows = max_rows
        self.stats = PanelStats()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied: dict[tuple[str, str], Any] = {}
        self._sent: deque[float] = deque()
        self._notice = ""
        self._active = True

    def model(self) -> dict[tuple[str, str], Any]:
        status = self.source.status()
        self._active = status.state is not None and status.state.active
        legal = legal_sweep_actions(status.state)
        notice = html.escape(self._notice)
        return {
            ("view", "value"): render_sweep(status, max_rows=self.max_rows),
            ("notice", "value"): f"<div>{notice}</div>" if notice else "",
            ("pause", "disabled"): "pause" not in legal,
            ("resume", "disabled"): "resume" not in legal,
            ("cancel", "disabled"): "cancel" not in legal,
        }

    def first_model(self) -> dict[tuple[str, str], Any]:
        with self._lock:
            self._applied = self.model()
            return dict(self._applied)

    def notify(self, text: str) -> None:
        self._notice = text
        self._wake.set()
        self.start()

    def start(self) -> None:
        with self._lock:
            if self._closed.is_set() or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="novelkit-sweep-panel", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._closed.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _run(self) -> None:
        live = True
        try:
            while not self._closed.is_set():
                self._wake.wait(self.interval if live else IDLE_POLL)
                self._wake.clear()
                if self._closed.is_set():
                    return
                started = time.thread_time()
                live = self.tick()
                self.stats.cpu_seconds += time.thread_time() - started
        except Exception:  # a broken panel must not take the kernel down; log it once
            log.exception("novelkit sweep panel stopped updating")
        finally:
            with self._lock:
                self._thread = None

    def tick(self) -> bool:
        """One refresh; True while the sweep is active (refresh again soon)."""
        with self._lock:
            self._apply(self.model(), time.monotonic())
            return self._active

    def _apply(self, model: dict[tuple[str, str], Any], now: float) -> bool:
        changes = {key: value for key, value in model.items() if self._applied.get(key) != value}
        if not changes:
            return True
        widgets = {name for name, _ in changes}
        while self._sent and self._sent[0] <= now - 1.0:
            self._sent.popleft()
        if self._sent and len(self._sent) + len(widgets) > self.max_messages:
            self.stats.deferred += 1
            return False
        with ExitStack() as stack:
            for name in widgets:
                stack.enter_context(self.parts[name].hold_sync())
            for (name, trait), value in changes.items():
                setattr(self.parts[name], trait, value)
        self._applied.update(changes)
        self._sent.extend([now] * len(widgets))
        self.stats.renders += 1
        self.stats.messages += len(widgets)
        return True


class SweepPanel(w.VBox):  # type: ignore[misc]
    """A live panel of a sweep: a row per run (state, progress, tokens, cost, wall time),
    Pause / Resume / Cancel for the whole sweep, and a picker that opens one run's own panel.

        sweep = nk.sweep(...)
        sweep                       # the last expression of a cell shows the panel
        SweepPanel("sweeps/temps")  # a sweep driven by another process (e.g. the CLI)
    """

    def __init__(
        self,
        target: Sweep | str | os.PathLike[str],
        *,
        interval: float = INTERVAL,
        max_messages: int = MAX_MESSAGES,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self._source = _Source(target)
        self._renderer = _Renderer(
            self._source, interval=interval, max_messages=max_messages, max_rows=max_rows
        )
        first = self._renderer.first_model()
        self.view = w.HTML(value=first["view", "value"], layout=w.Layout(width="100%"))
        self.notice = w.HTML(value=first["notice", "value"])
        labels = {
            "pause": ("Pause", "pause", "Every run starts no new call; in-flight calls finish"),
            "resume": ("Resume", "play", "Continue every run that has not succeeded"),
            "cancel": ("Cancel", "times", "Abort every run; finished work is kept"),
        }
        self.buttons: dict[str, w.Button] = {
            name: w.Button(
                description=text,
                icon=icon,
                tooltip=tip,
                disabled=first[name, "disabled"],
                layout=w.Layout(width="auto"),
            )
            for name, (text, icon, tip) in labels.items()
        }
        names = [run.name for run in self._source.status().runs]
        self.run_picker = w.Dropdown(
            options=names, value=names[0] if names else None, description="Run"
        )
        self.open_button = w.Button(
            description="Open run panel", icon="external-link", layout=w.Layout(width="auto")
        )
        self.detail = w.VBox([])
        b = self.buttons
        super().__init__(
            children=[
                self.view,
                w.HBox([b["pause"], b["resume"], b["cancel"]]),
                w.HBox([self.run_picker, self.open_button]),
                self.notice,
                self.detail,
            ]
        )
        self._renderer.parts = {"view": self.view, "notice": self.notice, **self.buttons}
        for action in labels:
            b[action].on_click(lambda _, action=action: self._control(action))
        self.open_button.on_click(lambda _: self.open_run(str(self.run_picker.value)))

    def __repr__(self) -> str:
        return f"<SweepPanel {str(self._source.root)!r}>"

    @property
    def stats(self) -> PanelStats:
        return self._renderer.stats

    @property
    def running(self) -> bool:
        return self._renderer._thread is not None

    def start(self) -> SweepPanel:
        self._renderer.start()
        return self

    def open_run(self, name: str) -> Any:
        """Show run ``name``'s own JobPanel under the table (and return it)."""
        from .._project import open_project
        from .panel import JobPanel

        for child in self.detail.children:
            child.close()
        try:
            panel = JobPanel(open_project(self._source.root / name))
        except NovelkitError as exc:
            self._renderer.notify(str(exc))
            return None
        self.detail.children = (panel,)
        return panel

    def close(self) -> None:
        self._renderer.stop()
        for child in self.detail.children:
            child.close()
        close_tree(self, super().close)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        self._renderer.start()
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        return bundle

    def _control(self, action: str) -> None:
        try:
            result = self._source.control(action)
        except NovelkitError as exc:
            self._renderer.notify(str(exc))
        else:
            self._renderer.notify(result.message or result.state.value)
