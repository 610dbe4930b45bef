"""JobPanel: a live ipywidgets view of a job, with Pause, Pause now, Resume, Cancel and Run stage.

Threads: the job's worker never touches a widget. It keeps its own latest state (counters, the
last ~2,000 streamed characters) and writes events to the store. One renderer thread per panel
reads that state at most every 100 ms, turns it into one HTML string, and sets the widgets
inside ``hold_sync`` -- so a refresh is one comm message, whatever the token rate. Button
handlers (on the kernel's shell thread) call the Job and leave their result in a notice for the
renderer; they never write widgets either. Setting traits from a background thread is how
ipywidgets progress bars work; it needs ipykernel >= 7.1, which routes a thread's messages
to the cell's parent (ipykernel#1451). Nothing here prints, displays or uses ``Output``.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

try:
    import ipywidgets as w
except ImportError:
    raise ImportError(
        "the notebook panel needs ipywidgets; install it with pip install 'novelkit[widgets]'"
    ) from None

from .._errors import NovelkitError
from .._job import Job
from .._pipeline import StageState
from .._project import Project
from .._provenance import Writer
from .._status import ControlResult, JobState, JobStatus
from .._status import legal_actions as job_actions
from ._text import render_notice, render_view

__all__ = ["JobPanel", "PanelStats", "close_tree", "legal_actions"]

log = logging.getLogger("novelkit")

INTERVAL = 0.1  # at most ten refreshes a second
IDLE_POLL = 0.5  # after the job stopped: notice a resume(), a new job or an edit
MAX_MESSAGES = 10  # comm messages in any one-second window

S = JobState
_FINAL = frozenset({S.SUCCEEDED, S.CANCELLED})


def backend_line(project: Project) -> str:
    """The backend and model over the view; a book from the offline backend is flagged."""
    writer = Writer.of(project.config)
    style = "color:#b45309;font-weight:600" if writer.placeholder else "opacity:.75"
    return (
        f'<div class="nk-backend" data-placeholder="{str(writer.placeholder).lower()}" '
        f'style="font-size:12px;{style}">backend: {html.escape(writer.label())}</div>'
    )


def legal_actions(state: JobState | None, *, project_busy: bool = False) -> frozenset[str]:
    """The buttons a job in ``state`` allows (the job's control table, ``CONTROL``); "run"
    needs no active job on the project."""
    legal = set(job_actions(state))
    if not project_busy and (state is None or not state.active):
        legal.add("run")
    return frozenset(legal)


@dataclass
class PanelStats:
    """What the renderer did: refreshes applied, comm messages caused, CPU seconds spent."""

    renders: int = 0
    messages: int = 0
    deferred: int = 0
    cpu_seconds: float = 0.0


class _StageClock:
    """Seconds each stage has been running, as seen by the panel (the core does not time stages)."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}
        self._total: dict[str, float] = {}

    def update(self, status: JobStatus, now: float) -> dict[str, float]:
        for s in status.stages:
            if s.state is StageState.RUNNING and status.state is not None and status.state.active:
                self._start.setdefault(s.name, now)
            elif s.name in self._start:
                self._total[s.name] = self._total.get(s.name, 0.0) + now - self._start.pop(s.name)
        out = dict(self._total)
        for name, start in self._start.items():
            out[name] = out.get(name, 0.0) + now - start
        return out


class _Renderer:
    """The only writer of the panel's widgets; runs on its own daemon thread."""

    def __init__(
        self,
        project: Project,
        job: Job | None,
        *,
        follow_project: bool,
        interval: float,
        max_messages: int,
    ) -> None:
        self.project = project
        self.parts: dict[str, w.DOMWidget] = {}  # the widgets it writes, set by the panel
        self.stage_name: Callable[[], str] = lambda: project.pipeline.names()[0]
        self.job = job
        self.follow_project = follow_project
        self.interval = interval
        self.max_messages = max_messages
        self.stats = PanelStats()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied: dict[tuple[str, str], Any] = {}
        self._sent: deque[float] = deque()
        self._clock = _StageClock()
        self._job_elapsed = 0.0
        self._seq = -1
        self._state: JobState | None = None
        self._poked = True
        self._notice = ("", False)
        self._chapters: tuple[tuple[str, int], ...] = ()

    # -- called from any thread -------------------------------------------------------------

    def poke(self) -> None:
        """Something changed outside the job's state (a click, a new job): refresh soon."""
        self._poked = True
        self._wake.set()
        self.start()

    def notify(self, text: str, *, error: bool) -> None:
        self._notice = (text, error)
        self.poke()

    def follow(self, job: Job) -> None:
        with self._lock:
            if job is not self.job:
                self.job = job
                self._clock = _StageClock()
                self._job_elapsed = 0.0
        self.poke()

    def start(self) -> None:
        with self._lock:
            if self._closed.is_set() or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="novelkit-panel", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._closed.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # -- the renderer thread ----------------------------------------------------------------

    def _run(self) -> None:
        live: bool | None = True
        try:
            while not self._closed.is_set():
                self._wake.wait(self.interval if live else IDLE_POLL)
                self._wake.clear()
                if self._closed.is_set():
                    return
                started = time.thread_time()
                live = self.tick()
                self.stats.cpu_seconds += time.thread_time() - started
                if live is None:
                    with self._lock:
                        if not self._poked:
                            return  # a finished job's final state is on screen; a click restarts
        except Exception:  # a broken panel must not take the kernel down; log it once
            log.exception("novelkit panel stopped updating")
        finally:
            with self._lock:
                self._thread = None

    def _current_job(self) -> Job | None:
        if self.follow_project:
            job = self.project.job
            if job is not None and job is not self.job:
                self.follow(job)
        return self.job

    def first_model(self) -> dict[tuple[str, str], Any]:
        """The opening state, for the widgets' constructors: it goes out with comm_open."""
        with self._lock:
            status = self.job.status if self.job is not None else self.project.status()
            self._seq, self._state = status.last_seq, status.state
            self._poked = False
            self._job_elapsed = status.elapsed
            self._chapters = tuple((f"chapter {n}", n) for n in self.project.chapter_numbers())
            self._applied = self._model(status, self._clock.update(status, time.monotonic()))
            return dict(self._applied)

    def tick(self) -> bool | None:
        """One refresh; True while more are due, False when idle, None when done for good."""
        with self._lock:
            job = self._current_job()
            state = job.state if job is not None else None
            active = state is not None and state.active
            seq = self.project.store.last_seq()
            if not (active or self._poked or seq != self._seq or state is not self._state):
                return False
            poked, self._poked = self._poked, False
            status = job.status if job is not None else self.project.status()
            now = time.monotonic()
            if status.state is not None and status.state.active:
                self._job_elapsed = status.elapsed
            stage_elapsed = self._clock.update(status, now)
            if seq != self._seq or poked:
                self._chapters = tuple((f"chapter {n}", n) for n in self.project.chapter_numbers())
            model = self._model(status, stage_elapsed)
            if not self._apply(model, time.monotonic()):
                self._poked = self._poked or poked
                return True  # over the message budget: try again next tick
            self._seq, self._state = seq, state
            if active or (status.state is not None and status.state.active):
                return True
            if not self.follow_project and state in _FINAL:
                return None
            return False

    def _model(
        self, status: JobStatus, stage_elapsed: dict[str, float]
    ) -> dict[tuple[str, str], Any]:
        project_job = self.project.job if not self.follow_project else self.job
        busy = project_job is not None and project_job is not self.job and project_job.state.active
        legal = legal_actions(status.state, project_busy=busy)
        stage = self.project.pipeline.get(self.stage_name())
        text, error = self._notice
        return {
            ("view", "value"): backend_line(self.project)
            + render_view(status, stage_elapsed=stage_elapsed, job_elapsed=self._job_elapsed),
            ("notice", "value"): render_notice(text, error=error),
            ("pause", "disabled"): "pause" not in legal,
            ("pause_now", "disabled"): "pause_now" not in legal,
            ("resume", "disabled"): "resume" not in legal,
            ("cancel", "disabled"): "cancel" not in legal,
            ("run", "disabled"): "run" not in legal,
            ("chapters", "options"): self._chapters,
            ("chapters", "disabled"): not stage.per_chapter,
        }

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
        targets = self.parts
        with ExitStack() as stack:
            for name in widgets:
                stack.enter_context(targets[name].hold_sync())
            for (name, trait), value in changes.items():
                setattr(targets[name], trait, value)
        self._applied.update(changes)
        self._sent.extend([now] * len(widgets))
        self.stats.renders += 1
        self.stats.messages += len(widgets)
        return True


class JobPanel(w.VBox):  # type: ignore[misc]
    """A live panel of a job (or of a project's current job) in a notebook.

        job = project.start()
        job                  # the last expression of a cell shows the panel
        project.panel()      # follows whichever job the project runs next

    Shows the 12 stages, overall progress, tokens and cost, retry notices, errors with an
    explanation and the text being written; the buttons are enabled only when legal. It
    refreshes at most ten times a second, one comm message each; ``close()`` stops it.
    """

    def __init__(
        self, target: Job | Project, *, interval: float = INTERVAL, max_messages: int = MAX_MESSAGES
    ) -> None:
        job: Job | None
        if isinstance(target, Job):
            project, job, follow = target.project, target, False
        elif isinstance(target, Project):
            project, job, follow = target, target.job, True
        else:
            raise TypeError(
                f"JobPanel shows a novelkit Job or Project, not {type(target).__name__}"
            )
        names = project.pipeline.names()
        self._renderer = _Renderer(
            project, job, follow_project=follow, interval=interval, max_messages=max_messages
        )
        first = self._renderer.first_model()
        self.view = w.HTML(value=first["view", "value"], layout=w.Layout(width="100%"))
        self.notice = w.HTML(value=first["notice", "value"])
        labels = {
            "pause": ("Pause", "pause", "Start no new calls; in-flight calls finish"),
            "pause_now": ("Pause now", "stop", "Abort in-flight calls; they rerun on resume"),
            "resume": ("Resume", "play", "Continue; nothing finished is redone"),
            "cancel": ("Cancel", "times", "Abort and stop; finished work is kept"),
            "run": ("Run stage", "forward", "Run the stage (all chapters if none chosen)"),
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
        self.stage_picker = w.Dropdown(
            options=[(f"{n} {name}", name) for n, name in enumerate(names, 1)],
            value=names[0],
            description="Stage",
            layout=w.Layout(width="220px"),
        )
        self.chapter_picker = w.SelectMultiple(
            options=first["chapters", "options"],
            disabled=first["chapters", "disabled"],
            rows=4,
            description="Chapters",
            layout=w.Layout(width="220px"),
        )
        self.force = w.Checkbox(
            value=False, description="force", indent=False, layout=w.Layout(width="80px")
        )
        b = self.buttons
        super().__init__(
            children=[
                self.view,
                w.HBox([b["pause"], b["pause_now"], b["resume"], b["cancel"]]),
                w.HBox([self.stage_picker, self.chapter_picker, self.force, b["run"]]),
                self.notice,
            ]
        )
        self._renderer.parts = {
            "view": self.view,
            "notice": self.notice,
            "chapters": self.chapter_picker,
            **self.buttons,
        }
        self._renderer.stage_name = lambda: str(self.stage_picker.value)
        b["pause"].on_click(lambda _: self._control(lambda job: job.pause()))
        b["pause_now"].on_click(lambda _: self._control(lambda job: job.pause(now=True)))
        b["resume"].on_click(lambda _: self._control(lambda job: job.resume()))
        b["cancel"].on_click(lambda _: self._control(lambda job: job.cancel()))
        b["run"].on_click(lambda _: self._run_stage())
        self.stage_picker.observe(lambda _: self._renderer.poke(), names="value")

    def __repr__(self) -> str:
        job = self._renderer.job
        return f"<JobPanel {job.id if job else 'no job'}>"

    @property
    def job(self) -> Job | None:
        """The job on show (for a project panel: the project's current or last job)."""
        return self._renderer.job

    @property
    def stats(self) -> PanelStats:
        return self._renderer.stats

    @property
    def running(self) -> bool:
        """True while the renderer thread is alive (it ends with close(), or a finished job)."""
        return self._renderer.running

    def start(self) -> JobPanel:
        """Start refreshing (displaying the panel does this); returns the panel."""
        self._renderer.start()
        return self

    def close(self) -> None:
        """Stop refreshing and close the widgets' comms."""
        self._renderer.stop()
        close_tree(self, super().close)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        self._renderer.start()
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        return bundle

    # -- button handlers: on the shell thread; they call the Job and leave a notice ----------

    def _control(self, action: Callable[[Job], ControlResult]) -> None:
        job = self._renderer.job
        if job is None:
            self._renderer.notify(
                "there is no job yet: choose a stage and click Run stage", error=True
            )
            return
        try:
            result = action(job)
        except NovelkitError as exc:
            self._renderer.notify(str(exc), error=True)
        else:
            self._renderer.notify(result.message or result.state.value, error=False)

    def _run_stage(self) -> None:
        project = self._renderer.project
        name = str(self.stage_picker.value)
        picked = sorted(self.chapter_picker.value)
        chapters = picked if picked and project.pipeline.get(name).per_chapter else None
        try:
            job = project.run_stage(name, chapters, force=bool(self.force.value))
        except NovelkitError as exc:
            self._renderer.notify(str(exc), error=True)
            return
        which = f" chapters {', '.join(map(str, chapters))}" if chapters else ""
        self._renderer.notify(f"running stage {name}{which} (job {job.id})", error=False)
        self._renderer.follow(job)


def close_tree(widget: w.Widget, close_self: Callable[[], None] | None = None) -> None:
    """Close a widget with its children, layout and style (each holds a comm of its own)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, w.Widget):
            part.close()
    (close_self or widget.close)()
