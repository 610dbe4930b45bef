"""A project's artefacts read into a :class:`~novelkit.report.scorecard.Book`: whatever exists,
and a plain note for whatever is missing or unreadable. Nothing is written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from .. import _artefacts as a
from .._errors import ArtefactError, PipelineError
from .._pipeline import SINGLE, unit_name
from .scorecard import Book, BookChapter

if TYPE_CHECKING:
    from .._project import Project

__all__ = ["PROSE_STAGES", "gather"]

PROSE_STAGES = ("polish", "revision", "draft")  # the latest text of a chapter wins
M = TypeVar("M", bound=BaseModel)


def _single(project: Project, stage: str, model: type[M], problems: list[str]) -> M | None:
    try:
        path = project.paths[project.pipeline.get(stage).output_paths(SINGLE)[0]]
    except PipelineError:
        return None
    if not path.exists():
        return None
    try:
        value: M = a.parse(model, path, path.read_bytes())
    except ArtefactError as exc:
        problems.append(str(exc))
        return None
    return value


def _not_prose(text: str) -> str:
    """Why ``text`` is not a Markdown chapter, or ''."""
    body = text.strip()
    if "\x00" in body:
        return "holds binary data"
    if body[:1] in "{[":
        try:
            json.loads(body)
        except ValueError:
            pass
        else:
            return "holds JSON"
    if body[:15].lower().startswith(("<!doctype", "<html", "<?xml")):
        return "holds HTML or XML"
    return ""


def _chapter_text(path: Path, number: int, problems: list[str]) -> a.ChapterText | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{path} is not UTF-8 text; fix or delete it (the scorecard left it out)")
        return None
    why = _not_prose(text)
    if why:
        problems.append(
            f"{path} {why}, not a Markdown chapter; fix or delete it (the scorecard left it out)"
        )
        return None
    return a.ChapterText.from_markdown(number, text)


def gather(project: Project, *, stage: str | None = None, variant: str = "") -> Book:
    """The project's book as it stands. ``stage``/``variant`` score one prose stage's text (a
    variant's, when given) instead of each chapter's latest."""
    from ..stages.finishing import final_findings

    problems: list[str] = []
    premise = _single(project, "premise", a.Premise, problems)
    world = _single(project, "world", a.World, problems)
    cast = _single(project, "characters", a.Cast, problems)
    structure = _single(project, "structure", a.Structure, problems)
    outline = _single(project, "chapters", a.Outline, problems)
    meta = _single(project, "metadata", a.Metadata, problems)
    numbers = (
        [p.number for p in outline.chapters]
        if outline
        else list(range(1, project.config.chapters + 1))
    )
    stages = (stage,) if stage else PROSE_STAGES
    chapters: list[BookChapter] = []
    missing: list[int] = []
    for number in numbers:
        unit = unit_name(number)
        found = None
        for name in stages:
            try:
                relative = project.pipeline.get(name).output_paths(unit)[0]
            except PipelineError:
                continue
            path = project.artefact_path(relative, variant)
            if path.exists():
                found = _chapter_text(path, number, problems)
                if found is not None:
                    found_stage = name
                    break
        if found is None:
            missing.append(number)
            continue
        title = found.title
        if meta and number <= len(meta.chapter_titles) and not stage:
            title = meta.chapter_titles[number - 1]
        chapters.append(BookChapter(number, title, found.text, found_stage))

    findings: list[a.Finding] = []
    if cast is not None and world is not None:
        for chapter in chapters:
            findings += final_findings(chapter.number, chapter.text, cast, world)
            path = project.paths[
                project.pipeline.get("continuity").output_paths(unit_name(chapter.number))[0]
            ]
            if path.exists():
                try:
                    report = a.parse(a.ContinuityReport, path, path.read_bytes())
                except ArtefactError as exc:
                    problems.append(str(exc))
                    continue
                findings += [
                    f
                    for f in report.findings
                    if f.source == "model" and f.quote and f.quote in chapter.text
                ]
    if outline is None:
        problems.append("no chapter plan yet: run stage 5 'chapters' (novelkit run DIR)")
    if not chapters:
        problems.append("no chapter has been written yet: run stage 7 'draft' (novelkit run DIR)")
    elif missing:
        problems.append(f"chapters without text yet: {', '.join(map(str, missing))}")
    if not stage and not project.paths["12-manuscript.md"].exists():
        problems.append(
            "no assembled manuscript yet: this scores the latest text of each chapter "
            "(run the pipeline to stage 12 'assemble' for the book)"
        )
    title = project.config.title or (meta.title if meta else "") or project.root.name
    return Book(
        title=title,
        chapters=chapters,
        outline=outline,
        premise=premise,
        cast=cast,
        world=world,
        structure=structure,
        open_findings=findings,
        missing=missing,
        problems=problems,
        backend=project.config.backend,
        models=_models(project),
        default_target=project.config.words_per_chapter,
    )


def _models(project: Project) -> list[str]:
    """The models the ledger says wrote the book (the judge's calls left out)."""
    return project.store.models_used(exclude_stages=("judge",))
