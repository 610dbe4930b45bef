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
import errno
import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ._artefacts import StagedFile
from ._errors import BudgetExceededError, JobStateError, NovelkitError
from ._events import Event, Subscription
from ._pipeline import Stage, StageState
from ._runner import UnitContext, check_commits, complete
from ._scheduler import GraphRun
from ._status import _RESUMABLE, ControlResult, JobState, JobStatus
from ._store import CallRecord
from .llm.base import Request, Retrying

if TYPE_CHECKING:
    from ._events import Callback
    from ._project import Project

__all__ = ["Job"]

T = TypeVar("T")
log = logging.getLogger("novelkit")

PREVIEW_CHARS = 2000
CONTROL_POLL = 0.05
SNAPSHOT_EVERY = 0.25


class _Stop(Exception):
    """Raised inside a unit at a control checkpoint: pause or cancel was requested."""


def _run_into(result: Future[T], fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> None:
    try:
        result.set_result(fn(*args, **kwargs))
    except BaseException as exc:
        result.set_exception(exc)


@dataclass(frozen=True)
class _Produced:
    """A unit that has run: its fingerprint and its outputs, staged for saving."""

    stage: Stage
    unit: str
    fingerprint: str
    files: list[StagedFile]
    commits: list[Future[None]]  # the writes of its calls, queued before its save


@dataclass
class _Counters:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    by_stage: dict[str, list[float]] = field(default_factory=dict)  # tokens, cost


class Job:
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
                float((row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0)),
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

    # -- writes ---------------------------------------------------------------------------------

    def _write(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        """Queue a store write on the writer thread; writes land in the order they are queued.

        The event loop never waits for an fsync; a failed write fails the run at its end.
        """
        self._later(fn, *args, **kwargs).add_done_callback(self._note_write)

    def _later(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` on the store's writer thread, handed over when the event loop next idles.

        Handing it over at once would wake the writer while the unit that queued it is still on
        its way to its next request, and the two would take turns holding the GIL.
        """
        loop = self._loop
        if loop is None or threading.get_ident() != self._loop_thread:
            return self.project.store.later(fn, *args, **kwargs)  # not from the loop: at once
        result: Future[T] = Future()
        self._outbox.append(functools.partial(_run_into, result, fn, *args, **kwargs))
        if not self._hand_over_due:
            self._hand_over_due = True
            loop.call_soon(self._hand_over)
        return result

    def _hand_over(self) -> None:
        self._hand_over_due = False
        outbox, self._outbox = self._outbox, []
        store = self.project.store
        for write in outbox:
            store.later(write)

    def _note_write(self, future: Future[object]) -> None:
        exc = future.exception()
        if exc is not None and self._write_error is None:
            self._write_error = exc

    async def _drain_writes(self) -> None:
        """Wait for every write queued so far; raise the first that failed."""
        self._hand_over()
        await complete(asyncio.wrap_future(self.project.store.later(lambda: None)))
        if self._write_error is not None:
            error, self._write_error = self._write_error, None
            raise error

    async def _execute(self) -> None:
        project = self.project
        if self.spec["kind"] == "stage":
            stage = project.pipeline.get(self.spec["stage"])
            units = project._select_units(stage, self.spec.get("chapters"))
            if not self.spec.get("force"):
                units = [
                    u for u in units if project._needs_run(stage, u, self._variant, self._params)
                ]
            self._planned = {stage.name: len(units)}
            await self._run_stage(stage, units)
            if units and not self._variant:
                project.store.invalidate(project.pipeline.downstream(stage.name))
            return
        stages = list(project.pipeline)
        self._planned = {s.name: len(project._pending_units(s)) for s in stages}
        await self._run_graph(stages)

    async def _run_graph(self, stages: list[Stage]) -> None:
        """Run every unit as soon as the units it reads are ready, within ``concurrency``."""
        run = GraphRun(_GraphWork(self), stages, self.project.config.concurrency, _Stop)
        outcome = await run.run()
        if self._save_error is not None:  # the cause: units that read its outputs fail after it
            raise self._save_error
        if outcome.failures:
            raise outcome.failures[0]
        if outcome.interrupted or self._stop is not None:
            raise _Stop()
        if outcome.unsaved:  # never report success for work that is not on disk
            unsaved = ", ".join(outcome.unsaved)
            raise NovelkitError(f"units were not saved: {unsaved}; resume to retry")

    def _begin_stage(self, stage: Stage, units: int) -> None:
        self._current_stage = stage.name
        self._running_stages.add(stage.name)
        self._stage_started[stage.name] = time.time()
        self._done.setdefault(stage.name, 0)
        if self._live is not None and stage.name in self._live:
            self._live[stage.name][0] = StageState.RUNNING
        self._write(
            self.project.store.append_event,
            "stage",
            {"stage": stage.name, "state": "running", "units": units},
            self.id,
            durable=False,
        )

    @property
    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.spec.get("params") or {}
        return params

    async def _run_stage(self, stage: Stage, units: list[str]) -> None:
        if not units:
            return
        total = len(self.project.units_of(stage)) if not self._variant else len(units)
        self._set_live(stage.name, StageState.RUNNING, max(0, total - len(units)), total)
        self._done[stage.name] = 0
        self._begin_stage(stage, len(units))
        if stage.parallel:
            limit = asyncio.Semaphore(self.project.config.concurrency)
            failure: list[BaseException] = []

            async def guarded(unit: str) -> None:
                async with limit:
                    if self._stop is not None or failure:
                        raise _Stop()
                    try:
                        await self._run_unit(stage, unit)
                    except (_Stop, asyncio.CancelledError):
                        raise
                    except BaseException as exc:
                        failure.append(exc)
                        raise

            tasks = [self._track(guarded(u)) for u in units]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            real = [e for e in errors if not isinstance(e, _Stop | asyncio.CancelledError)]
            if real:
                self._stage_event(stage, "failed")
                raise real[0]
            if errors:
                raise _Stop()
        else:
            for unit in units:
                try:
                    await self._track(self._run_unit(stage, unit))
                except asyncio.CancelledError:
                    raise _Stop() from None
                except _Stop:
                    raise
                except BaseException:
                    self._stage_event(stage, "failed")
                    raise
        self._stage_event(stage, "succeeded", clear_cancelled=True)
        self._running_stages.discard(stage.name)
        self._current_stage = None
        self._snapshot_dirty = True

    def _stage_event(self, stage: Stage, state: str, *, clear_cancelled: bool = False) -> None:
        if self._live is not None and stage.name in self._live:
            self._live[stage.name][0] = StageState(state)
            if state == "succeeded":
                self._live[stage.name][1] = self._live[stage.name][2]
        self._write(self._record_stage, stage.name, state, clear_cancelled)

    def _record_stage(self, name: str, state: str, clear_cancelled: bool) -> None:
        project = self.project
        with project.store.transaction():  # one commit for the event and the cleared mark
            project.store.append_event("stage", {"stage": name, "state": state}, self.id)
            if clear_cancelled:
                project._clear_cancelled(name)

    def _set_live(self, name: str, state: StageState, done: int, total: int) -> None:
        if self._live is not None:
            self._live[name] = [state, done, total]

    def _track(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._abort:
            task.cancel()
        return task

    async def _run_unit(self, stage: Stage, unit: str) -> None:
        await self._save(await self._produce(stage, unit))

    async def _produce(self, stage: Stage, unit: str) -> _Produced:
        """Run the unit: its calls are saved and its outputs readable, but not yet on disk."""
        project = self.project
        store = project.store
        if self._stop is not None:
            raise _Stop()
        fingerprint = project.fingerprint(stage, unit, self._variant, self._params)
        self._current = (stage.name, unit)
        self._write(self._mark_running, stage, unit)
        ctx = UnitContext(
            stage=stage,
            unit=unit,
            root=project.root,
            config=project.config,
            pipeline=project.pipeline,
            store=store,
            backend=project.backend,
            hooks=_Hooks(self),
            variant=self._variant,
            params=self._params,
            unsaved=project.unsaved,
            later=self._later,
            parsed=project._parsed,
            paths=project.paths,
        )
        try:
            try:
                outputs = await stage.run(ctx, unit)
            except BaseException:
                await ctx.settle()  # the calls it finished are saved before it is given up
                raise
        except (_Stop, asyncio.CancelledError, BudgetExceededError):
            self._write(
                store.set_unit, stage.name, unit, "pending", variant=self._variant, job_id=self.id
            )
            raise
        except NovelkitError as exc:
            self._unit_failed(stage, unit, str(exc))
            raise
        except Exception as exc:
            self._unit_failed(stage, unit, f"{type(exc).__name__}: {exc}")
            raise NovelkitError(
                f"stage {stage.name!r} unit {unit} failed: {type(exc).__name__}: {exc}"
            ) from exc
        files = project._stage_outputs(outputs, self._variant)
        return _Produced(stage, unit, fingerprint, files, ctx.take_commits())

    async def _save(self, produced: _Produced) -> None:
        """Write the unit's artefacts and mark it done; always completes once started."""
        if not await complete(asyncio.wrap_future(self._queue_save(produced, []))):
            raise NovelkitError(f"stage {produced.stage.name!r} unit {produced.unit} was not saved")

    def _queue_save(self, produced: _Produced, after: list[Future[bool]]) -> Future[bool]:
        """Queue the unit's save on the writer, which runs it after ``after`` and its calls.

        The future says whether it was saved: not when a save it comes after did not succeed
        (a crash must never leave a unit done on top of inputs that are not).
        """
        return self._later(self._save_after, produced, after)

    def _save_after(self, produced: _Produced, after: list[Future[bool]]) -> bool:
        # on the writer thread: everything queued before this has run, so these are done
        try:
            check_commits(produced.commits, produced.stage.name, produced.unit)
            if not all(f.exception() is None and f.result() for f in after):
                self.project._discard_staged(produced.files)
                return False
            self._save_unit(produced)
        except BaseException as exc:
            self.project._discard_staged(produced.files)
            if self._save_error is None:
                self._save_error = exc
            raise
        self._snapshot_dirty = True
        return True

    def _mark_running(self, stage: Stage, unit: str) -> None:
        store = self.project.store
        with store.transaction(durable=False):  # only views need to know a unit started
            store.set_unit(stage.name, unit, "running", variant=self._variant, job_id=self.id)
            store.append_event(
                "unit", {"stage": stage.name, "unit": unit, "state": "running"}, self.id
            )

    def _save_unit(self, produced: _Produced) -> None:
        project = self.project
        store = project.store
        stage, unit = produced.stage, produced.unit
        try:
            hashes = project._flush_outputs(produced.files)
        except OSError as exc:
            reason = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
            message = (
                f"could not save the output of stage {stage.name!r} unit {unit}: {reason}. "
                "Earlier artefacts are intact; free space or fix permissions, then resume."
            )
            self._unit_failed(stage, unit, message)
            raise NovelkitError(message) from None
        with store.transaction():
            store.set_unit(
                stage.name,
                unit,
                "done",
                variant=self._variant,
                fingerprint=produced.fingerprint,
                outputs=hashes,
                job_id=self.id,
            )
            self._done[stage.name] = self._done.get(stage.name, 0) + 1
            self._planned[stage.name] = max(
                self._planned.get(stage.name, 0), self._done[stage.name]
            )
            self.version += 1
            if self._live is not None and stage.name in self._live:
                self._live[stage.name][1] = min(
                    self._live[stage.name][1] + 1, self._live[stage.name][2]
                )
            store.append_event(
                "unit",
                {"stage": stage.name, "unit": unit, "state": "done", "outputs": sorted(hashes)},
                self.id,
            )
            store.append_event(
                "progress",
                {
                    "stage": stage.name,
                    "done": self._done[stage.name],
                    "total": self._planned.get(stage.name, 0),
                    "overall": self._overall(),
                },
                self.id,
            )

    def _unit_failed(self, stage: Stage, unit: str, message: str) -> None:
        self._write(self._record_failure, stage, unit, message)

    def _record_failure(self, stage: Stage, unit: str, message: str) -> None:
        store = self.project.store
        with store.transaction():
            store.set_unit(
                stage.name, unit, "failed", variant=self._variant, error=message, job_id=self.id
            )
            store.append_event(
                "unit",
                {"stage": stage.name, "unit": unit, "state": "failed", "error": message},
                self.id,
            )

    def _overall(self) -> float:
        total = sum(self._planned.values())
        return sum(self._done.values()) / total if total else 1.0

    # -- what the hooks feed ------------------------------------------------------------------

    def _on_delta(self, stage: str, unit: str, text: str) -> None:
        self._preview.append(text)
        self._preview_len += len(text)
        self.streamed_chars += len(text)
        while self._preview_len - len(self._preview[0]) > PREVIEW_CHARS and len(self._preview) > 1:
            self._preview_len -= len(self._preview.popleft())
        self._retry = None
        self._snapshot_dirty = True
        self.version += 1
        self.project.store.publish_ephemeral(
            Event("delta", {"stage": stage, "unit": unit, "text": text}, job_id=self.id)
        )

    def preview(self) -> str:
        return "".join(self._preview)[-PREVIEW_CHARS:]


class _GraphWork:
    """The job's side of a :class:`~novelkit._scheduler.GraphRun`."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def plan(self, stage: Stage, units: list[str]) -> list[str]:
        job = self.job
        todo = job.project._pending_units(stage)
        job._planned[stage.name] = len(todo)
        if job._live is not None:
            total = len(units)
            state = job._live.get(stage.name, [StageState.PENDING])[0] if todo else None
            job._set_live(stage.name, state or StageState.SUCCEEDED, total - len(todo), total)
        return todo

    def units_of(self, stage: Stage) -> list[str]:
        return self.job.project.units_of(stage)

    def stop_requested(self) -> bool:
        return self.job._stop is not None

    def save_failed(self) -> bool:
        return self.job._save_error is not None

    def needs_run(self, stage: Stage, unit: str) -> bool:
        return self.job.project._needs_run(stage, unit)

    def begin_stage(self, stage: Stage, units: int) -> None:
        self.job._begin_stage(stage, units)

    def end_stage(self, stage: Stage, ok: bool) -> None:
        job = self.job
        if not ok:
            job._stage_event(stage, "failed")
            return
        job._stage_event(stage, "succeeded", clear_cancelled=True)
        job._running_stages.discard(stage.name)

    async def produce(self, stage: Stage, unit: str) -> _Produced:
        return await self.job._produce(stage, unit)

    def save(self, produced: _Produced, after: list[Future[bool]]) -> Future[bool]:
        return self.job._queue_save(produced, after)

    def track(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        return self.job._track(coro)


class _Hooks:
    """The job's side of :class:`~novelkit._runner.RunHooks`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.job_id: str | None = job.id

    def checkpoint(self) -> None:
        if self.job._stop is not None:
            raise _Stop()

    def chunk_checkpoint(self) -> None:
        if self.job._abort:
            raise _Stop()

    def on_delta(self, stage: str, unit: str, text: str) -> None:
        self.job._on_delta(stage, unit, text)

    def on_retry(self, stage: str, unit: str, chunk: Retrying) -> None:
        job = self.job
        job._retry = (
            f"retrying in {chunk.delay:.0f} s (attempt {chunk.attempt}/{chunk.max_attempts}): "
            f"{chunk.reason}"
        )
        job._snapshot_dirty = True
        job._write(
            job.project.store.append_event,
            "retry",
            {
                "stage": stage,
                "unit": unit,
                "attempt": chunk.attempt,
                "max_attempts": chunk.max_attempts,
                "delay": chunk.delay,
                "reason": chunk.reason,
                "message": job._retry,
            },
            job.id,
            durable=False,
        )

    def on_usage(self, record: CallRecord) -> None:
        c = self.job._counters
        c.prompt_tokens += record.prompt_tokens
        c.completion_tokens += record.completion_tokens
        c.cost += record.cost
        row = c.by_stage.setdefault(record.stage, [0.0, 0.0])
        row[0] += record.prompt_tokens + record.completion_tokens
        row[1] += record.cost

    def on_call(self, record: CallRecord, cached: bool) -> None:
        job = self.job
        job.project.store.append_event(
            "call",
            {
                "stage": record.stage,
                "unit": record.unit,
                "task": record.task,
                "cached": cached,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "cost": record.cost,
                "model": record.model,
                "latency": round(record.latency, 4),
            },
            job.id,
        )

    def check_budget(self, request: Request, expected_tokens: int) -> None:
        config = self.job.project.config
        c = self.job._counters
        if config.max_tokens is not None:
            projected = (
                c.prompt_tokens + c.completion_tokens + request.prompt_tokens + expected_tokens
            )
            if projected > config.max_tokens:
                raise BudgetExceededError(
                    f"paused before stage {request.stage!r} unit {request.unit}: the next call would "
                    f"pass max_tokens ({c.prompt_tokens + c.completion_tokens:,} used of "
                    f"{config.max_tokens:,}); raise max_tokens in novel.toml and resume"
                )
        if config.max_cost is not None:
            price = config.prices.get(request.model or self.job.project.backend.name)
            if price is not None:
                estimate = (
                    request.prompt_tokens * price.prompt + expected_tokens * price.completion
                ) / 1e6
                if c.cost + estimate > config.max_cost:
                    raise BudgetExceededError(
                        f"paused before stage {request.stage!r} unit {request.unit}: the next call "
                        f"(~{estimate:.4f}) would pass max_cost ({c.cost:.4f} spent of "
                        f"{config.max_cost:.4f}); raise max_cost in novel.toml and resume"
                    )
