"""An optional LLM judge: a model scores each chapter and the book against a published rubric.

The rubric is EQ-Bench Creative Writing v3's (github.com/EQ-bench/creative-writing-bench,
Sam Paech): thirteen qualities and nine faults, each scored 0–20; a fault counts inverted
(20 − score). novelkit asks for them per chapter with the chapter plan in view ("Adherent to
the chapter plan" stands for the benchmark's "Adherent to Instructions"), and for the book
over the plan and each chapter's opening and closing paragraphs, with the criteria that
describe a whole. A result's score is the mean on a 0–10 scale.

Every call is an ordinary call of the project's (or the given) backend, made through the same
path as a stage's: memoised by request, written to the ledger under the stage name ``judge``,
priced, held to max_cost/max_tokens, and recorded to or replayed from a cassette.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field, model_validator

from .._artefacts import write_atomic
from .._errors import BackendConfigError, BudgetExceededError, PipelineError
from .._pipeline import Stage, unit_name
from .._runner import UnitContext
from .scorecard import JudgeCriterion, JudgeResult, JudgeScores

if TYPE_CHECKING:
    from .._project import Project
    from .._store import CallRecord
    from ..llm.base import Backend, Request, Retrying

__all__ = ["BOOK_CRITERIA", "NEGATIVE", "POSITIVE", "RUBRIC", "judge_project"]

RUBRIC = "eqbench-creative-writing-v3"
POSITIVE = (
    "Adherent to the chapter plan",
    "Believable Character Actions",
    "Nuanced Characters",
    "Consistent Voice/Tone of Writing",
    "Imagery and Descriptive Quality",
    "Elegant Prose",
    "Emotionally Engaging",
    "Emotionally Complex",
    "Coherent",
    "Well-earned Lightness or Darkness",
    "Sentences Flow Naturally",
    "Overall Reader Engagement",
    "Overall Impression",
)
NEGATIVE = (
    "Meandering",
    "Weak Dialogue",
    "Tell-Don't-Show",
    "Unsurprising or Uncreative",
    "Amateurish",
    "Purple Prose",
    "Overwrought",
    "Incongruent Ending Positivity",
    "Unearned Transformations",
)
BOOK_CRITERIA = (
    "Coherent",
    "Nuanced Characters",
    "Emotionally Engaging",
    "Overall Reader Engagement",
    "Overall Impression",
    "Meandering",
    "Unearned Transformations",
    "Incongruent Ending Positivity",
)
PROMPT = (
    "You are an exacting literary critic. Score the {what} in the material against each "
    "criterion listed in 'criteria', from 0 to 20. For the criteria listed in 'faults', a high "
    "score means much of the fault (20 = very meandering). Judge the writing, not the "
    'premise. Answer with JSON: {{"scores": {{criterion: number, ...}}, "comment": '
    '"two sentences on the main strength and weakness"}}.'
)
TEMPERATURE = 0.0  # a judge gives the same answer to the same text


class JudgeAnswer(BaseModel):
    """What the model must answer: a score 0–20 per criterion, and a short comment."""

    scores: dict[str, float]
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _in_range(self) -> JudgeAnswer:
        bad = {k: v for k, v in self.scores.items() if not 0 <= v <= 20}
        if bad:
            raise ValueError(f"scores must be 0–20; out of range: {bad}")
        return self


class JudgeStage(Stage):
    """The judge's calls, as the ledger names them (it is no stage of the pipeline)."""

    name = "judge"
    description = "LLM judge of the chapters and the book (optional, not in the pipeline)."
    prompt = PROMPT


class _Hooks:
    """What the judge's calls report through: the ledger, events and the budget."""

    job_id: str | None = None

    def __init__(self, project: Project) -> None:
        self.project = project
        ledger = project.store.ledger()
        self.tokens = sum(
            int(r["prompt_tokens"] or 0) + int(r["completion_tokens"] or 0) for r in ledger.values()
        )
        self.cost = sum(float(r["cost"] or 0.0) for r in ledger.values())
        self.models: list[str] = []
        self._lock = threading.Lock()

    def checkpoint(self) -> None:
        pass

    def chunk_checkpoint(self) -> None:
        pass

    def on_delta(self, stage: str, unit: str, text: str) -> None:
        pass

    def on_retry(self, stage: str, unit: str, chunk: Retrying) -> None:
        pass

    def on_notice(self, stage: str, unit: str, message: str) -> None:
        self.project.store.append_event(
            "log", {"stage": stage, "unit": unit, "level": "warning", "message": message}
        )

    def on_usage(self, record: CallRecord) -> None:
        with self._lock:
            self.tokens += record.prompt_tokens + record.completion_tokens
            self.cost += record.cost

    def on_call(self, record: CallRecord, cached: bool) -> None:
        if record.model not in self.models:
            self.models.append(record.model)
        self.project.store.append_event(
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
        )

    def check_budget(self, request: Request, expected_tokens: int) -> None:
        config = self.project.config
        if config.max_tokens is not None:
            projected = self.tokens + request.prompt_tokens + expected_tokens
            if projected > config.max_tokens:
                raise BudgetExceededError(
                    f"the judge stopped before {request.unit}: the next call would pass "
                    f"max_tokens ({self.tokens:,} used of {config.max_tokens:,}); raise "
                    "max_tokens in novel.toml and judge again (finished scores are kept)"
                )
        if config.max_cost is not None:
            price = config.prices.get(request.model or "")
            if price is not None:
                estimate = (
                    request.prompt_tokens * price.prompt + expected_tokens * price.completion
                ) / 1e6
                if self.cost + estimate > config.max_cost:
                    raise BudgetExceededError(
                        f"the judge stopped before {request.unit}: the next call (~{estimate:.4f}) "
                        f"would pass max_cost ({self.cost:.4f} spent of {config.max_cost:.4f}); "
                        "raise max_cost in novel.toml and judge again (finished scores are kept)"
                    )


def _result(
    chapter: int, answer: JudgeAnswer, criteria: tuple[str, ...], digest: str
) -> JudgeResult:
    given = {k.strip().lower(): v for k, v in answer.scores.items()}
    listed = []
    for name in criteria:
        score = given.get(name.lower())
        if score is not None:
            listed.append(JudgeCriterion(name=name, score=score, negative=name in NEGATIVE))
    if not listed:
        raise BackendConfigError(
            f"the judge's answer for {'the book' if chapter == 0 else f'chapter {chapter}'} "
            f"scored none of the rubric's criteria (it gave {sorted(answer.scores)[:5]}); "
            "try a stronger model"
        )
    points = [20 - c.score if c.negative else c.score for c in listed]
    return JudgeResult(
        chapter=chapter,
        criteria=listed,
        score=round(statistics.fmean(points) / 2, 2),
        comment=answer.comment.strip(),
        text_digest=digest,
    )


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end on a loop of its own (a notebook's loop may be running here)."""
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=go, name="novelkit-judge")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def judge_project(
    project: Project, backend: Backend, *, chapters: list[int] | None = None, book: bool = True
) -> JudgeScores:
    """:meth:`Project.judge`: score the chapters (all, or ``chapters``) and the book, save the
    scores to artefacts/report/judge.json, and return them."""
    from ..stages.finishing import text_digest
    from . import load_judgement, report_folder, score_project
    from ._gather import gather

    if backend.name == "offline":
        raise BackendConfigError(
            "the offline backend cannot judge: it writes placeholder prose and has no opinion of "
            "it. Judge with a model: project.judge(backend=...) or novelkit judge DIR "
            "--backend openai --model MODEL (a key in OPENAI_API_KEY, or --base-url of a local "
            "server)"
        )
    found = gather(project)
    texts = {c.number: c for c in found.chapters}
    wanted = chapters if chapters is not None else sorted(texts)
    unknown = [n for n in wanted if n not in texts]
    if unknown:
        raise PipelineError(
            f"cannot judge chapters {unknown}: they have no text yet "
            f"(chapters with text: {sorted(texts) or 'none'})"
        )
    if not wanted:
        raise PipelineError("there is nothing to judge yet: no chapter has text (novelkit run DIR)")
    plans = {p.number: p for p in found.outline.chapters} if found.outline else {}
    hooks = _Hooks(project)
    stage = JudgeStage()
    started = hooks.cost

    def context(unit: str) -> UnitContext:
        return UnitContext(
            stage=stage,
            unit=unit,
            root=project.root,
            config=project.config,
            pipeline=project.pipeline,
            store=project.store,
            backend=backend,
            hooks=hooks,
            params={"temperature": TEMPERATURE},
        )

    async def one(number: int) -> JudgeResult:
        chapter = texts[number]
        plan = plans.get(number)
        ctx = context(unit_name(number))
        material = {
            "unit": unit_name(number),
            "chapter": number,
            "title": chapter.title,
            "plan": plan.summary if plan else "",
            "beats": plan.beats if plan else [],
            "text": chapter.text,
            "criteria": list(POSITIVE),
            "faults": list(NEGATIVE),
            "what": "chapter",
        }
        try:
            answer = await ctx.json("judge", material, JudgeAnswer)
        finally:
            await ctx.settle()
        return _result(number, answer, (*POSITIVE, *NEGATIVE), text_digest(chapter.text))

    async def whole() -> JudgeResult:
        ctx = context("book")
        outline = [
            {"chapter": n, "title": texts[n].title, "plan": plans[n].summary if n in plans else ""}
            for n in sorted(texts)
        ]
        samples = []
        for n in sorted(texts):
            paragraphs = [p for p in texts[n].text.split("\n\n") if p.strip()]
            samples.append(
                {
                    "chapter": n,
                    "opening": paragraphs[0] if paragraphs else "",
                    "closing": paragraphs[-1] if paragraphs else "",
                }
            )
        material = {
            "unit": "book",
            "premise": found.premise.premise if found.premise else "",
            "outline": outline,
            "samples": samples,
            "criteria": [c for c in BOOK_CRITERIA if c not in NEGATIVE],
            "faults": [c for c in BOOK_CRITERIA if c in NEGATIVE],
            "what": "novel as a whole (from its plan and each chapter's opening and closing)",
        }
        try:
            answer = await ctx.json("judge", material, JudgeAnswer)
        finally:
            await ctx.settle()
        digest = text_digest("\n".join(texts[n].text for n in sorted(texts)))
        return _result(0, answer, BOOK_CRITERIA, digest)

    async def everything() -> list[JudgeResult]:
        gate = asyncio.Semaphore(project.config.concurrency)

        async def limited(work: Coroutine[Any, Any, JudgeResult]) -> JudgeResult:
            async with gate:
                return await work

        jobs = [limited(one(n)) for n in wanted]
        if book and chapters is None:
            jobs.append(limited(whole()))
        return list(await asyncio.gather(*jobs))

    results = _run(everything())
    card = score_project(project)
    earlier = load_judgement(project, card)
    kept = {r.chapter: r for r in (earlier.results if earlier else [])}
    kept.update({r.chapter: r for r in results})
    merged = sorted(kept.values(), key=lambda r: (r.chapter == 0, r.chapter))
    book_result = kept.get(0)
    scores = JudgeScores(
        rubric=RUBRIC,
        model=", ".join(hooks.models) or (earlier.model if earlier else backend.name),
        results=merged,
        book_score=book_result.score if book_result else None,
        cost=round((earlier.cost if earlier else 0.0) + hooks.cost - started, 6),
    )
    folder = report_folder(project)
    write_atomic(folder / "judge.json", (scores.model_dump_json(indent=2) + "\n").encode())
    project.store.append_event(
        "artefact",
        {"stage": "judge", "unit": "all", "path": "report/judge.json", "at": time.time()},
    )
    return scores
