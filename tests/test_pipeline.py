"""The stage registry: the twelve stages, replacing and inserting stages, graph validation."""

from __future__ import annotations

import asyncio

import pytest
from _tools import STAGE_NAMES

import novelkit as nk
from novelkit import JobState, UnitContext
from novelkit._pipeline import Outputs, Pipeline
from novelkit.stages import default_stages

NAMES = STAGE_NAMES


def test_the_twelve_stages_are_registered_with_their_contract(project: nk.Project) -> None:
    assert project.pipeline.names() == NAMES
    stages = project.stages
    assert [s.number for s in stages] == list(range(1, 13))
    assert all(s.description and s.state is nk.StageState.PENDING for s in stages)
    for stage in project.pipeline:
        assert stage.version and isinstance(stage.inputs, tuple)
        assert stage.output_paths("ch01" if stage.per_chapter else "all")
    assert {s.name for s in project.pipeline if s.parallel} == {
        "scenes",
        "continuity",
        "revision",
        "polish",
    }
    assert project.pipeline.get(7).name == "draft" and project.pipeline.get("7").name == "draft"


class Epigraph(nk.Stage):
    name = "epigraph"
    description = "An epigraph from the premise."
    inputs = ("premise",)
    path = "epigraph.json"
    calls_llm = False

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: nk.Premise = ctx.read("premise")
        return {self.path: f"“{premise.themes[0]}”\n"}


def test_insert_a_stage_from_python_and_run_it(project: nk.Project) -> None:
    project.pipeline.insert(Epigraph(), after="premise")
    assert project.pipeline.names()[1] == "epigraph"
    assert project.start().wait(60) is JobState.SUCCEEDED
    assert (project.root / "artefacts" / "epigraph.json").read_text().startswith("“the cost of")


def test_replace_a_stage(project: nk.Project) -> None:
    class Polish(nk.Stage):
        name = "polish"
        description = "No polish: copy the revision."
        inputs = ("revision",)
        per_chapter = True
        path = "10-polish/{ch}.md"
        model = nk.ChapterText

        async def run(self, ctx: UnitContext, unit: str) -> Outputs:
            return {self.output_paths(unit)[0]: ctx.read("revision", ctx.chapter)}

    project.pipeline.replace("polish", Polish())
    assert project.start().wait(60) is JobState.SUCCEEDED
    assert project.artefacts["polish"][2].text == project.artefacts["revision"][2].text


def test_missing_input_and_cycles_are_clear_errors() -> None:
    pipeline = Pipeline(default_stages())

    class Orphan(nk.Stage):
        name = "orphan"
        inputs = ("moodboard",)

    with pytest.raises(
        nk.PipelineError, match="stage 'orphan' needs 'moodboard', which is not in the pipeline"
    ):
        pipeline.insert(Orphan(), after="draft")

    class Early(nk.Stage):
        name = "early"
        inputs = ("polish",)

    with pytest.raises(nk.PipelineError, match="comes before its input 'polish'"):
        pipeline.insert(Early(), after="premise")

    class A(nk.Stage):
        name = "a"
        inputs = ("b",)

    class B(nk.Stage):
        name = "b"
        inputs = ("a",)

    with pytest.raises(nk.PipelineError, match="cycle: a → b → a"):
        Pipeline([A(), B()])
    with pytest.raises(nk.PipelineError, match="two stages share the name 'premise'"):
        pipeline.insert(default_stages()[0], after="draft")
    assert len(pipeline) == 12, "a refused change leaves the pipeline as it was"
    assert pipeline.downstream("polish") == ["metadata", "assemble"]


def _context(project: nk.Project, stage: str, unit: str) -> UnitContext:
    return UnitContext(
        stage=project.pipeline.get(stage),
        unit=unit,
        root=project.root,
        config=project.config,
        pipeline=project.pipeline,
        store=project.store,
        backend=project.backend,
        hooks=None,  # type: ignore[arg-type]  # reading calls no hook
        unsaved=project.unsaved,
        parsed=project.files.parsed,
    )


def test_shared_reads_parse_once_and_follow_every_change_of_the_file(project: nk.Project) -> None:
    from novelkit._artefacts import StagedFile, serialize

    for name in ("premise", "world", "characters"):
        assert project.run_stage(name).wait(60) is JobState.SUCCEEDED
    draft, scenes = _context(project, "draft", "ch01"), _context(project, "scenes", "ch02")
    cast = draft.read("characters", shared=True)
    assert scenes.read("characters", shared=True) is cast  # another unit: the same object
    fresh = draft.read("characters")
    assert fresh == cast and fresh is not cast  # without shared: a new object to change at will

    path = project.root / "artefacts" / "03-characters.json"
    edited = cast.model_copy(deep=True)
    edited.characters[0].name = "Edited Name"
    path.write_bytes(serialize(edited))  # by hand, in place: same inode, new size or mtime
    assert draft.read("characters", shared=True).characters[0].name == "Edited Name"

    staged = cast.model_copy(deep=True)
    staged.characters[0].name = "Staged Name"
    data = serialize(staged)
    project.unsaved[path] = StagedFile("03-characters.json", path, data, "digest-of-staged")
    try:  # a running job's new version counts before it is saved
        assert draft.read("characters", shared=True).characters[0].name == "Staged Name"
    finally:
        del project.unsaved[path]
    assert draft.read("characters", shared=True).characters[0].name == "Edited Name"

    path.write_text("{not json")
    with pytest.raises(nk.ArtefactError, match="03-characters.json"):
        draft.read("characters", shared=True)  # a broken file is never served from memory


def test_a_shared_read_after_a_stage_is_replaced_parses_with_the_new_model(
    project: nk.Project,
) -> None:
    """The shared cache is keyed by path and file version only; ``pipeline.replace`` can give
    the same file a new model (a Cast with one more field), and a shared read then hands out
    the object parsed with the old one."""
    from novelkit._artefacts import Cast
    from novelkit.stages.planning import Characters

    for name in ("premise", "world", "characters"):
        assert project.run_stage(name).wait(60) is JobState.SUCCEEDED
    assert type(_context(project, "draft", "ch01").read("characters", shared=True)) is Cast

    class RatedCast(Cast):
        rating: str = "PG"

    class RatedCharacters(Characters):
        model = RatedCast

    project.pipeline.replace("characters", RatedCharacters())
    cast = _context(project, "draft", "ch01").read("characters", shared=True)
    assert isinstance(cast, RatedCast), type(cast)
    assert cast.rating == "PG"


def test_a_runs_own_outputs_serve_shared_reads_exactly_as_saved(project: nk.Project) -> None:
    """A unit's JSON outputs are handed to shared reads without a parse, staged and then saved:
    each must be what parsing the saved file gives, and a change of the file is still seen."""
    from novelkit._artefacts import parse

    assert project.start().wait(60) is JobState.SUCCEEDED
    served = 0
    for stage in project.pipeline:
        if stage.model is None or stage.model is nk.ChapterText:
            continue
        for unit in project.units_of(stage):
            chapter = int(unit[2:]) if stage.per_chapter else None
            path = project.root / "artefacts" / stage.output_paths(unit)[0]
            shared = _context(project, "assemble", "all").read(stage.name, chapter, shared=True)
            assert shared == parse(stage.model, path, path.read_bytes(), chapter), path
            served += 1
    assert served >= 3 * 2 + 6, "scenes and continuity of 3 chapters, the six single artefacts"
    for chapter in (1, 2, 3):  # the draft's second output, read as the model it holds
        path = project.root / "artefacts" / f"07-draft/ch{chapter:02d}.summary.json"
        summary = _context(project, "draft", "ch04").read(
            "draft", chapter, index=1, model=nk.ChapterSummary, shared=True
        )
        assert summary == nk.ChapterSummary.model_validate_json(path.read_bytes())
        assert summary.chapter == chapter and summary.ending

    path = project.root / "artefacts" / "11-metadata.json"
    meta = _context(project, "assemble", "all").read("metadata", shared=True)
    path.write_text(path.read_text().replace(meta.title, "A Title Changed By Hand"))
    assert _context(project, "assemble", "all").read("metadata", shared=True).title == (
        "A Title Changed By Hand"
    )


def test_work_a_unit_leaves_to_warm_runs_after_the_next_unit_started_and_never_fails_the_run(
    project: nk.Project,
) -> None:
    """``ctx.warm`` is for filling caches: it must not hold up the unit that comes next, and an
    error in it is nobody's failure."""
    order: list[str] = []

    def fill(label: str) -> None:
        order.append(label)
        raise RuntimeError("a cache that could not be filled")

    class First(nk.Stage):
        name = "first"
        inputs = ("premise",)
        path = "first.json"
        calls_llm = False

        async def run(self, ctx: UnitContext, unit: str) -> Outputs:
            await asyncio.sleep(0)  # as a call would: the next unit is waiting when this ends
            ctx.warm(fill, "warm")
            return {self.path: "{}\n"}

    class Second(nk.Stage):
        name = "second"
        inputs = ("first",)
        path = "second.json"
        calls_llm = False

        async def run(self, ctx: UnitContext, unit: str) -> Outputs:
            order.append("second started")
            return {self.path: "{}\n"}

    assert project.run_stage("premise").wait(30) is JobState.SUCCEEDED
    project.pipeline.insert(First(), after="premise")
    project.pipeline.insert(Second(), after="first")
    assert project.start().wait(60) is JobState.SUCCEEDED
    assert order[:2] == ["second started", "warm"]


def test_a_users_model_is_parsed_from_the_file_not_served_as_returned(
    project: nk.Project,
) -> None:
    """A replaced stage's own model may keep things out of the file (an excluded field): a
    shared read must give what the file holds, as the next process would see it."""
    from pydantic import Field

    from novelkit.stages.planning import Characters

    class NotedCast(nk.Cast):
        notes: str = Field("", exclude=True)

    class NotedCharacters(Characters):
        model = NotedCast  # type: ignore[assignment]

        async def run(self, ctx: UnitContext, unit: str) -> Outputs:
            outputs = await super().run(ctx, unit)
            cast = outputs[self.path]
            assert isinstance(cast, nk.Cast)
            return {self.path: NotedCast(**cast.model_dump(), notes="kept in memory only")}

    project.pipeline.replace("characters", NotedCharacters())
    for name in ("premise", "world", "characters"):
        assert project.run_stage(name).wait(60) is JobState.SUCCEEDED
    shared = _context(project, "draft", "ch01").read("characters", shared=True)
    assert isinstance(shared, NotedCast) and shared.notes == ""
