"""The offline backend's answers to the import tasks: read from the text, deterministic.

``novelkit.llm.offline.respond`` hands every ``extract-*`` and ``extend-*`` task here.
"""

from __future__ import annotations

import json
import random
from typing import Any

from .. import _artefacts as a
from .._motifs import motifs
from ._text import person, sentences, tense

__all__ = ["answer"]


def _short(sentence: str, words: int = 24) -> str:
    parts = sentence.split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")


def _chapter(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    text: str = ctx["text"]
    names: list[str] = ctx.get("names") or []
    where: list[str] = ctx.get("places") or []
    said = sentences(text)
    pov = (
        names[0]
        if names
        else ("the narrator" if person(text) == "first person" else "the protagonist")
    )
    location = where[0] if where else "unnamed place"
    scenes = []
    for scene in [s for s in text.split(a.SCENE_BREAK) if s.strip()][:6]:
        lines = sentences(scene) or [scene.strip()[:200]]
        present = [n for n in names if n.split()[0] in scene] or [pov]
        here = [p for p in where if p in scene]
        scenes.append(
            {
                "goal": _short(lines[0]),
                "conflict": _short(lines[len(lines) // 2]),
                "outcome": _short(lines[-1]),
                "location": here[0] if here else location,
                "cast": present[:4],
                "beat": _short(lines[0], 12),
            }
        )
    summary = " ".join(_short(s, 30) for s in (said[:1] + said[-1:] if len(said) > 1 else said))
    return {
        "summary": summary or ctx["title"],
        "characters": names[:8],
        "pov": pov,
        "location": location,
        "beats": [s["beat"] for s in scenes][:4],
        "scenes": scenes,
    }


def _premise(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    summaries = " ".join(ctx["summaries"])
    found = motifs(summaries or ctx.get("opening", "") or ctx.get("title", "story"))
    hero = ctx["names"][0] if ctx["names"] else "the protagonist"
    logline = ctx["premise"] or (
        f"{ctx['title'] + ': ' if ctx['title'] else ''}{hero}'s story, "
        f"{_short(ctx['summaries'][0].split('. ', 1)[-1], 30) if ctx['summaries'] else ''}"
    )
    return {
        "logline": logline.strip(),
        "genre": ctx.get("genre") or "fiction",
        "themes": [f"the weight of {w}" for w in found[:3]],
        "tone": "as the imported text sets it",
        "pov": person(ctx.get("opening", "")),
        "tense": tense(ctx.get("opening", "")),
        "premise": ctx["premise"] or logline.strip(),
    }


def _world(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    where = [p for p in ctx["locations"] if p and p != "unnamed place"] or ["unnamed place"]
    return {
        "setting": f"The world of {ctx['title'] or 'the novel'}, centred on {where[0]}",
        "era": "as in the imported text",
        "locations": [
            {"name": p, "description": f"{p}, a place the imported chapters visit"} for p in where
        ],
        "rules": [],
        "history": "",
    }


def _characters(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    names = ctx["names"] or ["The protagonist"]
    cast = []
    for i, name in enumerate(names[:10]):
        seen = ctx.get("mentions", {}).get(name, [])
        cast.append(
            {
                "name": name,
                "role": "protagonist" if i == 0 else "supporting",
                "description": _short(seen[0], 40) if seen else f"{name}, from the imported text",
                "goal": "as the imported text shows",
                "flaw": "as the imported text shows",
                "arc": "continues from the imported chapters",
                "voice": "as in the imported text",
                "status": "alive",
                "relationships": [],
            }
        )
    return {"characters": cast}


def _structure(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    summaries = ctx["summaries"] or ["1. The story begins."]
    third = max(1, -(-len(summaries) // 3))
    acts: list[dict[str, Any]] = []
    for i in range(0, len(summaries), third):
        part = summaries[i : i + third]
        acts.append(
            {
                "number": len(acts) + 1,
                "name": f"Part {len(acts) + 1}",
                "summary": _short(part[0].split(". ", 1)[-1], 30),
                "beats": [_short(s.split(". ", 1)[-1], 16) for s in part],
            }
        )
    hero = ctx["cast"][0] if ctx["cast"] else "the protagonist"
    return {
        "central_conflict": f"what {hero} faces in {ctx['title'] or 'the story'}",
        "acts": acts,
        "ending": _short(summaries[-1].split(". ", 1)[-1], 30),
    }


def _extend_outline(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    first, count, words = ctx["first"], ctx["count"], ctx["words_per_chapter"]
    cast = ctx["cast"] or ["the protagonist"]
    where = ctx["locations"] or ["the same place"]
    beats = [b for act in ctx.get("acts", []) for b in act.get("beats", [])] or ["what comes next"]
    found = motifs(" ".join(ctx.get("recent_summaries", [])) or ctx.get("premise", "") or "story")
    adjectives = ("Further", "Second", "Turning", "Open", "Late", "Long", "Far", "Last")
    plans = []
    for i in range(count):
        number = first + i
        pov = cast[i % min(len(cast), 3)]
        place = where[(number + rng.randrange(2)) % len(where)]
        beat = beats[min(len(beats) - 1, (len(beats) * (i + 1)) // (count + 1))]
        plans.append(
            {
                "number": number,
                "title": f"The {adjectives[i % len(adjectives)]} {found[i % len(found)].capitalize()}",
                "summary": f"In {place}, {pov} carries the story on: {beat}.",
                "pov": pov,
                "location": place,
                "beats": [beat, f"{pov} faces what the earlier chapters set up"],
                "target_words": words,
            }
        )
    return {"chapters": plans}


_TASKS = {
    "extract-chapter": _chapter,
    "extract-premise": _premise,
    "extract-world": _world,
    "extract-characters": _characters,
    "extract-structure": _structure,
    "extend-outline": _extend_outline,
}


def answer(task: str, context: dict[str, Any], rng: random.Random) -> str | None:
    """The JSON answer to an import task, or None for a task that is not one."""
    handler = _TASKS.get(task)
    if handler is None:
        return None
    return json.dumps(handler(context, rng), ensure_ascii=False, indent=1)
