"""``project.extend(chapters=K)``: plan K more chapters after the last one and write them.

The chapters written so far (and the bible they were written from) are kept: their units are
marked ``kept:`` so the longer outline does not make them stale, and they stay byte for byte
as they are. The outline grows by one planning call; the new chapters then run through the
pipeline like any chapter (scenes, draft with the recent summaries, continuity, revision,
polish), and metadata and the manuscript are redone to include them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _artefacts as a
from .._answers import INDEX, Shape
from .._errors import JobStateError, PipelineError, ProjectError
from .._freshness import KEPT
from .._pipeline import Outputs, Pipeline, unit_name
from .._runner import UnitContext
from .._status import JobState
from ..stages.planning import Chapters
from ._importer import using_pipeline

if TYPE_CHECKING:
    from .._job import Job
    from .._project import Project

__all__ = ["EXTENDED", "extend"]

EXTENDED = f"{KEPT}extended"
RECENT = 3
# single-unit stages whose artefacts the earlier chapters were written from: kept as they are
# (the outline too, so a failed extension leaves it as it was rather than stale)
_BIBLE = ("premise", "world", "characters", "structure", "chapters")


class ExtendOutline(Chapters):
    """The outline stage for one extension: the plans so far, then ``count`` new ones."""

    version = "extend-1"
    prompt = (
        "Continue the outline: plan chapters {first} to {last} ({count} chapters) that follow "
        "the chapters so far (their titles and the latest summaries are in the material) toward "
        "the structure's ending. For each: number, title, summary, POV character, location, "
        "beats, and target_words = {words_per_chapter}."
    )

    def __init__(self, outline: a.Outline, count: int) -> None:
        self.outline = outline
        self.count = count

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        structure: a.Structure = ctx.read("structure", shared=True)
        cast: a.Cast = ctx.read("characters", shared=True)
        world: a.World = ctx.read("world", shared=True)
        existing = self.outline.chapters
        last = existing[-1].number
        summaries = []
        for plan in existing[-RECENT:]:
            if ctx.exists("draft", plan.number):
                summary = ctx.read("draft", plan.number, index=1, model=a.ChapterSummary)
                summaries.append(f"{plan.number}. {summary.summary}")
        context: dict[str, Any] = {
            "premise": premise.premise,
            "acts": [act.model_dump() for act in structure.acts],
            "ending": structure.ending,
            "cast": [c.name for c in cast.characters if c.status != "dead"],
            "locations": [loc.name for loc in world.locations],
            "titles_so_far": [p.title for p in existing],
            "recent_summaries": summaries,
            "first": last + 1,
            "last": last + self.count,
            "count": self.count,
            "words_per_chapter": ctx.config.words_per_chapter,
        }
        shape = Shape(
            items={"chapters": (self.count, self.count), "chapters[].beats": (1, 4)},
            choices={
                "chapters[].pov": tuple(context["cast"]),
                "chapters[].location": tuple(context["locations"]),
            },
            fixed={
                "chapters[].number": INDEX,
                "chapters[].target_words": ctx.config.words_per_chapter,
            },
        )
        planned = await ctx.json("extend-outline", context, a.Outline, shape)
        new = planned.chapters[: self.count]
        plans = [p.model_copy(update={"number": last + i}) for i, p in enumerate(new, 1)]
        return {self.path: a.Outline(chapters=[*existing, *plans])}


def extend(project: Project, chapters: int) -> Job:
    """Plan ``chapters`` more chapters, then start the job that writes them."""
    if isinstance(chapters, bool) or not isinstance(chapters, int) or chapters < 1:
        raise PipelineError(f"extend(chapters=...) takes a whole number >= 1, not {chapters!r}")
    job = project.job
    if job is not None and job.state.active:
        raise JobStateError(
            f"a job is {job.state.value}; wait for it or pause it before extending",
            state=job.state,
            action="extend",
        )
    outline_stage = project.pipeline.get("chapters")
    path = project.paths[outline_stage.output_paths("all")[0]]
    if not path.exists():
        raise PipelineError(
            "there is no outline to extend yet: run the pipeline first (project.start()), "
            "or import a manuscript (nk.import_manuscript)"
        )
    outline: a.Outline = a.parse(a.Outline, path, path.read_bytes())
    total = outline.chapters[-1].number + chapters
    if total > 200:
        raise PipelineError(f"a novel has at most 200 chapters; {total} is too many")
    _keep_written(project, [p.number for p in outline.chapters])
    before = project.config.chapters
    _set_chapters(project, total)
    planning = Pipeline(list(project.pipeline))
    planning.replace("chapters", ExtendOutline(outline, chapters))
    with using_pipeline(project, planning):
        plan_job = project.run_stage("chapters", force=True)
        state = plan_job.wait()
    if state is not JobState.SUCCEEDED:
        _set_chapters(project, before)
        # the outline on disk is the old one: it stays kept rather than failed (and redone)
        project.store.set_unit("chapters", "all", "done", fingerprint=EXTENDED)
        status = plan_job.status
        raise ProjectError(
            f"planning the {chapters} new chapters stopped ({state.value}: "
            f"{status.error or status.message}); the chapters so far are unchanged. Run "
            "extend again to retry: a finished call is not paid again"
        )
    project.store.set_unit("chapters", "all", "done", fingerprint=EXTENDED)
    return project.start()


def _set_chapters(project: Project, chapters: int) -> None:
    if project.config.chapters != chapters:
        backend = project.backend  # configure() forgets an injected backend
        project.configure(chapters=chapters)
        project.backend = backend


def _keep_written(project: Project, numbers: list[int]) -> None:
    """Mark every fresh unit of the chapters so far, and of the bible, as kept."""
    store = project.store
    units = {unit_name(n) for n in numbers}
    for stage in project.pipeline:
        if stage.per_chapter:
            targets = units
        elif stage.name in _BIBLE:
            targets = {"all"}
        else:
            continue
        records = store.units(stage.name)
        for unit in targets:
            record = records.get(unit)
            if record is None or record["fingerprint"].startswith(KEPT):
                continue
            if project.freshness.unit_fresh(stage, unit, record):
                store.set_unit(stage.name, unit, "done", fingerprint=EXTENDED)
