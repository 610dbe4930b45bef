"""Stages that extract the story bible (stages 1–6) from imported chapters.

They stand in for the built-in stages under the same names, so their artefacts land where the
built-in ones would and every later stage reads them as usual. They run as an ordinary job
(memoised calls, pause, resume after a crash) in this order: each chapter's digest and summary
first, then premise, world, cast and structure from those digests, then the outline and scenes
built from the digests without further calls.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import _artefacts as a
from .._answers import INDEX, Shape
from .._pipeline import Outputs, Stage
from .._runner import UnitContext
from ..llm.base import count_tokens
from ._text import excerpt, places, proper_names, sentences

__all__ = ["ChapterDigest", "SOURCE", "extraction_stages"]

SOURCE = "00-import"
ENDING_WORDS = 150


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SceneDigest(_Schema):
    goal: str
    conflict: str
    outcome: str
    location: str
    cast: list[str] = Field(min_length=1)
    beat: str


class ChapterDigest(_Schema):
    """What one imported chapter holds: the outline entry, scenes and summary it implies."""

    summary: str = Field(min_length=1)
    characters: list[str] = Field(default_factory=list)
    pov: str
    location: str
    beats: list[str] = Field(min_length=1)
    scenes: list[SceneDigest] = Field(min_length=1)


def source_path(unit: str) -> str:
    return f"{SOURCE}/{unit}.md"


def _budget_words(ctx: UnitContext, reserve: int = 900) -> int:
    return max(300, int((ctx.config.context_tokens - reserve) * 0.7))


def _fit_list(context: dict[str, Any], key: str, budget: int) -> dict[str, Any]:
    """Thin ``context[key]`` evenly (keeping first and last) until the context fits."""
    while count_tokens(str(context)) > budget and len(context[key]) > 2:
        items = context[key]
        context[key] = [items[0], *items[1:-1:2], items[-1]]
    return context


class ImportedDraft(Stage):
    name = "draft"
    description = "Imported chapters: each kept as written, with a digest and a summary."
    per_chapter = True
    parallel = True
    path = "07-draft/{ch}.md"
    extra_paths = ("07-draft/{ch}.summary.json", f"{SOURCE}/{{ch}}.digest.json")
    model = a.ChapterText
    version = "import-1"
    config_keys = ("context_tokens",)
    prompt = (
        "Read imported chapter {unit} (its text is in the material, shortened with […] if long). "
        "Summarise it in two or three sentences; list the characters who appear; name the "
        "point-of-view character and the main location; give its beats; and break it into its "
        "scenes (goal, conflict, outcome, location, cast, beat). Use only names from the text."
    )

    def extra_inputs(self, unit: str) -> list[str]:
        return [source_path(unit)]

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        raw = ctx.paths[source_path(unit)].read_text(encoding="utf-8")
        chapter = a.ChapterText.from_markdown(ctx.chapter, raw)
        context: dict[str, Any] = {
            "unit": unit,
            "chapter": ctx.chapter,
            "title": chapter.title,
            "words": chapter.words,
            "names": [n for n, _ in proper_names(chapter.text)],
            "places": [p for p, _ in places(chapter.text)],
            "text": excerpt(chapter.text, _budget_words(ctx)),
        }
        shape = Shape(
            items={
                "scenes": (1, 6),
                "scenes[].cast": (1, 6),
                "characters": (0, 12),
                "beats": (1, 6),
            }
        )
        digest = await ctx.json("extract-chapter", context, ChapterDigest, shape)
        found: list[str] = context["places"]
        places_seen = {digest.location, *found, *(s.location for s in digest.scenes)}
        # a small model lists places among the characters: keep the people only
        digest = digest.model_copy(
            update={"characters": [n for n in digest.characters if n not in places_seen]}
        )
        summary = a.ChapterSummary(
            chapter=ctx.chapter,
            summary=digest.summary,
            characters=digest.characters,
            ending=" ".join(chapter.text.split()[-ENDING_WORDS:]),
        )
        paths = self.output_paths(unit)
        return {paths[0]: chapter, paths[1]: summary, paths[2]: digest}


def _digests(ctx: UnitContext) -> list[tuple[int, ChapterDigest]]:
    out: list[tuple[int, ChapterDigest]] = []
    for n in range(1, ctx.config.chapters + 1):  # an import sets chapters to what it found
        out.append((n, ctx.read("draft", n, index=2, model=ChapterDigest, shared=True)))
    return out


def _book(ctx: UnitContext) -> dict[str, Any]:
    """What every bible extraction shares: chapter summaries, names and places, an opening."""
    digests = _digests(ctx)
    names: dict[str, int] = {}
    where: dict[str, int] = {}
    for _, d in digests:
        for name in d.characters:
            names[name] = names.get(name, 0) + 1
        where[d.location] = where.get(d.location, 0) + 1
    opening = ""
    if digests:
        first = ctx.read("draft", digests[0][0], shared=True)
        opening = " ".join(first.text.split()[:300])
    context: dict[str, Any] = {
        "title": ctx.config.title or "",
        "premise": ctx.config.premise
        if not ctx.config.premise.startswith("Imported from ")
        else "",
        "genre": ctx.config.genre,
        "chapters": len(digests),
        "summaries": [f"{n}. {d.summary}" for n, d in digests],
        "names": sorted(names, key=lambda k: (-names[k], k))[:16],
        "locations": sorted(where, key=lambda k: (-where[k], k))[:10],
        "opening": opening,
    }
    return _fit_list(context, "summaries", ctx.config.context_tokens - 600)


class ImportedPremise(Stage):
    name = "premise"
    description = "Logline, genre, themes, tone, point of view and tense, read from the text."
    inputs = ("draft",)
    path = "01-premise.json"
    model = a.Premise
    version = "import-1"
    prompt = (
        "From the imported novel's chapter summaries and opening, state its logline, genre, "
        "three themes, tone, point of view and tense. Put the author's premise in 'premise' "
        "(when the material gives none, write one from the story)."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        context = _book(ctx)
        fixed = {"premise": context["premise"]} if context["premise"] else {}
        shape = Shape(items={"themes": (1, 5)}, fixed=fixed)
        return {self.path: await ctx.json("extract-premise", context, a.Premise, shape)}


class ImportedWorld(Stage):
    name = "world"
    description = "The story world as the imported text shows it."
    inputs = ("draft", "premise")
    path = "02-world.json"
    model = a.World
    version = "import-1"
    prompt = (
        "From the imported novel's summaries, describe its world: setting, era, the named "
        "locations (only those in the material), the rules it follows and its history."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        context = {**_book(ctx), "logline": premise.logline}
        shape = Shape(items={"locations": (1, 10), "rules": (0, 6)})
        return {self.path: await ctx.json("extract-world", context, a.World, shape)}


class ImportedCharacters(Stage):
    name = "characters"
    description = "The cast as the imported text shows it, with their state at its end."
    inputs = ("draft", "premise", "world")
    path = "03-characters.json"
    model = a.Cast
    version = "import-1"
    prompt = (
        "From the imported novel, list its characters (names exactly as in the material): role, "
        "description, goal, flaw, arc so far, voice, status at the end of the text (alive, dead "
        "or absent) and relationships."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        book = _book(ctx)
        mentions: dict[str, list[str]] = {}
        for n, _ in _digests(ctx)[:12]:
            text = ctx.read("draft", n, shared=True).text
            for s in sentences(text):
                for name in book["names"]:
                    first = name.split()[0]
                    if first in s and len(mentions.setdefault(name, [])) < 2:
                        mentions[name].append(s[:240])
        context = {**book, "mentions": mentions}
        world: a.World = ctx.read("world", shared=True)
        places = {loc.name for loc in world.locations}

        def people_only(cast: a.Cast) -> list[str]:
            return [
                f"characters: {name!r} is a location of the world, not a character"
                for name in cast.names()
                if name in places
            ] + [
                f"characters: {name!r} is named twice; give each character one entry"
                for name in {n for n in cast.names() if cast.names().count(n) > 1}
            ]

        shape = Shape(
            items={"characters": (1, 16), "characters[].relationships": (0, 6)},
            check=people_only,
        )
        return {self.path: await ctx.json("extract-characters", context, a.Cast, shape)}


class ImportedStructure(Stage):
    name = "structure"
    description = "Acts and beats of the imported story so far."
    inputs = ("draft", "premise", "characters")
    path = "04-structure.json"
    model = a.Structure
    version = "import-1"
    prompt = (
        "From the imported novel's summaries, describe its shape so far: the central conflict, "
        "its acts with their beats, and where the ending is heading."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        cast: a.Cast = ctx.read("characters", shared=True)
        context = {**_book(ctx), "cast": cast.names()}
        shape = Shape(
            items={"acts": (1, 5), "acts[].beats": (1, 8)}, fixed={"acts[].number": INDEX}
        )
        return {self.path: await ctx.json("extract-structure", context, a.Structure, shape)}


class ImportedOutline(Stage):
    name = "chapters"
    description = "The outline of the imported chapters, from their digests."
    inputs = ("draft", "structure")
    path = "05-chapters.json"
    model = a.Outline
    version = "import-1"
    calls_llm = False

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        plans = []
        for n, digest in _digests(ctx):
            chapter: a.ChapterText = ctx.read("draft", n, shared=True)
            plans.append(
                a.ChapterPlan(
                    number=n,
                    title=chapter.title or f"Chapter {n}",
                    summary=digest.summary,
                    pov=digest.pov,
                    location=digest.location,
                    beats=digest.beats,
                    target_words=max(50, chapter.words),
                )
            )
        return {self.path: a.Outline(chapters=plans)}


class ImportedScenes(Stage):
    name = "scenes"
    description = "The scenes of each imported chapter, from its digest."
    inputs = ("draft", "chapters")
    per_chapter = True
    parallel = True
    path = "06-scenes/{ch}.json"
    model = a.ChapterScenes
    version = "import-1"
    calls_llm = False

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        digest: ChapterDigest = ctx.read("draft", ctx.chapter, index=2, model=ChapterDigest)
        scenes = [a.Scene(number=i, **s.model_dump()) for i, s in enumerate(digest.scenes, 1)]
        return {self.output_paths(unit)[0]: a.ChapterScenes(chapter=ctx.chapter, scenes=scenes)}


def extraction_stages() -> list[Stage]:
    return [
        ImportedDraft(),
        ImportedPremise(),
        ImportedWorld(),
        ImportedCharacters(),
        ImportedStructure(),
        ImportedOutline(),
        ImportedScenes(),
    ]
