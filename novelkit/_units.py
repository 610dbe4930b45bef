"""Running a job's units: producing each one, saving it on the store's writer thread, and
the hooks its calls report through. A :class:`~novelkit._job.Job` (the state machine and its
thread) holds one :class:`UnitRunner`, and hands it the :class:`Control` flags that pause and
cancel set and the :class:`~novelkit._status.LiveStatus` the run keeps up to date.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._artefacts import StagedFile
from ._config import _toml_key
from ._errors import BudgetExceededError, NovelkitError
from ._events import Event
from ._pipeline import Stage, StageState
from ._prices import FREE_BACKENDS, format_cost, price_for
from ._runner import UnitContext, check_commits, complete
from ._scheduler import GraphRun
from ._status import Counters, JobState, LiveStatus
from ._store import CallRecord
from .llm.base import Request, Retrying

if TYPE_CHECKING:
    from ._project import Project

__all__ = ["Control", "UnitRunner"]

T = TypeVar("T")


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
class Control:
    """What the job asks of its run: ``stop`` (PAUSED or CANCELLED) once a pause or a cancel
    is requested, ``abort`` when in-flight calls are to be dropped too."""

    stop: JobState | None = None
    abort: bool = False


class UnitRunner:
    """A job's run of its units: what to run, producing and saving each unit, and the writes
    it hands to the writer thread. It reads ``control`` at every checkpoint and keeps
    ``live`` (what the job's status shows) up to date."""

    def __init__(
        self,
        project: Project,
        job_id: str,
        spec: dict[str, Any],
        live: LiveStatus,
        control: Control,
    ) -> None:
        self.project = project
        self.store = project.store
        self.job_id = job_id
        self.spec = spec
        self.live = live
        self.control = control
        self.variant: str = spec.get("variant") or ""
        self.params: dict[str, Any] = spec.get("params") or {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: list[Callable[[], None]] = []  # writes waiting for the loop to idle
        self._hand_over_due = False
        self._write_error: BaseException | None = None
        self.save_error: BaseException | None = None  # the first unit save that failed
        self.planned: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.running_stages: set[str] = set()

    # -- the run's loop -------------------------------------------------------------------------

    def begin(self) -> None:
        """On the run's loop, as it starts: its writes go through this loop from now on."""
        self.hand_over()  # anything an earlier run queued after its last drain
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.save_error = None
        self._load_counters()
        self.live.rows = {name: list(row) for name, row in self.project.stage_states().items()}

    def detach(self) -> None:
        """The run's loop has closed."""
        self.loop = None

    def abort_inflight(self) -> None:
        """From any thread: cancel the calls in flight (their partial text is dropped)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_tasks)
            except RuntimeError:
                pass  # the loop closed between the check and the call: nothing in flight

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _load_counters(self) -> None:
        counters = Counters()
        for stage, row in self.store.ledger().items():
            counters.add(
                stage,
                int(row["prompt_tokens"] or 0),
                int(row["completion_tokens"] or 0),
                float(row["cost"] or 0.0),
            )
        self.live.counters = counters

    # -- writes ---------------------------------------------------------------------------------

    def write(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        """Queue a store write on the writer thread; writes land in the order they are queued.

        The event loop never waits for an fsync; a failed write fails the run at its end.
        """
        self.later(fn, *args, **kwargs).add_done_callback(self._note_write)

    def later(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` on the store's writer thread, handed over when the event loop next idles.

        Handing it over at once would wake the writer while the unit that queued it is still on
        its way to its next request, and the two would take turns holding the GIL.
        """
        loop = self.loop
        if loop is None or threading.get_ident() != self._loop_thread:
            return self.store.later(fn, *args, **kwargs)  # not from the loop: at once
        result: Future[T] = Future()
        self._outbox.append(functools.partial(_run_into, result, fn, *args, **kwargs))
        if not self._hand_over_due:
            self._hand_over_due = True
            loop.call_soon(self.hand_over)
        return result

    def hand_over(self) -> None:
        self._hand_over_due = False
        outbox, self._outbox = self._outbox, []
        store = self.store
        for write in outbox:
            store.later(write)

    def _note_write(self, future: Future[object]) -> None:
        exc = future.exception()
        if exc is not None and self._write_error is None:
            self._write_error = exc

    async def drain_writes(self) -> None:
        """Wait for every write queued so far; raise the first that failed."""
        self.hand_over()
        await complete(asyncio.wrap_future(self.store.later(lambda: None)))
        if self._write_error is not None:
            error, self._write_error = self._write_error, None
            raise error

    # -- running --------------------------------------------------------------------------------

    async def execute(self) -> None:
        project = self.project
        freshness = project.freshness
        if self.spec["kind"] == "stage":
            stage = project.pipeline.get(self.spec["stage"])
            units = freshness.select_units(stage, self.spec.get("chapters"))
            if not self.spec.get("force"):
                units = [
                    u for u in units if freshness.needs_run(stage, u, self.variant, self.params)
                ]
            self.planned = {stage.name: len(units)}
            await self._run_stage(stage, units)
            if units and not self.variant:
                self.store.invalidate(project.pipeline.downstream(stage.name))
            return
        stages = list(project.pipeline)
        self.planned = {s.name: len(freshness.pending_units(s)) for s in stages}
        await self._run_graph(stages)

    async def _run_graph(self, stages: list[Stage]) -> None:
        """Run every unit as soon as the units it reads are ready, within ``concurrency``."""
        run = GraphRun(_GraphWork(self), stages, self.project.config.concurrency, _Stop)
        outcome = await run.run()
        if self.save_error is not None:  # the cause: units that read its outputs fail after it
            raise self.save_error
        if outcome.failures:
            raise outcome.failures[0]
        if outcome.interrupted or self.control.stop is not None:
            raise _Stop()
        if outcome.unsaved:  # never report success for work that is not on disk
            unsaved = ", ".join(outcome.unsaved)
            raise NovelkitError(f"units were not saved: {unsaved}; resume to retry")

    def begin_stage(self, stage: Stage, units: int) -> None:
        live = self.live
        live.current_stage = stage.name
        self.running_stages.add(stage.name)
        live.stage_started[stage.name] = time.time()
        self.done.setdefault(stage.name, 0)
        if live.rows is not None and stage.name in live.rows:
            live.rows[stage.name][0] = StageState.RUNNING
        self.write(
            self.store.append_event,
            "stage",
            {"stage": stage.name, "state": "running", "units": units},
            self.job_id,
            durable=False,
        )

    async def _run_stage(self, stage: Stage, units: list[str]) -> None:
        if not units:
            return
        total = len(self.project.units_of(stage)) if not self.variant else len(units)
        self.done[stage.name] = 0
        self.begin_stage(stage, len(units))  # its start time first: the row shows it running
        self.live.set_row(stage.name, StageState.RUNNING, max(0, total - len(units)), total)
        if stage.parallel:
            limit = asyncio.Semaphore(self.project.config.concurrency)
            failure: list[BaseException] = []

            async def guarded(unit: str) -> None:
                async with limit:
                    if self.control.stop is not None or failure:
                        raise _Stop()
                    try:
                        await self._run_unit(stage, unit)
                    except (_Stop, asyncio.CancelledError):
                        raise
                    except BaseException as exc:
                        failure.append(exc)
                        raise

            tasks = [self.track(guarded(u)) for u in units]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            real = [e for e in errors if not isinstance(e, _Stop | asyncio.CancelledError)]
            if real:
                self.stage_event(stage, "failed")
                raise real[0]
            if errors:
                raise _Stop()
        else:
            for unit in units:
                try:
                    await self.track(self._run_unit(stage, unit))
                except asyncio.CancelledError:
                    raise _Stop() from None
                except _Stop:
                    raise
                except BaseException:
                    self.stage_event(stage, "failed")
                    raise
        self.stage_event(stage, "succeeded", clear_cancelled=True)
        self.running_stages.discard(stage.name)
        self.live.current_stage = None
        self.live.dirty = True

    def stage_event(self, stage: Stage, state: str, *, clear_cancelled: bool = False) -> None:
        rows = self.live.rows
        if rows is not None and stage.name in rows:
            rows[stage.name][0] = StageState(state)
            if state == "succeeded":
                rows[stage.name][1] = rows[stage.name][2]
        self.write(self._record_stage, stage.name, state, clear_cancelled)

    def _record_stage(self, name: str, state: str, clear_cancelled: bool) -> None:
        store = self.store
        with store.transaction():  # one commit for the event and the cleared mark
            store.append_event("stage", {"stage": name, "state": state}, self.job_id)
            if clear_cancelled:
                store.clear_cancelled(name)

    def track(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.control.abort:
            task.cancel()
        return task

    async def _run_unit(self, stage: Stage, unit: str) -> None:
        await self._save(await self.produce(stage, unit))

    async def produce(self, stage: Stage, unit: str) -> _Produced:
        """Run the unit: its calls are saved and its outputs readable, but not yet on disk."""
        project = self.project
        store = self.store
        files = project.files
        if self.control.stop is not None:
            raise _Stop()
        fingerprint = project.freshness.fingerprint(stage, unit, self.variant, self.params)
        self.live.current = (stage.name, unit)
        self.write(self._mark_running, stage, unit)
        ctx = UnitContext(
            stage=stage,
            unit=unit,
            root=project.root,
            config=project.config,
            pipeline=project.pipeline,
            store=store,
            backend=project.backend,
            hooks=_Hooks(self),
            variant=self.variant,
            params=self.params,
            unsaved=files.unsaved,
            later=self.later,
            parsed=files.parsed,
            paths=files.paths,
        )
        try:
            try:
                outputs = await stage.run(ctx, unit)
            except BaseException:
                await ctx.settle()  # the calls it finished are saved before it is given up
                raise
            finally:
                self.live.end_text(stage.name, unit)
        except (_Stop, asyncio.CancelledError, BudgetExceededError):
            self.write(
                store.set_unit,
                stage.name,
                unit,
                "pending",
                variant=self.variant,
                job_id=self.job_id,
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
        staged = files.stage(outputs, self.variant)
        return _Produced(stage, unit, fingerprint, staged, ctx.take_commits())

    async def _save(self, produced: _Produced) -> None:
        """Write the unit's artefacts and mark it done; always completes once started."""
        if not await complete(asyncio.wrap_future(self.queue_save(produced, []))):
            raise NovelkitError(f"stage {produced.stage.name!r} unit {produced.unit} was not saved")

    def queue_save(self, produced: _Produced, after: list[Future[bool]]) -> Future[bool]:
        """Queue the unit's save on the writer, which runs it after ``after`` and its calls.

        The future says whether it was saved: not when a save it comes after did not succeed
        (a crash must never leave a unit done on top of inputs that are not).
        """
        return self.later(self._save_after, produced, after)

    def _save_after(self, produced: _Produced, after: list[Future[bool]]) -> bool:
        # on the writer thread: everything queued before this has run, so these are done
        files = self.project.files
        try:
            check_commits(produced.commits, produced.stage.name, produced.unit)
            if not all(f.exception() is None and f.result() for f in after):
                files.discard(produced.files)
                return False
            self._save_unit(produced)
        except BaseException as exc:
            files.discard(produced.files)
            if self.save_error is None:
                self.save_error = exc
            raise
        self.live.dirty = True
        return True

    def _mark_running(self, stage: Stage, unit: str) -> None:
        store = self.store
        with store.transaction(durable=False):  # only views need to know a unit started
            store.set_unit(stage.name, unit, "running", variant=self.variant, job_id=self.job_id)
            store.append_event(
                "unit", {"stage": stage.name, "unit": unit, "state": "running"}, self.job_id
            )

    def _save_unit(self, produced: _Produced) -> None:
        store = self.store
        live = self.live
        stage, unit = produced.stage, produced.unit
        try:
            hashes = self.project.files.flush(produced.files)
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
                variant=self.variant,
                fingerprint=produced.fingerprint,
                outputs=hashes,
                job_id=self.job_id,
            )
            self.done[stage.name] = self.done.get(stage.name, 0) + 1
            self.planned[stage.name] = max(self.planned.get(stage.name, 0), self.done[stage.name])
            live.version += 1
            rows = live.rows
            if rows is not None and stage.name in rows:
                rows[stage.name][1] = min(rows[stage.name][1] + 1, rows[stage.name][2])
            store.append_event(
                "unit",
                {"stage": stage.name, "unit": unit, "state": "done", "outputs": sorted(hashes)},
                self.job_id,
            )
            store.append_event(
                "progress",
                {
                    "stage": stage.name,
                    "done": self.done[stage.name],
                    "total": self.planned.get(stage.name, 0),
                    "overall": self._overall(),
                },
                self.job_id,
            )

    def _unit_failed(self, stage: Stage, unit: str, message: str) -> None:
        self.write(self._record_failure, stage, unit, message)

    def _record_failure(self, stage: Stage, unit: str, message: str) -> None:
        store = self.store
        with store.transaction():
            store.set_unit(
                stage.name, unit, "failed", variant=self.variant, error=message, job_id=self.job_id
            )
            store.append_event(
                "unit",
                {"stage": stage.name, "unit": unit, "state": "failed", "error": message},
                self.job_id,
            )

    def _overall(self) -> float:
        total = sum(self.planned.values())
        return sum(self.done.values()) / total if total else 1.0

    # -- what the hooks feed ------------------------------------------------------------------

    def on_delta(self, stage: str, unit: str, text: str) -> None:
        self.live.add_text(stage, unit, text)
        self.store.publish_ephemeral(
            Event("delta", {"stage": stage, "unit": unit, "text": text}, job_id=self.job_id)
        )


class _GraphWork:
    """The job's side of a :class:`~novelkit._scheduler.GraphRun`."""

    def __init__(self, runner: UnitRunner) -> None:
        self.runner = runner

    def plan(self, stage: Stage, units: list[str]) -> list[str]:
        runner = self.runner
        todo = runner.project.freshness.pending_units(stage)
        runner.planned[stage.name] = len(todo)
        rows = runner.live.rows
        if rows is not None:
            total = len(units)
            state = rows.get(stage.name, [StageState.PENDING])[0] if todo else None
            runner.live.set_row(stage.name, state or StageState.SUCCEEDED, total - len(todo), total)
        return todo

    def units_of(self, stage: Stage) -> list[str]:
        return self.runner.project.units_of(stage)

    def stop_requested(self) -> bool:
        return self.runner.control.stop is not None

    def save_failed(self) -> bool:
        return self.runner.save_error is not None

    def needs_run(self, stage: Stage, unit: str) -> bool:
        return self.runner.project.freshness.needs_run(stage, unit)

    def begin_stage(self, stage: Stage, units: int) -> None:
        self.runner.begin_stage(stage, units)

    def end_stage(self, stage: Stage, ok: bool) -> None:
        runner = self.runner
        if not ok:
            runner.stage_event(stage, "failed")
            return
        runner.stage_event(stage, "succeeded", clear_cancelled=True)
        runner.running_stages.discard(stage.name)

    async def produce(self, stage: Stage, unit: str) -> _Produced:
        return await self.runner.produce(stage, unit)

    def save(self, produced: _Produced, after: list[Future[bool]]) -> Future[bool]:
        return self.runner.queue_save(produced, after)

    def track(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        return self.runner.track(coro)


class _Hooks:
    """The run's side of :class:`~novelkit._runner.RunHooks`."""

    def __init__(self, runner: UnitRunner) -> None:
        self.runner = runner
        self.job_id: str | None = runner.job_id

    def checkpoint(self) -> None:
        if self.runner.control.stop is not None:
            raise _Stop()

    def chunk_checkpoint(self) -> None:
        if self.runner.control.abort:
            raise _Stop()

    def on_delta(self, stage: str, unit: str, text: str) -> None:
        self.runner.on_delta(stage, unit, text)

    def on_retry(self, stage: str, unit: str, chunk: Retrying) -> None:
        runner = self.runner
        live = runner.live
        live.retry = (
            f"retrying in {chunk.delay:.0f} s (attempt {chunk.attempt}/{chunk.max_attempts}): "
            f"{chunk.reason}"
        )
        live.restart_text(stage, unit)
        live.dirty = True
        runner.write(
            runner.store.append_event,
            "retry",
            {
                "stage": stage,
                "unit": unit,
                "attempt": chunk.attempt,
                "max_attempts": chunk.max_attempts,
                "delay": chunk.delay,
                "reason": chunk.reason,
                "message": live.retry,
            },
            runner.job_id,
            durable=False,
        )

    def on_notice(self, stage: str, unit: str, message: str) -> None:
        runner = self.runner
        runner.write(
            runner.store.append_event,
            "log",
            {"stage": stage, "unit": unit, "level": "warning", "message": message},
            runner.job_id,
        )

    def on_usage(self, record: CallRecord) -> None:
        self.runner.live.counters.add(
            record.stage, record.prompt_tokens, record.completion_tokens, record.cost
        )

    def on_call(self, record: CallRecord, cached: bool) -> None:
        runner = self.runner
        runner.store.append_event(
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
            runner.job_id,
        )

    def check_budget(self, request: Request, expected_tokens: int) -> None:
        config = self.runner.project.config
        c = self.runner.live.counters
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
            backend = self.runner.project.backend
            model = request.model or getattr(backend, "model", None) or backend.name
            price = price_for(config, model)
            if price is None:
                if backend.name in FREE_BACKENDS:
                    return
                # start() refuses this; reached when the config changed under a paused job
                raise BudgetExceededError(
                    f"paused before stage {request.stage!r} unit {request.unit}: max_cost is set "
                    f"but model {model!r} has no price, so the budget cannot be kept; add "
                    f"[prices.{_toml_key(model)}] with prompt and completion per million tokens "
                    "to novel.toml (or remove max_cost) and resume"
                )
            estimate = (
                request.prompt_tokens * price.prompt + expected_tokens * price.completion
            ) / 1e6
            if c.cost + estimate > config.max_cost:
                currency = config.currency
                raise BudgetExceededError(
                    f"paused before stage {request.stage!r} unit {request.unit}: the next call "
                    f"(~{format_cost(estimate, currency)}) would pass max_cost "
                    f"({format_cost(c.cost, currency)} spent of "
                    f"{format_cost(config.max_cost, currency)}); raise max_cost in novel.toml "
                    "and resume"
                )
