"""Job: the state machine, the worker thread (an asyncio loop inside), and cooperative control.

    queued → running → succeeded | failed
    running → pausing → paused → (resume) queued → running
    queued | running | pausing | paused → cancelling → cancelled  (paused/queued go straight)
    on open: running but its process is gone → interrupted → (resume) queued

Control never kills a thread: ``pause()`` lets in-flight calls finish and starts no new one;
``pause(now=True)`` and ``cancel()`` abort in-flight calls (their partial text is dropped and
re-sent on resume). A job run by another process is controlled through the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import BudgetExceededError, JobStateError, NovelkitError
from ._events import Subscription
from ._status import _RESUMABLE, ControlResult, JobState, JobStatus
from ._units import PREVIEW_CHARS, UnitRunner, _Counters, _Stop

if TYPE_CHECKING:
    from ._events import Callback
    from ._project import Project

__all__ = ["Job"]

T = TypeVar("T")
log = logging.getLogger("novelkit")

CONTROL_POLL = 0.05
SNAPSHOT_EVERY = 0.25


class Job(UnitRunner):
    """A run of the pipeline (``kind="all"``) or of one stage (``kind="stage"``)."""

    def __init__(
        self,
        project: Project,
        job_id: str,
        spec: dict[str, Any],
        state: JobState,
        *,
        local: bool,
        message: str = "",
        error: str | None = None,
    ) -> None:
        self.project = project
        self.id = job_id
        self.spec = spec
        self._state = state
        self._local = local
        self._message = message
        self._error = error
        self._cond = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._here = False  # a thread of this process runs the job (or is about to)
        self._runs = 0  # bumped whenever _here changes: a store row read before is outdated
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop: JobState | None = None  # PAUSED or CANCELLED once requested
        self._abort = False
        self._current: tuple[str, str] | None = None
        self._preview: deque[str] = deque()
        self._preview_len = 0
        self.streamed_chars = 0
        self._retry: str | None = None
        self._started = time.time()
        self._counters = _Counters()
        self._planned: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._snapshot_dirty = False
        self._variant: str = spec.get("variant") or ""
        self._live: dict[str, list[Any]] | None = None  # stage → [state, done, total] while running
        self._generation = 0  # each launch runs under a new number; stale threads step aside
        self._finished: float | None = None
        self._stage_started: dict[str, float] = {}
        self._running_stages: set[str] = set()
        self._write_error: BaseException | None = None
        self._outbox: list[Callable[[], None]] = []  # writes waiting for the loop to idle
        self._hand_over_due = False
        self._loop_thread: int | None = None
        self._save_error: BaseException | None = None  # the first unit save that failed
        self.version = 0
        """Bumped on every change a view may show (state, progress, streamed text)."""

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def create(cls, project: Project, spec: dict[str, Any]) -> Job:
        job = cls(project, uuid.uuid4().hex[:12], spec, JobState.QUEUED, local=True)
        store = project.store
        with store.transaction():  # the job and its first event: one commit
            store.create_job(job.id, spec["kind"], spec, JobState.QUEUED.value)
            store.append_event("job", {"state": "queued", "previous": None, "spec": spec}, job.id)
        return job

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.spec.get('kind')} {self.state.value}>"

    # -- observing --------------------------------------------------------------------------

    @property
    def local(self) -> bool:
        """True when this process runs the job, or could: no other process is running it."""
        self._sync()
        return self._local

    def _sync(self) -> None:
        """Who runs the job now? While this process runs it, memory is the truth; otherwise
        the store is, since another process may have resumed or finished it meanwhile."""
        if self._here:  # a plain read: a running job's readers never wait for its lock
            self._local = True
            return
        self._local = not self.project._lock.held_elsewhere()
        self._refresh_remote()

    @property
    def state(self) -> JobState:
        self._sync()
        return self._state

    @property
    def status(self) -> JobStatus:
        self._sync()
        if not self._local:
            snap = self.project.store.snapshot() or {}
            if snap.get("id") == self.id and self._state.active:
                return self.project._status_from(self, snap)
        return self.project._status_from(self, None)

    def subscribe(self, callback: Callback | None = None) -> Subscription:
        """Events of this project, pushed to ``callback`` on its own thread (or pulled)."""
        return self.project.subscribe(callback)

    def panel(self) -> Any:
        """A live ipywidgets panel of this job (needs ``novelkit[widgets]``)."""
        from .widgets import JobPanel

        return JobPanel(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        from .widgets import mimebundle

        return mimebundle(self, **kwargs)

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job stops (succeeded, failed, paused, cancelled, interrupted).

        Returns the state it stopped in, or the current state when ``timeout`` runs out.
        """
        self._sync()
        if not self._local:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.state.active and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.05)
            return self._state
        with self._cond:
            self._cond.wait_for(lambda: not self._state.active, timeout)
            state = self._state
        if not state.active and self._thread is not None:
            self._thread.join(timeout=5.0)
        return state

    def _refresh_remote(self) -> None:
        runs = self._runs
        row = self.project.store.job(self.id)  # not under _cond: a poll never holds up a run
        if row is None:
            return
        with self._cond:
            if self._here or runs != self._runs:  # a run here began (or ended) since the read
                return
            self._state = JobState(row["state"])
            self._message, self._error = row["message"], row["error"]
            lock = self.project._lock
            if self._state.active and not lock.held and not lock.held_elsewhere():
                if self.project._mark_interrupted(self.id):
                    self._state = JobState.INTERRUPTED

    # -- control ----------------------------------------------------------------------------

    def pause(self, now: bool = False) -> ControlResult:
        """Stop starting new calls (``now=True``: also abort in-flight ones), then ``paused``."""
        with self._cond:
            state = self.state
            if state is JobState.PAUSED:
                return ControlResult(False, state, "already paused")
            if state is JobState.PAUSING:
                if now and not self._abort and self._local:
                    self._abort = True
                    self._abort_inflight()
                    return ControlResult(True, state, "pausing now: in-flight calls aborted")
                if now and not self._local:
                    self.project.store.request_control(self.id, "pause", True)
                    return ControlResult(True, state, "pause-now requested")
                return ControlResult(False, state, "already pausing")
            if state not in (JobState.QUEUED, JobState.RUNNING):
                raise JobStateError(
                    f"cannot pause a job that is {state.value}; only a queued or running job pauses",
                    state=state,
                    action="pause",
                )
            if not self._local:
                self.project.store.request_control(self.id, "pause", now)
                return ControlResult(True, state, "pause requested from another process")
            if state is JobState.QUEUED:
                self._set_state(JobState.PAUSED, "paused before it started")
                return ControlResult(True, JobState.PAUSED, "paused")
            self._stop, self._abort = JobState.PAUSED, now
            self._set_state(
                JobState.PAUSING,
                "pausing: "
                + ("aborting in-flight calls" if now else "letting in-flight calls finish"),
            )
            if now:
                self._abort_inflight()
            return ControlResult(True, JobState.PAUSING, "pausing")

    def resume(self) -> ControlResult:
        """Continue a paused, interrupted or failed job; nothing finished is redone."""
        with self._cond:
            state = self.state
            if state in (JobState.QUEUED, JobState.RUNNING):
                return ControlResult(False, state, f"already {state.value}")
            if state not in _RESUMABLE:
                hint = (
                    "start() a new job"
                    if state in (JobState.SUCCEEDED, JobState.CANCELLED)
                    else f"wait until it is {'paused' if state is JobState.PAUSING else 'cancelled'}"
                )
                raise JobStateError(
                    f"cannot resume a job that is {state.value}; {hint}",
                    state=state,
                    action="resume",
                )
            claim = self.project._claim(self)
            self._local = True
            self._launch(claim)
            return ControlResult(True, JobState.QUEUED, "resumed")

    def cancel(self) -> ControlResult:
        """Abort in-flight calls and stop; finished work stays, and a later start() reuses it."""
        with self._cond:
            state = self.state
            if state in (JobState.CANCELLED, JobState.CANCELLING):
                return ControlResult(False, state, f"already {state.value}")
            if state in (JobState.SUCCEEDED, JobState.FAILED):
                raise JobStateError(
                    f"cannot cancel a job that has {state.value}", state=state, action="cancel"
                )
            if not self._local and state.active:
                self.project.store.request_control(self.id, "cancel", True)
                return ControlResult(True, state, "cancel requested from another process")
            if state in (JobState.QUEUED, JobState.PAUSED, JobState.INTERRUPTED):
                self._set_state(JobState.CANCELLED, "cancelled")
                return ControlResult(True, JobState.CANCELLED, "cancelled")
            self._stop, self._abort = JobState.CANCELLED, True
            self._set_state(JobState.CANCELLING, "cancelling: aborting in-flight calls")
            self._abort_inflight()
            return ControlResult(True, JobState.CANCELLING, "cancelling")

    def _set_state(self, state: JobState, message: str = "", error: str | None = None) -> None:
        with self._cond:
            previous = self._state
            self._state = state
            self._message = message or self._message
            self._error = error
            self._snapshot_dirty = True
            self.version += 1
            try:
                store = self.project.store
                with store.transaction():
                    store.update_job(self.id, state=state.value, message=self._message, error=error)
                    store.append_event(
                        "job",
                        {
                            "state": state.value,
                            "previous": previous.value,
                            "message": self._message,
                            "error": error,
                        },
                        self.id,
                    )
            finally:
                self._cond.notify_all()  # waiters must never hang on a failed write
        # no snapshot once stopped: other processes read a stopped job from the store itself

    def _abort_inflight(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_tasks)
            except RuntimeError:
                pass  # the loop closed between the check and the call: nothing in flight

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- the worker -------------------------------------------------------------------------

    def _launch(self, claim: int) -> None:
        """Start a run under ``claim`` (see :meth:`Project._claim`). An earlier run's thread
        may still be tidying up: it steps aside (its generation is past), nobody waits for it."""
        with self._cond:
            self._here = True  # from now until the run's thread ends, memory is the truth
            self._runs += 1
            try:
                self._stop, self._abort, self._retry = None, False, None
                self.project.store.take_control(self.id)  # requests for an earlier run are void
                if self._state is not JobState.QUEUED:
                    self._set_state(JobState.QUEUED, "queued")
                self._generation += 1
                self._thread = threading.Thread(
                    target=self._thread_main,
                    args=(self._generation, claim),
                    name=f"novelkit-job-{self.id}",
                    daemon=True,
                )
                self._thread.start()
            except BaseException:
                self._here = False  # no run began: the store is the truth again
                self._runs += 1
                raise

    def _thread_main(self, generation: int, claim: int) -> None:
        try:
            asyncio.run(self._main(generation))
        finally:
            self.project._release(self, claim)  # while memory (the final state) is the truth
            with self._cond:
                if generation == self._generation:
                    self._loop = None
                    self._here = False
                    self._runs += 1

    async def _main(self, generation: int) -> None:
        with self._cond:
            if self._state is not JobState.QUEUED or generation != self._generation:
                return  # paused, cancelled or relaunched before it began
            self._hand_over()  # anything an earlier run queued after its last drain
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._started = time.time()
            self._finished = None
            self._save_error = None
            self._load_counters()
            self._live = {name: list(row) for name, row in self.project.stage_states().items()}
            self._set_state(JobState.RUNNING, "running")
        watcher = asyncio.create_task(self._watch())
        final, message, error = JobState.SUCCEEDED, "finished", None
        try:
            await self._execute()
            if self._stop is not None:
                raise _Stop()
        except _Stop:
            final = self._stop or JobState.PAUSED
            message = "paused" if final is JobState.PAUSED else "cancelled"
        except BudgetExceededError as exc:
            final, message = JobState.PAUSED, str(exc)
        except NovelkitError as exc:
            final, message, error = JobState.FAILED, "failed", str(exc)
        except Exception as exc:  # unexpected: keep the job resumable and say what happened
            final, message = JobState.FAILED, "failed"
            error = f"{type(exc).__name__}: {exc}"
        finally:
            watcher.cancel()
            self._current = None
            try:
                await self.project.backend.aclose()  # connections belong to this run's loop
            except Exception:  # closing must never hide how the run ended
                pass
        try:
            await self._drain_writes()  # everything the run queued lands before its final state
        except Exception as exc:
            if final is not JobState.FAILED:
                final, message, error = JobState.FAILED, "failed", f"could not save: {exc}"
        with self._cond:  # a cancel() may have come in while the run was winding down
            now: JobState = self._state
            if now is JobState.CANCELLING and final is not JobState.FAILED:
                final, message = JobState.CANCELLED, "cancelled"
            if final is JobState.CANCELLED:
                for name in self._running_stages:
                    self.project._mark_cancelled(name)
            self._running_stages.clear()
            self._live = None
            self._current_stage = None
            self._finished = time.time()
            try:
                self._set_state(final, message, error)
                self.project.store.take_control(self.id)  # nothing left to act on them
            except Exception:  # the state is set in memory; on reopen the store shows interrupted
                log.exception("novelkit: could not record that job %s is %s", self.id, final.value)

    _current_stage: str | None = None

    def _load_counters(self) -> None:
        ledger = self.project.store.ledger()
        counters = _Counters()
        for stage, row in ledger.items():
            counters.prompt_tokens += int(row["prompt_tokens"] or 0)
            counters.completion_tokens += int(row["completion_tokens"] or 0)
            counters.cost += float(row["cost"] or 0.0)
            counters.by_stage[stage] = [
                int(row["prompt_tokens"] or 0),
                int(row["completion_tokens"] or 0),
                float(row["cost"] or 0.0),
            ]
        self._counters = counters

    async def _watch(self) -> None:
        """Pick up control requests from other processes; keep the live snapshot fresh."""
        last_snapshot = 0.0
        store = self.project.store
        while True:
            await asyncio.sleep(CONTROL_POLL)
            for action, now in store.take_control(self.id):
                try:
                    if action == "pause":
                        self.pause(now=now)
                    elif action == "cancel":
                        self.cancel()
                except JobStateError:
                    pass  # the state moved on since the request was written
            if self._snapshot_dirty and time.monotonic() - last_snapshot >= SNAPSHOT_EVERY:
                last_snapshot = time.monotonic()
                self._snapshot_dirty = False
                self._later(self._write_snapshot)

    def _write_snapshot(self) -> None:
        try:
            self.project.store.write_snapshot(self.status.to_dict())
        except Exception:  # the snapshot is a convenience for other processes, never fatal
            pass

    def preview(self) -> str:
        return "".join(self._preview)[-PREVIEW_CHARS:]
