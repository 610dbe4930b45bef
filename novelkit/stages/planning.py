"""Stages 1–6: premise, world, characters, structure, chapter outline, scenes."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from .. import _artefacts as a
from .._answers import INDEX, Shape
from .._motifs import motifs
from .._pipeline import Outputs, Stage
from .._runner import UnitContext

POINTS_OF_VIEW = (
    "first person",
    "third person limited",
    "third person omniscient",
    "second person",
)


def names(cast: a.Cast) -> list[str]:
    return cast.names()


def places(world: a.World) -> list[str]:
    return [loc.name for loc in world.locations]


class Premise(Stage):
    name = "premise"
    version = "2"  # answers shaped by _answers.Shape
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
        shape = Shape(
            items={"themes": (1, 5)},
            choices={"pov": POINTS_OF_VIEW},
            fixed={"premise": c.premise},
        )
        return {self.path: await ctx.json("premise", context, a.Premise, shape)}


class World(Stage):
    name = "world"
    version = "2"  # answers shaped by _answers.Shape
    description = "Setting, era, locations, rules and history of the story world."
    inputs = ("premise",)
    path = "02-world.json"
    model = a.World
    prompt = (
        "Build the story world: setting, era, four to six named locations, its rules and history."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        shape = Shape(items={"locations": (4, 6), "rules": (0, 5)}, repair=_distinct_places)
        world = await ctx.json("world", {"premise": premise.model_dump()}, a.World, shape)
        return {self.path: world}


class Characters(Stage):
    name = "characters"
    version = "2"  # answers shaped by _answers.Shape
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
        shape = Shape(
            items={"characters": (3, 8), "characters[].relationships": (0, 4)},
            repair=_distinct_names,
            check=functools.partial(_at_least, "characters", 2),
        )
        return {self.path: await ctx.json("characters", context, a.Cast, shape)}


class Structure(Stage):
    name = "structure"
    version = "2"  # answers shaped by _answers.Shape
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
        shape = Shape(
            items={"acts": (3, 3), "acts[].beats": (1, 4)}, fixed={"acts[].number": INDEX}
        )
        return {self.path: await ctx.json("structure", context, a.Structure, shape)}


class Chapters(Stage):
    name = "chapters"
    version = "2"  # answers shaped by _answers.Shape
    description = "The chapter outline: title, summary, POV, beats and target words per chapter."
    inputs = ("premise", "world", "characters", "structure")
    path = "05-chapters.json"
    model = a.Outline
    config_keys = ("chapters", "words_per_chapter")
    prompt = (
        "Outline exactly {chapters} chapters, in story order. For each: a title, a summary of what "
        "happens, the POV character (a name from the cast), the location (one of the locations), "
        "the beats, and its tension from 1 (calm) to 10 (the climax)."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        structure: a.Structure = ctx.read("structure", shared=True)
        cast, locations = (
            names(ctx.read("characters", shared=True)),
            places(ctx.read("world", shared=True)),
        )
        context = {
            "premise": premise.premise,
            "acts": [act.model_dump() for act in structure.acts],
            "ending": structure.ending,
            "cast": cast,
            "locations": locations,
            "chapters": ctx.config.chapters,
            "words_per_chapter": ctx.config.words_per_chapter,
        }
        shape = Shape(
            items={
                "chapters": (ctx.config.chapters, ctx.config.chapters),
                "chapters[].beats": (1, 4),
            },
            choices={
                "chapters[].pov": tuple(cast),
                "chapters[].location": tuple(locations),
            },
            fixed={
                "chapters[].number": INDEX,
                "chapters[].target_words": ctx.config.words_per_chapter,
            },
        )
        return {self.path: await ctx.json("chapters", context, a.Outline, shape)}


class Scenes(Stage):
    name = "scenes"
    version = "2"  # answers shaped by _answers.Shape
    description = "Scenes of each chapter with goal, conflict, outcome and cast."
    inputs = ("characters", "world", "chapters")
    per_chapter = True
    parallel = True
    path = "06-scenes/{ch}.json"
    model = a.ChapterScenes
    prompt = (
        "Break chapter {unit} into two to four scenes, each with a goal, conflict, outcome, "
        "location (one of the locations), cast (names from the cast) and the beat it serves."
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
        shape = Shape(
            items={"scenes": (2, 4), "scenes[].cast": (1, 4)},
            choices={
                "scenes[].cast[]": tuple(context["cast"]),
                "scenes[].location": tuple(context["locations"]),
            },
            fixed={"chapter": ctx.chapter, "scenes[].number": INDEX},
        )
        scenes = await ctx.json("scenes", context, a.ChapterScenes, shape)
        return {self.output_paths(unit)[0]: scenes}


def _distinct_names(cast: a.Cast) -> a.Cast:
    """One character a name (a small model repeats itself); relationships point at members
    of the cast, not at the model's inventions."""
    characters = _first_of_each(cast.characters)
    known = {c.name for c in characters}
    return a.Cast(
        characters=[
            c.model_copy(
                update={
                    "relationships": [
                        r for r in c.relationships if r.name in known and r.name != c.name
                    ]
                }
            )
            for c in characters
        ]
    )


def _distinct_places(world: a.World) -> a.World:
    return world.model_copy(update={"locations": _first_of_each(world.locations)})


T = TypeVar("T", a.Character, a.Location)


def _first_of_each(items: list[T]) -> list[T]:
    seen: set[str] = set()
    kept = []
    for item in items:
        if item.name.casefold() not in seen:
            seen.add(item.name.casefold())
            kept.append(item)
    return kept


def _at_least(field: str, least: int, value: a.Schema) -> list[str]:
    count = len(getattr(value, field))
    if count >= least:
        return []
    return [f"{field}: only {count} distinct names; give at least {least}, each different"]


__all__ = ["Chapters", "Characters", "Premise", "Scenes", "Structure", "World", "motifs"]
