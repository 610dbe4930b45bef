"""The offline backend: deterministic, free, needs nothing, and writes from the story material.

It reads the structured ``context`` of each request (not the prompt text), so what it writes
uses the project's own characters, places and beats. The same seed gives the same novel.
``tokens_per_second`` and ``latency`` slow it down for demos and control tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from .._motifs import motifs
from ._offline_words import FIRST_NAMES, FLAWS, PLACE_FIRST, PLACE_SECOND, ROLES, TONES, VOICES
from ._options import check_options
from ._prose import write_chapter
from .base import Chunk, Delta, Done, Request, Usage, count_tokens

__all__ = ["OfflineBackend", "respond"]


def _rng(seed: int, variant: str, *parts: object) -> random.Random:
    blob = json.dumps([seed, variant, *parts], sort_keys=True, default=str)
    return random.Random(int(hashlib.sha256(blob.encode()).hexdigest()[:16], 16))


def _premise(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    premise = ctx["premise"]
    found = motifs(premise)
    return {
        "logline": premise if len(premise) < 240 else premise[:237] + "...",
        "genre": ctx.get("genre", "literary fiction"),
        "themes": [f"the cost of {found[0]}", "loyalty against truth", "what a place remembers"],
        "tone": rng.choice(TONES),
        "pov": "third person limited",
        "tense": "past",
        "premise": premise,
    }


def _world(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    found = motifs(ctx["premise"]["premise"])
    names = rng.sample([f"{a} {b}" for a in PLACE_FIRST for b in PLACE_SECOND], 5)
    return {
        "setting": f"A weathered coastal town where {found[0]} shapes every life",
        "era": rng.choice(("the present day", "the 1920s", "a near future", "the 1970s")),
        "locations": [
            {
                "name": name,
                "description": f"{name}, where the {rng.choice(found)} is never far away",
            }
            for name in names
        ],
        "rules": [
            f"Nobody speaks openly about the {found[0]}",
            "The tide decides when the causeway can be crossed",
        ],
        "history": f"A generation ago the town lost something to the {found[-1]}, and never said so.",
    }


def _characters(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    count = max(4, min(7, 3 + ctx.get("chapters", 12) // 6))
    names = rng.sample(FIRST_NAMES, count)
    cast = []
    for i, name in enumerate(names):
        role = ROLES[i] if i < len(ROLES) else "ally"
        cast.append(
            {
                "name": name,
                "role": role,
                "description": f"{name.split()[0]} is the {role} of the story",
                "goal": rng.choice(
                    (
                        "to find the truth",
                        "to keep the family safe",
                        "to leave town",
                        "to win back respect",
                        "to finish what was started",
                    )
                ),
                "flaw": rng.choice(FLAWS),
                "arc": rng.choice(
                    (
                        "learns to trust",
                        "lets go of the past",
                        "chooses honesty",
                        "finds courage",
                        "accepts a loss",
                    )
                ),
                "voice": rng.choice(VOICES),
                "status": "alive",
                "relationships": [
                    {"name": names[0] if i else names[1], "kind": "sibling" if i == 1 else "friend"}
                ],
            }
        )
    return {"characters": cast}


def _structure(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    cast = ctx["cast"]
    hero, foe = cast[0], cast[1]
    found = motifs(ctx["premise"])
    return {
        "central_conflict": f"{hero} must uncover the truth about the {found[0]} before {foe} buries it",
        "acts": [
            {
                "number": 1,
                "name": "The Call",
                "summary": f"{hero}'s ordinary life cracks open.",
                "beats": [
                    f"{hero} finds the {found[0]}",
                    f"{foe} warns {hero} off",
                    "a promise is made",
                ],
            },
            {
                "number": 2,
                "name": "The Deepening",
                "summary": "Every answer costs something.",
                "beats": [
                    f"{hero} follows the trail to {ctx['locations'][1]}",
                    "an ally wavers",
                    f"{foe} strikes back",
                    "the midpoint reversal",
                ],
            },
            {
                "number": 3,
                "name": "The Reckoning",
                "summary": "The truth comes out, at a price.",
                "beats": [f"{hero} confronts {foe}", "the town chooses", "a quiet new morning"],
            },
        ],
        "ending": f"{hero} tells the truth about the {found[0]} and stays",
    }


def _chapters(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    n, words = ctx["chapters"], ctx["words_per_chapter"]
    beats = [b for act in ctx["acts"] for b in act["beats"]]
    cast, places = ctx["cast"], ctx["locations"]
    found = motifs(ctx["premise"])
    adjectives = ("Low", "Long", "Salt", "Last", "Small", "Bright", "Hidden", "Broken", "Quiet")
    plans = []
    for i in range(1, n + 1):
        beat = beats[min(len(beats) - 1, (i - 1) * len(beats) // n)]
        pov = cast[0] if i % 3 else cast[min(2, len(cast) - 1)]
        place = places[(i * 7 + rng.randrange(3)) % len(places)]
        noun = found[(i - 1) % len(found)]
        plans.append(
            {
                "number": i,
                "title": f"The {rng.choice(adjectives)} {noun.capitalize()}",
                "summary": f"In {place}, {pov} faces this: {beat}.",
                "pov": pov,
                "location": place,
                "beats": [beat, f"{pov} pays a price at {place}"],
                "target_words": words,
                # rising to the climax in the last chapter but one, easing in the last
                "tension": min(10, 2 + (8 * i) // max(1, n - 1)) if i < n or n == 1 else 6,
            }
        )
    return {"chapters": plans}


def _scenes(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    plan = ctx["plan"]
    cast, places = ctx["cast"], ctx["locations"]
    count = 2 if plan["target_words"] < 1500 else 3
    scenes = []
    for i in range(1, count + 1):
        others = [c for c in cast if c != plan["pov"]]
        companion = others[(plan["number"] + i) % len(others)] if others else plan["pov"]
        scenes.append(
            {
                "number": i,
                "goal": f"{plan['pov']} wants to settle {plan['beats'][0]}",
                "conflict": f"{companion} stands in the way",
                "outcome": rng.choice(("a hard-won answer", "a new question", "a loss", "a truce")),
                "location": plan["location"]
                if i == 1
                else places[(plan["number"] + i) % len(places)],
                "cast": [plan["pov"], companion],
                "beat": plan["beats"][(i - 1) % len(plan["beats"])],
            }
        )
    return {"chapter": plan["number"], "scenes": scenes}


def _summary(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    plan = ctx["plan"]
    names = sorted({name for scene in ctx["scenes"] for name in scene["cast"]})
    return {
        "chapter": plan["number"],
        "summary": f"{plan['summary']} "
        + " ".join(s["outcome"].capitalize() + "." for s in ctx["scenes"]),
        "characters": names,
        "ending": ctx["ending"],
    }


def _metadata(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    found = motifs(ctx["premise"])
    title = ctx.get("title") or f"The {found[0].capitalize()} of {ctx['locations'][0]}"
    return {
        "title": title,
        "subtitle": "",
        "blurb": f"{ctx['premise']} A novel of {ctx['genre']}.",
        "chapter_titles": ctx["chapter_titles"],
        "author": ctx["author"],
        "language": ctx["language"],
        "keywords": found[:5],
    }


def _polish(text: str) -> str:
    """Line edit: drop a sentence that repeats one already in the chapter."""
    seen: set[str] = set()
    paragraphs = []
    for paragraph in text.split("\n\n"):
        sentences = re.split(r"(?<=[.!?])\s+", paragraph)
        kept = [s for s in sentences if s.lower() not in seen or len(s) < 25]
        seen.update(s.lower() for s in kept)
        paragraphs.append(" ".join(kept) if kept else paragraph)
    return "\n\n".join(paragraphs)


def _revise(ctx: dict[str, Any]) -> str:
    text: str = ctx["text"]
    for finding in ctx.get("findings", []):
        wrong, right = finding.get("wrong"), finding.get("right")
        if wrong and right:
            text = re.sub(rf"\b{re.escape(wrong)}\b", right, text)
    return text


_JSON_TASKS = {
    "premise": _premise,
    "world": _world,
    "characters": _characters,
    "structure": _structure,
    "chapters": _chapters,
    "scenes": _scenes,
    "summary": _summary,
    "metadata": _metadata,
}


def respond(task: str, context: dict[str, Any], seed: int, variant: str = "") -> str:
    """The full response text the offline backend gives for ``task`` with this material."""
    rng = _rng(seed, variant, task, context.get("unit", ""))
    if task in _JSON_TASKS:
        return json.dumps(_JSON_TASKS[task](context, rng), ensure_ascii=False, indent=1)
    if task in ("draft", "extend"):
        return write_chapter(context, rng, target=context["target_words"])
    if task == "continuity":
        return json.dumps({"chapter": context["chapter"], "findings": []})
    if task == "revision":
        return _revise(context)
    if task == "polish":
        return _polish(context["text"])
    if task.startswith(("extract-", "extend-")):  # importing a manuscript, extending a novel
        from ..imports._offline import answer

        imported = answer(task, context, rng)
        if imported is not None:
            return imported
    return _generic(task, context, rng)


def _generic(task: str, context: dict[str, Any], rng: random.Random) -> str:
    """A short deterministic text for a task of a custom stage, built from its material."""
    words = [str(v) for v in context.values() if isinstance(v, str | int | float)]
    words += [
        str(x) for v in context.values() if isinstance(v, list) for x in v if isinstance(x, str)
    ]
    picked = rng.sample(words, min(3, len(words))) if words else [task]
    return f"{task.capitalize()}: " + "; ".join(picked) + "."


@dataclass
class OfflineBackend:
    """Deterministic local writer. ``tokens_per_second=0`` means as fast as possible."""

    tokens_per_second: float = 0.0
    latency: float = 0.0
    chunk_words: int = 8
    name: str = "offline"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> OfflineBackend:
        allowed: dict[str, type | tuple[type, ...]] = {
            "tokens_per_second": (int, float),
            "latency": (int, float),
            "chunk_words": int,
        }
        check_options(options, allowed, "offline")
        backend = cls(**options)
        if backend.tokens_per_second < 0 or backend.latency < 0 or backend.chunk_words < 1:
            raise ConfigError(
                "backend_options: tokens_per_second and latency must be >= 0, chunk_words >= 1"
            )
        return backend

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        text = respond(request.task, request.context, request.seed, request.variant)
        if self.latency:
            await asyncio.sleep(self.latency)
        words = re.findall(r"\S+\s*", text)
        for start in range(0, len(words), self.chunk_words):
            piece = "".join(words[start : start + self.chunk_words])
            if self.tokens_per_second:
                await asyncio.sleep(count_tokens(piece) / self.tokens_per_second)
            yield Delta(piece)
        yield Done(Usage(request.prompt_tokens, count_tokens(text)), "stop", "offline")

    async def aclose(self) -> None:
        return None
