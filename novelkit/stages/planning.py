"""Stages 1–6: premise, world, characters, structure, chapter outline, scenes."""

from __future__ import annotations

from typing import Any

from .. import _artefacts as a
from .._pipeline import Outputs, Stage
from .._runner import UnitContext
from ..llm.offline import motifs


def names(cast: a.Cast) -> list[str]:
    return cast.names()


def places(world: a.World) -> list[str]:
    return [loc.name for loc in world.locations]


class Premise(Stage):
    name = "premise"
    description = "Logline, genre, themes, tone, point of view and tense from the premise."
    path = "01-premise.json"
    model = a.Premise
    config_keys = ("premise", "genre", "style", "chapters")
    prompt = (
        "Develop this premise into a logline, genre, three themes, tone, point of view and tense. "
        "Keep the author's premise verbatim in the 'premise' field."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        c = ctx.config
        context = {"premise": c.premise, "genre": c.genre, "style": c.style, "chapters": c.chapters}
        return {self.path: await ctx.json("premise", context, a.Premise)}


class World(Stage):
    name = "world"
    description = "Setting, era, locations, rules and history of the story world."
    inputs = ("premise",)
    path = "02-world.json"
    model = a.World
    prompt = (
        "Build the story world: setting, era, four to six named locations, its rules and history."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        return {self.path: await ctx.json("world", {"premise": premise.model_dump()}, a.World)}


class Characters(Stage):
    name = "characters"
    description = "The cast: goals, flaws, arcs, voices and relationships."
    inputs = ("premise", "world")
    path = "03-characters.json"
    model = a.Cast
    config_keys = ("chapters",)
    prompt = (
        "Create the cast for a {chapters}-chapter novel: for each character a name, role, "
        "description, goal, flaw, arc, voice, status and relationships."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        world: a.World = ctx.read("world", shared=True)
        context = {
            "premise": premise.model_dump(),
            "world": {"setting": world.setting, "era": world.era, "locations": places(world)},
            "chapters": ctx.config.chapters,
        }
        return {self.path: await ctx.json("characters", context, a.Cast)}


class Structure(Stage):
    name = "structure"
    description = "Acts and key beats, the central conflict and the ending."
    inputs = ("premise", "world", "characters")
    path = "04-structure.json"
    model = a.Structure
    prompt = "Shape the story into three acts with key beats, a central conflict and an ending."

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        context = {
            "premise": premise.premise,
            "logline": premise.logline,
            "cast": names(ctx.read("characters", shared=True)),
            "locations": places(ctx.read("world", shared=True)),
        }
        return {self.path: await ctx.json("structure", context, a.Structure)}


class Chapters(Stage):
    name = "chapters"
    description = "The chapter outline: title, summary, POV, beats and target words per chapter."
    inputs = ("premise", "world", "characters", "structure")
    path = "05-chapters.json"
    model = a.Outline
    config_keys = ("chapters", "words_per_chapter")
    prompt = (
        "Outline exactly {chapters} chapters. For each: number, title, summary, POV character, "
        "location, beats, and target_words = {words_per_chapter}."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        structure: a.Structure = ctx.read("structure", shared=True)
        context = {
            "premise": premise.premise,
            "acts": [act.model_dump() for act in structure.acts],
            "ending": structure.ending,
            "cast": names(ctx.read("characters", shared=True)),
            "locations": places(ctx.read("world", shared=True)),
            "chapters": ctx.config.chapters,
            "words_per_chapter": ctx.config.words_per_chapter,
        }
        outline = await ctx.json("chapters", context, a.Outline)
        numbers = [plan.number for plan in outline.chapters]
        if numbers != list(range(1, len(numbers) + 1)):
            outline = a.Outline(
                chapters=[
                    p.model_copy(update={"number": i}) for i, p in enumerate(outline.chapters, 1)
                ]
            )
        return {self.path: outline}


class Scenes(Stage):
    name = "scenes"
    description = "Scenes of each chapter with goal, conflict, outcome and cast."
    inputs = ("characters", "world", "chapters")
    per_chapter = True
    parallel = True
    path = "06-scenes/{ch}.json"
    model = a.ChapterScenes
    prompt = (
        "Break chapter {unit} into two to four scenes, each with a goal, conflict, outcome, "
        "location, cast (names from the material) and the beat it serves."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        outline: a.Outline = ctx.read("chapters", shared=True)
        plan = outline.chapter(ctx.chapter)
        context: dict[str, Any] = {
            "unit": unit,
            "plan": plan.model_dump(),
            "cast": names(ctx.read("characters", shared=True)),
            "locations": places(ctx.read("world", shared=True)),
        }
        scenes = await ctx.json("scenes", context, a.ChapterScenes)
        if scenes.chapter != ctx.chapter:
            scenes = scenes.model_copy(update={"chapter": ctx.chapter})
        return {self.output_paths(unit)[0]: scenes}


__all__ = ["Chapters", "Characters", "Premise", "Scenes", "Structure", "World", "motifs"]
