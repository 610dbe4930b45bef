"""Running a job's units: producing each one, saving it on the store's writer thread, and
the hooks its calls report through. :class:`~novelkit._job.Job` (the state machine and its
thread) is built on :class:`UnitRunner`.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ._artefacts import StagedFile
from ._errors import BudgetExceededError, NovelkitError
from ._events import Event
from ._pipeline import Stage, StageState
from ._runner import UnitContext, check_commits, complete
from ._scheduler import GraphRun
from ._status import JobState
from ._store import CallRecord
from .llm.base import Request, Retrying

if TYPE_CHECKING:
    from ._project import Project

__all__ = ["UnitRunner"]

T = TypeVar("T")

PREVIEW_CHARS = 2000


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
    by_stage: dict[str, list[float]] = field(default_factory=dict)  # prompt, completion, cost


class UnitRunner:
    """A job's run of its units: what to run, producing and saving each unit, and the writes
    it hands to the writer thread. The state it works on is the job's (see ``Job.__init__``)."""

    project: Project
    id: str
    spec: dict[str, Any]
    version: int
    streamed_chars: int
    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: int | None
    _tasks: set[asyncio.Task[Any]]
    _stop: JobState | None
    _abort: bool
    _current: tuple[str, str] | None
    _current_stage: str | None
    _preview: deque[str]
    _preview_len: int
    _retry: str | None
    _counters: _Counters
    _planned: dict[str, int]
    _done: dict[str, int]
    _snapshot_dirty: bool
    _variant: str
    _live: dict[str, list[Any]] | None
    _stage_started: dict[str, float]
    _running_stages: set[str]
    _write_error: BaseException | None
    _save_error: BaseException | None
    _outbox: list[Callable[[], None]]
    _hand_over_due: bool

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
        self._done[stage.name] = 0
        self._begin_stage(stage, len(units))  # its start time first: the row shows it running
        self._set_live(stage.name, StageState.RUNNING, max(0, total - len(units)), total)
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


class _GraphWork:
    """The job's side of a :class:`~novelkit._scheduler.GraphRun`."""

    def __init__(self, job: UnitRunner) -> None:
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

    def __init__(self, job: UnitRunner) -> None:
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

    def on_notice(self, stage: str, unit: str, message: str) -> None:
        job = self.job
        job._write(
            job.project.store.append_event,
            "log",
            {"stage": stage, "unit": unit, "level": "warning", "message": message},
            job.id,
        )

    def on_usage(self, record: CallRecord) -> None:
        c = self.job._counters
        c.prompt_tokens += record.prompt_tokens
        c.completion_tokens += record.completion_tokens
        c.cost += record.cost
        row = c.by_stage.setdefault(record.stage, [0, 0, 0.0])
        row[0] += record.prompt_tokens
        row[1] += record.completion_tokens
        row[2] += record.cost

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
