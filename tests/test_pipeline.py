"""The stage registry: the twelve stages, replacing and inserting stages, graph validation."""

from __future__ import annotations

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
