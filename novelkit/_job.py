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
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._errors import BudgetExceededError, JobFailedError, JobStateError, NovelkitError
from ._events import Event, Subscription
from ._status import CONTROL, REPEATS, ControlResult, JobState, JobStatus, LiveSnapshot, LiveStatus
from ._units import Control, UnitRunner, _Stop

if TYPE_CHECKING:
    from ._events import Callback
    from ._project import Project

__all__ = ["Job"]

T = TypeVar("T")
log = logging.getLogger("novelkit")

CONTROL_POLL = 0.05
SNAPSHOT_EVERY = 0.25


class JobTestHooks:
    """Named points in a job's thread where a test may hold the run (each does nothing here):
    ``monkeypatch.setattr(Job.test_hooks, "run_ended", ...)``."""

    def thread_started(self, job: Job) -> None:
        """The run's thread has begun; its event loop has not."""

    def run_ended(self, job: Job) -> None:
        """The run's event loop has ended; the writer lock is not yet released."""


class Job:
    """A run of the pipeline (``kind="all"``) or of one stage (``kind="stage"``).

    It holds what its status shows (:attr:`live`, a :class:`~novelkit._status.LiveStatus`),
    the :class:`~novelkit._units.Control` flags that pause and cancel set, and the
    :class:`~novelkit._units.UnitRunner` that runs its units on the job's thread.
    """

    test_hooks: ClassVar[JobTestHooks] = JobTestHooks()

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
        started: float | None = None,
        finished: float | None = None,
    ) -> None:
        self.project = project
        self.id = job_id
        self.spec = spec
        self.live = LiveStatus(state, message, error, started=started, finished=finished)
        self._control = Control()
        self._runner = UnitRunner(project, job_id, spec, self.live, self._control)
        # Who runs the job: ``_here`` while a thread of this process runs it (or is about to);
        # ``_local`` (the last answer of :attr:`local`) when no other process runs it
        self._local = local
        self._here = False
        self._runs = 0  # bumped whenever _here changes: a store row read before is outdated
        self._cond = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._generation = 0  # each launch runs under a new number; stale threads step aside
        self._callbacks: list[Callable[[Job], object]] = []  # add_done_callback(), not yet run
        self._failure: BaseException | None = None  # what failed this process's last run
        self._run_seq = project.store.last_seq()  # events after it are of the latest run here

    @property
    def version(self) -> int:
        """Bumped on every change a view may show (state, progress, streamed text)."""
        return self.live.version

    @property
    def streamed_chars(self) -> int:
        """Characters of model output streamed so far by this job's runs in this process."""
        return self.live.streamed_chars

    @property
    def _state(self) -> JobState:
        return self.live.state

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of this job's latest run in this process (None before the first)."""
        return self._thread

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
        self._local = not self.project.writer.held_elsewhere()
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
                return JobStatus.from_dict(snap)  # the process running it wrote this
        return self.project.status_of(self)

    def snapshot(self) -> LiveSnapshot:
        """One reading of what the job's status shows, as this process last knew it (its live
        stage rows only while this process runs it)."""
        return self.live.snapshot(self._local)

    def running_stage(self) -> str | None:
        """The stage this process is running for the job now, if any."""
        return self.live.running_stage(self._local)

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

    def wait(self, timeout: float | None = None, *, raise_on_failure: bool = False) -> JobState:
        """Block until the job stops (succeeded, failed, paused, cancelled, interrupted).

        Returns the state it stopped in, or the current state when ``timeout`` runs out. With
        ``raise_on_failure=True`` a failed job raises :class:`~novelkit.JobFailedError`
        instead, so that a notebook's Run All stops at the failure.
        """
        state = self._wait(timeout)
        if raise_on_failure and state is JobState.FAILED:
            raise self._failed()
        return state

    def result(self, timeout: float | None = None) -> JobState:
        """Wait until the job stops; its final state, or :class:`~novelkit.JobFailedError`
        (a NovelkitError) when it failed. ``TimeoutError`` if it still runs after ``timeout``."""
        state = self._wait(timeout)
        if state.active:
            raise TimeoutError(f"job {self.id} is still {state.value} after {timeout} s")
        if state is JobState.FAILED:
            raise self._failed()
        return state

    def done(self) -> bool:
        """True when the job has stopped: succeeded, failed, paused, cancelled or interrupted
        (a paused, interrupted or failed job may be resumed, and then runs again)."""
        return not self.state.active

    def add_done_callback(self, fn: Callable[[Job], object]) -> None:
        """Call ``fn(job)`` once, when the job next stops (at once if it has stopped). It runs
        on the thread that stopped the job, usually the job's own; an error in it is logged."""
        with self._cond:
            if self.state.active:
                self._callbacks.append(fn)
                remote = not self._local
            else:
                remote = None
        if remote is None:
            _call_back(fn, self)
        elif remote:  # another process runs it: nothing here will see it stop unless asked

            def watch() -> None:
                self._wait(None)
                self._run_callbacks()

            threading.Thread(target=watch, name=f"novelkit-job-{self.id}-done", daemon=True).start()

    def __await__(self) -> Generator[Any, None, JobState]:
        """``await job``: the state the job stops in, without blocking the event loop."""
        return self._stopped().__await__()

    async def _stopped(self) -> JobState:
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[JobState] = loop.create_future()

        def settle(job: Job) -> None:
            if not stopped.done():
                stopped.set_result(job.state)

        self.add_done_callback(lambda job: loop.call_soon_threadsafe(settle, job))
        return await stopped

    async def events(self, poll: float = 0.1) -> AsyncIterator[Event]:
        """This job's events, from the start of its latest run in this process (streamed
        ``delta`` text as it comes, while this process runs it), ending with the event of the
        state it stops in::

            async for event in job.events():
                print(event.type, event.data)
        """
        loop = asyncio.get_running_loop()
        woken: asyncio.Queue[Event] = asyncio.Queue()
        store = self.project.store
        seen = self._run_seq
        # the store gives the persisted events in order, without gaps; the bus wakes us for
        # them and brings the ephemeral ones (streamed text)
        with self.subscribe(lambda event: loop.call_soon_threadsafe(woken.put_nowait, event)):
            while True:
                settled = self._settled()  # before the read: then the read has its last event
                for event in store.events_since(seen, 1000):
                    seen = max(seen, event.seq or 0)
                    if event.job_id != self.id:
                        continue
                    yield event
                    if event.type == "job" and not JobState(event.data["state"]).active:
                        return
                if settled:
                    return  # stopped, and its last event could not be recorded
                try:
                    event = await asyncio.wait_for(woken.get(), poll)
                except TimeoutError:
                    continue
                if event.seq is None and event.job_id == self.id:
                    yield event

    def _settled(self) -> bool:
        """Stopped, with the event of the state it stopped in written (or its write failed):
        the state and its event are recorded under ``_cond``."""
        if self.state.active:
            return False
        with self._cond:
            return not self.live.state.active

    def _failed(self) -> JobFailedError:
        error = self.live.error or "the job failed"
        failure = JobFailedError(
            f"job {self.id} failed: {error}; fix the problem, then job.resume()",
            job_id=self.id,
            error=error,
        )
        failure.__cause__ = self._failure
        return failure

    def _run_callbacks(self) -> None:
        with self._cond:
            if self.live.state.active:
                return
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            _call_back(fn, self)

    def _wait(self, timeout: float | None) -> JobState:
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
            if self._unrecorded and not self.live.state.active:  # our final state never landed
                return
            live = self.live
            live.state = JobState(row["state"])
            live.message, live.error = row["message"], row["error"]
            writer = self.project.writer
            if live.state.active and not writer.held:
                with writer.hold_if_free() as free:  # the check and the mark in one hold
                    if free and self.project.mark_interrupted(self.id):
                        live.state = JobState.INTERRUPTED

    # -- control ----------------------------------------------------------------------------

    def pause(self, now: bool = False) -> ControlResult:
        """Stop starting new calls (``now=True``: also abort in-flight ones), then ``paused``."""
        action = "pause_now" if now else "pause"
        with self._cond:
            state = self.state
            target = self._target(state, action, "only a queued or running job pauses")
            if target is None:
                return ControlResult(False, state, f"already {state.value}")
            if state is JobState.PAUSING:  # pause_now while pausing: drop the calls in flight
                if not self._local:
                    self.project.store.request_control(self.id, "pause", True)
                    return ControlResult(True, state, "pause-now requested")
                if self._control.abort:
                    return ControlResult(False, state, "already pausing")
                self._control.abort = True
                self._runner.abort_inflight()
                return ControlResult(True, state, "pausing now: in-flight calls aborted")
            if not self._local:
                self.project.store.request_control(self.id, "pause", now)
                return ControlResult(True, state, "pause requested from another process")
            if target is JobState.PAUSED:  # queued: nothing runs yet
                self._set_state(target, "paused before it started")
                return ControlResult(True, target, "paused")
            self._control.stop, self._control.abort = JobState.PAUSED, now
            self._set_state(
                target,
                "pausing: "
                + ("aborting in-flight calls" if now else "letting in-flight calls finish"),
            )
            if now:
                self._runner.abort_inflight()
            return ControlResult(True, target, "pausing")

    def resume(self) -> ControlResult:
        """Continue a paused, interrupted or failed job; nothing finished is redone."""
        with self._cond:
            state = self.state
            hint = (
                "start() a new job"
                if state in (JobState.SUCCEEDED, JobState.CANCELLED)
                else f"wait until it is {'paused' if state is JobState.PAUSING else 'cancelled'}"
            )
            target = self._target(state, "resume", hint)
            if target is None:
                return ControlResult(False, state, f"already {state.value}")
            claim = self.project.writer.claim(self.id)
            self._run_seq = self.project.store.last_seq()  # events() follows the new run
            self._local = True
            self.launch(claim)
            return ControlResult(True, target, "resumed")

    def cancel(self) -> ControlResult:
        """Abort in-flight calls and stop; finished work stays, and a later start() reuses it."""
        with self._cond:
            state = self.state
            if state in (JobState.SUCCEEDED, JobState.FAILED):
                raise JobStateError(
                    f"cannot cancel a job that has {state.value}", state=state, action="cancel"
                )
            target = self._target(state, "cancel", "")
            if target is None:
                return ControlResult(False, state, f"already {state.value}")
            if not self._local and state.active:
                self.project.store.request_control(self.id, "cancel", True)
                return ControlResult(True, state, "cancel requested from another process")
            if target is JobState.CANCELLED:  # nothing in flight
                self._set_state(target, "cancelled")
                return ControlResult(True, target, "cancelled")
            self._control.stop, self._control.abort = JobState.CANCELLED, True
            self._set_state(target, "cancelling: aborting in-flight calls")
            self._runner.abort_inflight()
            return ControlResult(True, target, "cancelling")

    @staticmethod
    def _target(state: JobState, action: str, hint: str) -> JobState | None:
        """Where ``action`` takes a job in ``state`` (the table ``CONTROL``); None when it is
        already there (a repeat); JobStateError, with ``hint``, when it does not apply."""
        target = CONTROL[action].get(state)
        if target is not None:
            return target
        if state in REPEATS[action]:
            return None
        verb = "pause" if action == "pause_now" else action
        raise JobStateError(
            f"cannot {verb} a job that is {state.value}" + (f"; {hint}" if hint else ""),
            state=state,
            action=verb,
        )

    def _set_state(self, state: JobState, message: str = "", error: str | None = None) -> None:
        try:
            self._record_state(state, message, error)
        finally:  # in memory the job has stopped, even if the store could not be told
            if not state.active:
                self._run_callbacks()

    def _record_state(self, state: JobState, message: str, error: str | None) -> None:
        with self._cond:
            live = self.live
            previous = live.state
            live.state = state
            live.message = message or live.message
            live.error = error
            live.changed()
            try:
                store = self.project.store
                with store.transaction():
                    store.update_job(self.id, state=state.value, message=live.message, error=error)
                    store.append_event(
                        "job",
                        {
                            "state": state.value,
                            "previous": previous.value,
                            "message": live.message,
                            "error": error,
                        },
                        self.id,
                    )
            finally:
                self._cond.notify_all()  # waiters must never hang on a failed write
        # no snapshot once stopped: other processes read a stopped job from the store itself

    # -- the worker -------------------------------------------------------------------------

    def launch(self, claim: int) -> None:
        """Start a run under ``claim`` (from the project's :class:`~novelkit._store.Writer`). An earlier run's thread
        may still be tidying up: it steps aside (its generation is past), nobody waits for it."""
        with self._cond:
            self._here = True  # from now until the run's thread ends, memory is the truth
            self._runs += 1
            try:
                self._control.stop, self._control.abort, self.live.retry = None, False, None
                self._failure = None
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
            self.test_hooks.thread_started(self)
            asyncio.run(self._main(generation))
        finally:
            self.test_hooks.run_ended(self)
            # while memory (the final state) is the truth
            self.project.release_writer(self, claim)
            with self._cond:
                if generation == self._generation:
                    self._runner.detach()
                    self._here = False
                    self._runs += 1

    async def _main(self, generation: int) -> None:
        with self._cond:
            if self._state is not JobState.QUEUED or generation != self._generation:
                return  # paused, cancelled or relaunched before it began
            self.live.started = time.time()
            self.live.finished = None
            self._runner.begin()
            self._set_state(JobState.RUNNING, "running")
        watcher = asyncio.create_task(self._watch())
        final, message, error = JobState.SUCCEEDED, "finished", None
        runner = self._runner
        try:
            await runner.execute()
            if self._control.stop is not None:
                raise _Stop()
        except _Stop:
            final = self._control.stop or JobState.PAUSED
            message = "paused" if final is JobState.PAUSED else "cancelled"
        except BudgetExceededError as exc:
            final, message = JobState.PAUSED, str(exc)
        except NovelkitError as exc:
            final, message, error = JobState.FAILED, "failed", str(exc)
            self._failure = exc
        except Exception as exc:  # unexpected: keep the job resumable and say what happened
            final, message = JobState.FAILED, "failed"
            error = f"{type(exc).__name__}: {exc}"
            self._failure = exc
        finally:
            watcher.cancel()
            self.live.current = None
            try:
                await self.project.backend.aclose()  # connections belong to this run's loop
            except Exception:  # closing must never hide how the run ended
                pass
        try:
            await runner.drain_writes()  # everything the run queued lands before its final state
        except Exception as exc:
            if final is not JobState.FAILED:
                final, message, error = JobState.FAILED, "failed", f"could not save: {exc}"
        with self._cond:  # a cancel() may have come in while the run was winding down
            now: JobState = self.live.state
            if now is JobState.CANCELLING and final is not JobState.FAILED:
                final, message = JobState.CANCELLED, "cancelled"
            if final is JobState.CANCELLED:
                store = self.project.store
                for name in runner.running_stages:
                    with store.transaction():  # its time until the cancel is its elapsed time
                        store.mark_cancelled(name)
                        store.append_event("stage", {"stage": name, "state": "cancelled"}, self.id)
            runner.running_stages.clear()
            self.live.rows = None
            self.live.current_stage = None
            self.live.finished = time.time()
            try:
                self._set_state(final, message, error)
                self.project.store.take_control(self.id)  # nothing left to act on them
            except Exception as exc:  # set in memory; on reopen the store shows interrupted
                if "disk is full" in str(exc):  # one line: the cause is plain, resume works
                    # nor could an interrupted mark be written: memory stays the truth here
                    self._unrecorded = True
                    log.error(
                        "novelkit: could not record that job %s is %s: %s",
                        self.id,
                        final.value,
                        exc,
                    )
                else:
                    log.exception(
                        "novelkit: could not record that job %s is %s", self.id, final.value
                    )

    _unrecorded = False  # this run's final state could not be saved (a full disk)

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
            if self.live.dirty and time.monotonic() - last_snapshot >= SNAPSHOT_EVERY:
                last_snapshot = time.monotonic()
                self.live.dirty = False
                self._runner.later(self._write_snapshot)

    def _write_snapshot(self) -> None:
        try:
            self.project.store.write_snapshot(self.status.to_dict())
        except Exception:  # the snapshot is a convenience for other processes, never fatal
            pass

    def preview(self) -> str:
        return self.live.preview()


def _call_back(fn: Callable[[Job], object], job: Job) -> None:
    try:
        fn(job)
    except Exception:  # a callback must never break the job or the thread that stopped it
        log.exception("novelkit: done callback %r of job %s failed", fn, job.id)
