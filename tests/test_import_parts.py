"""Parts a person brings (cast, outline, world), a voice from samples, and sequels."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import novelkit as nk
from novelkit import JobState
from novelkit.imports import (
    chapter_drift,
    load_cast,
    load_outline,
    load_world,
    read_voice,
    voice_profile,
)
from novelkit.llm.base import Chunk, Request
from novelkit.llm.offline import OfflineBackend

PREMISE = "A ferryman's daughter inherits the crossing the year the river starts to freeze."

CAST_MD = """\
# Cast

- **Edda Voss** (protagonist): the ferryman's daughter, nineteen
  - goal: keep the crossing open through the winter
  - flaw: cannot ask for help
  - voice: dry, exact, few words
- **Piet Amsel** (rival): runs the new bridge company
  - goal: close the ferry for good
  - voice: warm and persuasive
- **Old Mareike** (mentor): keeps the lock-house
"""

OUTLINE_MD = """\
1. The Last Crossing — Edda takes the ferry out alone for the first time.
2. Ice at the Landing — Piet offers to buy the ferry; the river freezes at the edges.
3. The Lock-House — Mareike shows Edda the old winter route across the ice.
"""

WORLD_MD = """\
# A river town in the 1890s, where the ferry is older than the town

## Locations
- Voss Landing: the ferry's wooden jetty on the north bank
- The Lock-House: Mareike's house by the sluice
## Rules
- The ferry never runs after dark
## History
The bridge was promised twenty years ago and never built.
"""


class RecordingBackend:
    """The offline backend, keeping every request it answered."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = OfflineBackend()
        self.requests: list[Request] = []

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        async for chunk in self.inner.stream(request):
            yield chunk

    async def aclose(self) -> None:
        return None


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- reading parts ---------------------------------------------------------------------------


def test_markdown_cast_outline_and_world_are_read_into_artefacts(tmp_path: Path) -> None:
    cast = load_cast(write(tmp_path, "cast.md", CAST_MD))
    assert cast.names() == ["Edda Voss", "Piet Amsel", "Old Mareike"]
    edda = cast.characters[0]
    assert (edda.role, edda.goal, edda.voice) == (
        "protagonist",
        "keep the crossing open through the winter",
        "dry, exact, few words",
    )
    outline = load_outline(write(tmp_path, "outline.md", OUTLINE_MD), words_per_chapter=500)
    assert [(p.number, p.title) for p in outline.chapters] == [
        (1, "The Last Crossing"),
        (2, "Ice at the Landing"),
        (3, "The Lock-House"),
    ]
    assert outline.chapters[1].summary.startswith("Piet offers to buy the ferry")
    assert {p.target_words for p in outline.chapters} == {500}
    world = load_world(write(tmp_path, "world.md", WORLD_MD))
    assert [loc.name for loc in world.locations] == ["Voss Landing", "The Lock-House"]
    assert world.rules == ["The ferry never runs after dark"]
    assert world.history.startswith("The bridge was promised")


def test_outline_as_headings_with_summaries_and_beats(tmp_path: Path) -> None:
    text = "## Thaw\nThe ice breaks.\n- Edda hears it crack\n\n## Flood\nThe landing goes under.\n"
    outline = load_outline(write(tmp_path, "outline.md", text))
    assert [p.title for p in outline.chapters] == ["Thaw", "Flood"]
    assert outline.chapters[0].beats == ["Edda hears it crack"]
    assert outline.chapters[1].summary == "The landing goes under."


def test_json_and_toml_casts(tmp_path: Path) -> None:
    people = [{"name": "Edda Voss", "role": "protagonist"}, {"name": "Piet Amsel"}]
    assert load_cast(write(tmp_path, "c.json", json.dumps({"characters": people}))).names() == [
        "Edda Voss",
        "Piet Amsel",
    ]
    toml = '[[characters]]\nname = "Edda Voss"\n\n[[characters]]\nname = "Piet Amsel"\n'
    assert len(load_cast(write(tmp_path, "c.toml", toml)).characters) == 2


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "cast.md",
            "- **Edda** (hero): x\n- **Piet** (rival): y\n  - status: missing\n",
            r"cast.md, line 2, character 2, field 'characters.status'",
        ),
        (
            "cast.md",
            "- **Edda** (hero): x\n  - hobby: boats\n",
            r"cast.md, line 2: unknown field 'hobby'",
        ),
        (
            "cast.json",
            '{"characters": [\n {"name": "Edda"},\n {"role": "rival"}\n]}',
            r"cast.json, line 3, character 2, field 'characters.name'",
        ),
        (
            "cast.json",
            '{"characters": [\n {"name": "Edda",}\n]}',
            r"cast.json, line 2: not valid JSON",
        ),
        ("cast.md", "- **Edda**\n- **Edda**\n", r"line 2: character 'Edda' is listed twice"),
        ("world.md", "# Somewhere\n\nJust a setting.\n", r"world.md lists no locations"),
    ],
)
def test_bad_parts_name_the_line_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    loader = load_world if name.startswith("world") else load_cast
    with pytest.raises(nk.ManuscriptError, match=message):
        loader(path)


def test_outline_count_that_disagrees_with_chapters_is_refused(tmp_path: Path) -> None:
    outline = write(tmp_path, "outline.md", OUTLINE_MD)
    with pytest.raises(nk.ManuscriptError, match=r"has 3 chapters but chapters=5.*add 2 chapters"):
        nk.new_project(tmp_path / "novel", premise=PREMISE, outline=outline, chapters=5)
    assert not (tmp_path / "novel").exists(), "nothing written before the parts are valid"


# -- used as given ---------------------------------------------------------------------------


def test_given_cast_outline_and_world_are_used_as_given(tmp_path: Path) -> None:
    backend = RecordingBackend()
    project = nk.new_project(
        tmp_path / "novel",
        premise=PREMISE,
        words_per_chapter=300,
        cast=write(tmp_path, "cast.md", CAST_MD),
        outline=write(tmp_path, "outline.md", OUTLINE_MD),
        world=write(tmp_path, "world.md", WORLD_MD),
        backend_instance=backend,
    )
    try:
        assert project.config.chapters == 3, "the outline sets the chapter count"
        base = project.root / "artefacts"
        given = {
            name: (base / name).read_bytes()
            for name in (
                "02-world.json",
                "03-characters.json",
                "04-structure.json",
                "05-chapters.json",
            )
        }
        assert project.start().wait(60) is JobState.SUCCEEDED
        assert {name: (base / name).read_bytes() for name in given} == given, "a part was rewritten"
        tasks = {r.task for r in backend.requests}
        assert not tasks & {"world", "characters", "structure", "chapters"}
        drafts = [r for r in backend.requests if r.task == "draft"]
        assert [d.context["plan"]["title"] for d in drafts] == [
            "The Last Crossing",
            "Ice at the Landing",
            "The Lock-House",
        ]
        first = drafts[0].context
        assert first["plan"]["summary"] == "Edda takes the ferry out alone for the first time."
        voices = {c["name"]: c["voice"] for d in drafts for c in d.context["cast"]}
        assert voices.get("Edda Voss") == "dry, exact, few words"
        assert set(project.artefacts["characters"].names()) == {
            "Edda Voss",
            "Piet Amsel",
            "Old Mareike",
        }
        # a forced rerun is the way to have it regenerated
        assert project.run_stage("characters", force=True).wait(60) is JobState.SUCCEEDED
        assert (base / "03-characters.json").read_bytes() != given["03-characters.json"]
    finally:
        project.close()


# -- voice -----------------------------------------------------------------------------------

TERSE = (
    "I woke. The river was loud. I'm not proud of it, but I didn't go down. "
    "“Stay,” she said. I stayed. The boat knocked at the jetty all night. "
) * 30
ORNATE = (
    "Throughout the interminable afternoon, the magnificent, melancholy procession of barges "
    "continued its deliberate passage beneath the venerable arches, while the assembled "
    "townspeople contemplated, with considerable apprehension, the extraordinary circumstances "
    "that had precipitated their gathering. "
) * 30


def test_voice_profile_measures_and_describes_the_samples() -> None:
    profile = voice_profile([TERSE])
    f = profile.features
    assert f.pov == "first person" and f.tense == "past"
    assert f.sentence_words < 8 and f.contractions > 1.0 and f.dialogue_share > 0.0
    assert "First person, past tense" in profile.description and "Short" in profile.description
    assert chapter_drift(profile, TERSE) == 0.0
    assert chapter_drift(profile, ORNATE) > 0.5 > chapter_drift(profile, TERSE[: len(TERSE) // 2])


def test_style_samples_reach_the_draft_and_revision_prompts(tmp_path: Path) -> None:
    sample = write(tmp_path, "sample.md", TERSE)
    backend = RecordingBackend()
    project = nk.new_project(
        tmp_path / "novel",
        premise=PREMISE,
        chapters=2,
        words_per_chapter=300,
        style_samples=[sample],
        backend_instance=backend,
    )
    try:
        profile = read_voice(project.root)
        assert profile is not None and profile.source == [str(sample)]
        assert project.start().wait(60) is JobState.SUCCEEDED
        for task in ("draft", "revision"):
            carried = [r.context.get("voice") for r in backend.requests if r.task == task]
            assert carried and all(
                v is not None and v["description"] == profile.description for v in carried
            )
        # a new voice makes the drafts stale, as any input does
        drafts = project.root / "artefacts" / "07-draft" / "ch01.md"
        assert drafts.exists()
        (project.root / "artefacts" / "00-voice.json").write_text(
            voice_profile([ORNATE]).model_dump_json(), encoding="utf-8"
        )
        states = {s.name: s.state.value for s in project.stages}
        assert states["draft"] == "stale" and states["revision"] == "stale"
    finally:
        project.close()


def test_an_imported_manuscript_gives_its_own_voice(tmp_path: Path) -> None:
    source = write(tmp_path, "book.md", f"# One\n\n{TERSE}\n\n# Two\n\n{TERSE}\n")
    project = nk.import_manuscript(source, tmp_path / "novel")
    try:
        profile = read_voice(project.root)
        assert profile is not None and profile.features.pov == "first person"
        job = project.extend(chapters=1)
        assert job.wait(60) is JobState.SUCCEEDED
    finally:
        project.close()


# -- sequels ---------------------------------------------------------------------------------


def test_sequel_carries_book_ones_cast_world_and_threads(tmp_path: Path) -> None:
    one = nk.new_project(tmp_path / "one", premise=PREMISE, chapters=3, words_per_chapter=300)
    try:
        assert one.start().wait(60) is JobState.SUCCEEDED
        cast = one.artefacts["characters"]
        gone = cast.characters[1].name
        dead = [
            c.model_copy(update={"status": "dead"}) if c.name == gone else c
            for c in cast.characters
        ]
        one.artefacts["characters"] = cast.model_copy(update={"characters": dead})
        backend = RecordingBackend()
        two = nk.new_project(
            tmp_path / "two",
            premise="Ten years on, the keeper's son finds the same letter in a bottle.",
            chapters=2,
            words_per_chapter=300,
            sequel_of=one,
            backend_instance=backend,
        )
        try:
            carried = two.artefacts["characters"]
            assert carried.names() == cast.names()
            assert next(c for c in carried.characters if c.name == gone).status == "dead"
            assert all("At the end of" in c.description for c in carried.characters)
            assert two.artefacts["world"] == one.artefacts["world"]
            series = json.loads((two.root / "artefacts" / "00-series.json").read_text())
            book = series["books"][0]
            assert book["threads"] and book["summary"].startswith("1. ")
            assert book["end_states"][gone].startswith("dead")
            assert two.start().wait(60) is JobState.SUCCEEDED
            assert not {r.task for r in backend.requests} & {"characters", "world"}
            for task in ("draft", "continuity"):
                seen = [r.context.get("series") for r in backend.requests if r.task == task]
                assert seen and all(s == series for s in seen)
        finally:
            two.close()
    finally:
        one.close()


def test_sequel_continuity_flags_a_character_who_died_in_book_one(tmp_path: Path) -> None:
    one = nk.new_project(tmp_path / "one", premise=PREMISE, chapters=2, words_per_chapter=300)
    try:
        assert one.start().wait(60) is JobState.SUCCEEDED
        cast = one.artefacts["characters"]
        gone = cast.characters[-1].name
        dead = [
            c.model_copy(update={"status": "dead"}) if c.name == gone else c
            for c in cast.characters
        ]
        one.artefacts["characters"] = cast.model_copy(update={"characters": dead})
        two = nk.new_project(
            tmp_path / "two",
            premise="Years later, the ferry runs again and the daughter keeps a ledger of the dead.",
            chapters=2,
            words_per_chapter=300,
            sequel_of=one,
        )
        try:
            job = two.start()
            assert job.wait(60) is JobState.SUCCEEDED, job.status.error
            draft = two.artefacts["draft"][1]
            first = gone.split()[0]
            two.artefacts["draft"][1] = draft.model_copy(
                update={"text": f"{first} walked into the kitchen.\n\n{draft.text}"}
            )
            assert two.run_stage("continuity", chapters=[1]).wait(60) is JobState.SUCCEEDED
            kinds = {f.kind for f in two.artefacts["continuity"][1].findings}
            assert "dead-character-acts" in kinds
        finally:
            two.close()
    finally:
        one.close()


def test_extend_a_generated_novel_keeps_its_chapters(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "novel", premise=PREMISE, chapters=3, words_per_chapter=300)
    try:
        assert project.start().wait(60) is JobState.SUCCEEDED
        base = project.root / "artefacts"
        before = {
            str(p.relative_to(base)): p.read_bytes() for p in base.rglob("ch0*") if p.is_file()
        }
        outline = project.artefacts["chapters"].chapters
        assert project.extend(chapters=2).wait(60) is JobState.SUCCEEDED
        assert {rel: (base / rel).read_bytes() for rel in before} == before
        grown = project.artefacts["chapters"].chapters
        assert grown[:3] == outline and [p.number for p in grown] == [1, 2, 3, 4, 5]
        assert len(project.manuscript().chapters) == 5
        with pytest.raises(nk.PipelineError, match="whole number"):
            project.extend(chapters=0)
    finally:
        project.close()


class FailingPlanner(RecordingBackend):
    """Answers like the offline backend, but refuses to plan an extension."""

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        if request.task == "extend-outline":
            raise nk.BackendConfigError("the planner is out of order")
        async for chunk in super().stream(request):
            yield chunk


def test_a_failed_extension_leaves_the_novel_as_it_was(tmp_path: Path) -> None:
    backend = FailingPlanner()
    project = nk.new_project(
        tmp_path / "novel",
        premise=PREMISE,
        chapters=2,
        words_per_chapter=300,
        backend_instance=backend,
    )
    try:
        assert project.start().wait(60) is JobState.SUCCEEDED
        outline = (project.root / "artefacts" / "05-chapters.json").read_bytes()
        with pytest.raises(nk.ProjectError, match="planner is out of order.*Run extend again"):
            project.extend(chapters=2)
        assert project.config.chapters == 2
        assert (project.root / "artefacts" / "05-chapters.json").read_bytes() == outline
        backend.requests.clear()
        assert project.start().wait(60) is JobState.SUCCEEDED
        assert backend.requests == [], "nothing was stale or redone after the failed extension"
    finally:
        project.close()
