"""What a stage sees while one of its units runs: material, and the durable LLM call path.

Every call goes through :meth:`UnitContext.complete`: the control checkpoint, the memo (a
finished call is never paid twice), the budget cap, streaming with control checks at every
chunk, the ledger commit, and continuation of responses cut at the token limit.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from ._answers import Invalid, Shape, answer_schema, clean_prose, output_budget, read_answer
from ._artefacts import Paths, SharedReads, StagedFile, file_version, parse
from ._errors import ArtefactError, BackendError
from ._pipeline import SINGLE, Stage, chapter_of, unit_name
from ._prices import cost_of
from ._store import CallRecord, Store
from .llm import render_material
from .llm.base import Backend, Delta, Done, Message, Request, Retrying

if TYPE_CHECKING:
    from ._config import NovelConfig
    from ._pipeline import Pipeline

__all__ = ["RunHooks", "UnitContext", "check_commits", "complete"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

SYSTEM = (
    "You are a novelist's collaborator working through a structured pipeline. Follow the task, "
    "use only the names, places and facts in the material unless asked to invent them, and "
    "answer with the requested output only."
)
MAX_CONTINUATIONS = 4
MAX_REASKS = 2  # a structured answer is asked for at most three times
SHARED_READS = 1024  # parsed artefacts kept for read(..., shared=True); then it starts afresh


class Later(Protocol):
    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]: ...


class RunHooks(Protocol):
    """How a running unit talks to its job (control, live text, retries, budget)."""

    job_id: str | None

    def checkpoint(self) -> None: ...
    def chunk_checkpoint(self) -> None: ...
    def on_delta(self, stage: str, unit: str, text: str) -> None: ...
    def on_retry(self, stage: str, unit: str, chunk: Retrying) -> None: ...
    def on_notice(self, stage: str, unit: str, message: str) -> None: ...
    def on_usage(self, record: CallRecord) -> None: ...
    def on_call(self, record: CallRecord, cached: bool) -> None: ...
    def check_budget(self, request: Request, expected_tokens: int) -> None: ...


class UnitContext:
    def __init__(
        self,
        *,
        stage: Stage,
        unit: str,
        root: Path,
        config: NovelConfig,
        pipeline: Pipeline,
        store: Store,
        backend: Backend,
        hooks: RunHooks,
        variant: str = "",
        params: dict[str, Any] | None = None,
        unsaved: Mapping[Path, StagedFile] | None = None,
        later: Later | None = None,
        parsed: SharedReads | None = None,
        paths: Paths | None = None,
    ) -> None:
        self.stage = stage
        self.unit = unit
        self.root = root
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.backend = backend
        self.hooks = hooks
        self.variant = variant
        self.params = params or {}
        # outputs of units that finished but are still being saved (see Project._stage_outputs)
        self.unsaved: Mapping[Path, StagedFile] = unsaved if unsaved is not None else {}
        self.later: Later = later or store.later  # how writes reach the store's writer thread
        # what read(..., shared=True) parsed, by path: (the file's version, the object)
        self.parsed: SharedReads = parsed if parsed is not None else {}
        self.paths = paths if paths is not None else Paths(root / "artefacts")
        self._commits: list[Future[None]] = []  # the writer's futures: no loop wake-up each

    @property
    def chapter(self) -> int:
        chapter = chapter_of(self.unit)
        if chapter is None:
            raise ValueError(f"unit {self.unit!r} is not a chapter")
        return chapter

    # -- reading material -------------------------------------------------------------------

    def read(
        self,
        stage: str,
        chapter: int | None = None,
        index: int = 0,
        *,
        shared: bool = False,
        model: type[BaseModel] | None = None,
    ) -> Any:
        """The typed artefact of ``stage`` (for a per-chapter stage, of ``chapter``).

        Each call parses the file into a new object, which the caller may change. With
        ``shared=True`` every unit gets the same object while the file is unchanged, parsed
        once: the cast or the outline that each chapter reads. Never modify a shared object.
        ``index`` picks one of the stage's other outputs, read as text unless ``model`` says
        what it holds (a draft's summary: ``index=1, model=ChapterSummary``).
        """
        source, relative, path = self._locate(stage, chapter, index)
        staged = self.unsaved.get(path)
        if model is None and index == 0:
            model = source.model
        version: tuple[type[BaseModel], object] | None = None
        try:
            if shared and model is not None:
                # the model too: pipeline.replace() may read the same file as another model
                version = (model, staged.digest if staged is not None else file_version(path))
                hit = self.parsed.get(path)
                if hit is not None and hit[0] == version:
                    return hit[1]
            data = staged.data if staged is not None else path.read_bytes()
        except FileNotFoundError:
            raise ArtefactError(
                f"{relative} is missing; run stage {source.name!r} first"
                + (f" for chapter {chapter}" if chapter else "")
            ) from None
        if model is None:
            return data.decode("utf-8")
        value = parse(model, path, data, chapter)
        if version is not None:
            if len(self.parsed) >= SHARED_READS:
                self.parsed.clear()
            self.parsed[path] = (version, value)
        return value

    def warm(self, fn: Callable[..., object], /, *args: Any) -> None:
        """Run ``fn(*args)`` once the loop has started what is ready now: for work that only
        fills a cache (the report's figures of a chapter), kept off the path of the unit that
        comes next. Nothing waits for it; it is skipped if the run stops first, and an error in
        it is dropped (whoever needs the result works it out again and meets the error there)."""
        asyncio.get_running_loop().call_later(0, _quietly, fn, *args)

    def exists(self, stage: str, chapter: int | None = None) -> bool:
        path = self._locate(stage, chapter, 0)[2]
        return path in self.unsaved or path.exists()

    def _locate(self, stage: str, chapter: int | None, index: int) -> tuple[Stage, str, Path]:
        """The stage, the relative path and the path of one of its outputs."""
        source = self.pipeline.get(stage)
        unit = unit_name(chapter) if chapter is not None else SINGLE
        relative = source.output_paths(unit)[index]
        return source, relative, self.paths[relative]

    def notice(self, message: str) -> None:
        """Tell the person running the job about something novelkit decided for them."""
        self.hooks.on_notice(self.stage.name, self.unit, message)

    # -- calling the model ------------------------------------------------------------------

    def request(
        self,
        task: str,
        context: dict[str, Any],
        *,
        schema: type[BaseModel] | None = None,
        shape: Shape | None = None,
        instructions: str | None = None,
    ) -> Request:
        override = self.config.stage_override(self.stage.name)
        template = self.params.get("prompt") or override.prompt or instructions or self.stage.prompt
        text = _render(template, context)
        # the instruction comes after the material: small models follow what they read last
        user = f"Task: {task}\n\n{render_material(context)}\n\n{text}"
        max_output = override.max_output_tokens or self.config.max_output_tokens
        json_schema = None
        if schema is not None:
            user += "\n\nAnswer with one JSON object that matches the schema, and nothing else."
            json_schema = answer_schema(schema, shape or Shape())
            if override.max_output_tokens is None:  # sized to the longest answer allowed
                max_output = min(max_output, output_budget(json_schema))
        return Request(
            stage=self.stage.name,
            unit=self.unit,
            task=task,
            messages=(Message("system", SYSTEM), Message("user", user)),
            model=self.params.get("model") or override.model or self.config.model,
            temperature=_first(
                self.params.get("temperature"), override.temperature, self.config.temperature
            ),
            max_output_tokens=max_output,
            seed=int(_first(self.params.get("seed"), self.config.seed)),
            json_schema=json_schema,
            schema_name=schema.__name__ if schema else None,
            context=context,
            variant=self.variant,
        )

    async def complete(self, request: Request, *, expected_tokens: int = 1000) -> str:
        """The full text of the response, continued past the token limit if it was cut."""
        text, finish = await self._call(request, expected_tokens)
        continuations = 0
        while finish == "length" and continuations < MAX_CONTINUATIONS:
            continuations += 1
            follow = request.with_messages(
                Message("assistant", text),
                Message(
                    "user",
                    "Follow-up: continue. Your answer was cut off at the length limit. Continue "
                    "exactly where you stopped, without repeating anything.",
                ),
                task="continue",
            )
            more, finish = await self._call(follow, expected_tokens)
            text += more
        if finish == "length":
            raise BackendError(
                f"stage {self.stage.name!r} unit {self.unit}: the response was still cut off after "
                f"{MAX_CONTINUATIONS} continuations; raise max_output_tokens in novel.toml"
            )
        return text

    async def json(
        self, task: str, context: dict[str, Any], model: type[M], shape: Shape | None = None
    ) -> M:
        """A validated ``model`` from the response. An answer that breaks the schema, a count
        or a stage check is re-asked with the problems, up to ``MAX_REASKS`` times."""
        shape = shape or Shape()
        request = self.request(task, context, schema=model, shape=shape)
        asked = request
        for attempt in range(MAX_REASKS + 1):
            text, finish = await self._call(asked, 1000)
            try:
                if finish == "length":
                    raise Invalid(
                        [
                            f"the answer was cut off at {asked.max_output_tokens} tokens: "
                            "keep every value short"
                        ]
                    )
                return read_answer(model, shape, text)
            except Invalid as invalid:
                if attempt == MAX_REASKS:
                    raise self._unusable(model, invalid) from None
                asked = request.with_messages(
                    Message("assistant", text),
                    Message(
                        "user",
                        "Follow-up: repair. That answer has these problems: "
                        + "; ".join(invalid.problems[:8])
                        + ". Reply with the corrected JSON object only.",
                    ),
                    task="repair",
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _unusable(self, model: type[BaseModel], invalid: Invalid) -> BackendError:
        where = f"stage {self.stage.name!r}" + ("" if self.unit == SINGLE else f" {self.unit}")
        fix = (
            "Resume with another seed (seed in novel.toml) or a stronger model, or write "
            f"artefacts/{self.stage.output_paths(self.unit)[0]} yourself and resume."
        )
        answers = f"{MAX_REASKS + 1} answers, each re-asked with the problems"
        if invalid.counts:
            count = invalid.counts[0]
            return BackendError(
                f"{where}: asked the model for {count.asked_text()} {count.path.split('[')[0]}, "
                f"it gave {count.got} ({answers}). {fix}"
            )
        return BackendError(
            f"{where}: the model's answer is not a valid {model.__name__} ({answers}): "
            f"{'; '.join(invalid.problems[:4])}. {fix}"
        )

    async def text(self, task: str, context: dict[str, Any], *, expected_tokens: int = 3000) -> str:
        """Prose: the answer without reasoning blocks, code fences or surrounding blank lines."""
        answer = await self.complete(self.request(task, context), expected_tokens=expected_tokens)
        return clean_prose(answer)

    async def _call(self, request: Request, expected_tokens: int) -> tuple[str, str]:
        self.hooks.checkpoint()
        key = request.key
        cached = self.store.call(key)
        if cached is not None:
            self._commits.append(self.later(self.hooks.on_call, cached, True))
            return cached.response, cached.finish_reason
        self.hooks.check_budget(request, expected_tokens)
        started = time.perf_counter()
        parts: list[str] = []
        done: Done | None = None
        stream = self.backend.stream(request)
        try:
            async for chunk in stream:
                self.hooks.chunk_checkpoint()
                if isinstance(chunk, Delta):
                    parts.append(chunk.text)
                    self.hooks.on_delta(self.stage.name, self.unit, chunk.text)
                elif isinstance(chunk, Retrying):
                    parts.clear()
                    self.hooks.on_retry(self.stage.name, self.unit, chunk)
                elif isinstance(chunk, Done):
                    done = chunk
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        if done is None:
            raise BackendError(
                f"the {self.backend.name} backend ended a stream without finishing it"
            )
        response = "".join(parts)
        model = done.model or request.model or self.backend.name
        record = CallRecord(
            key=key,
            stage=request.stage,
            unit=request.unit,
            variant=request.variant,
            task=request.task,
            request=request.canonical(),
            response=response,
            finish_reason=done.finish_reason,
            model=model,
            prompt_tokens=done.usage.prompt_tokens,
            completion_tokens=done.usage.completion_tokens,
            latency=time.perf_counter() - started,
            cost=cost_of(
                self.config,
                (model, request.model, getattr(self.backend, "model", None), self.backend.name),
                done.usage.prompt_tokens,
                done.usage.completion_tokens,
            ),
            job_id=self.hooks.job_id,
            reasoning_tokens=done.usage.reasoning_tokens,
        )
        self.hooks.on_usage(record)  # counted at once, so the next budget check sees it
        # saved on the store's writer thread while the unit goes on; the memo knows the response
        # meanwhile, and settle() makes sure it is on disk before the unit can be marked done
        self.store.hold_call(record)
        self._commits.append(self.later(self._commit_call, record))
        return response, done.finish_reason

    def _commit_call(self, record: CallRecord) -> None:
        try:
            with self.store.transaction():
                self.store.save_call(record)
                self.hooks.on_call(record, False)
        finally:
            self.store.release_call(record)

    def take_commits(self) -> list[Future[None]]:
        """The writes of the calls finished so far (the unit's save is queued after them)."""
        commits, self._commits = self._commits, []
        return commits

    async def settle(self) -> None:
        """Wait until every call this unit finished is saved; a cancellation waits for it too."""
        commits = self.take_commits()
        pending = [asyncio.wrap_future(c) for c in commits if not c.done()]
        if pending:
            await complete(asyncio.gather(*pending, return_exceptions=True))
        check_commits(commits, self.stage.name, self.unit)


async def complete(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to the end: a cancellation (pause now, cancel) waits for it first."""
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True  # keep waiting, however often we are asked to stop
    result = future.result()  # a failed write is reported rather than the cancellation
    if cancelled:
        raise asyncio.CancelledError()
    return result


def _quietly(fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a cache that stays cold; see UnitContext.warm
        pass


def check_commits(commits: list[Future[None]], stage: str, unit: str) -> None:
    """Raise the first failure among finished call writes, saying what to do about it."""
    for error in (c.exception() for c in commits):
        if isinstance(error, OSError):
            reason = "the disk is full" if error.errno == errno.ENOSPC else str(error)
            raise ArtefactError(
                f"could not save a response of stage {stage!r} unit {unit}: {reason}. "
                "Earlier work is intact; free space, then resume."
            ) from None
        if error is not None:
            raise error


class _Placeholders(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _render(template: str, context: dict[str, Any]) -> str:
    flat = {k: v for k, v in context.items() if isinstance(v, str | int | float)}
    try:
        return template.format_map(_Placeholders(flat))
    except (ValueError, IndexError):
        return template  # a template with stray braces is sent as written


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
