"""The offline backend: deterministic, free, needs nothing, and writes from the story material.

It reads the structured ``context`` of each request (not the prompt text), so what it writes
uses the project's own characters, places and beats. The same seed gives the same novel.
``tokens_per_second`` and ``latency`` slow it down for demos and control tests.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from . import check_options
from ._prose import write_chapter
from .base import Chunk, Delta, Done, Request, Usage, count_tokens

__all__ = ["OfflineBackend", "respond"]

_FIRST = (
    "Mara Quill",
    "Tomas Reyes",
    "Ilse Varga",
    "Oren Blackwood",
    "Nadia Okafor",
    "Eli Marsh",
    "Juno Castellan",
    "Bram Hollis",
    "Sefa Adeyemi",
    "Wren Calloway",
    "Pilar Esteve",
    "Cass Linden",
    "Dov Aranoff",
    "Hana Moriyama",
    "Luca Ferrante",
    "Agnes Whitlock",
    "Teodor Anic",
    "Rosa Delane",
    "Kit Harrow",
    "Imre Szabo",
)
_ROLES = ("protagonist", "antagonist", "ally", "mentor", "rival", "confidant", "wildcard")
_FLAWS = (
    "cannot ask for help",
    "lies to keep the peace",
    "trusts too quickly",
    "keeps score",
    "runs from grief",
    "needs to be right",
    "hoards secrets",
    "mistakes control for care",
)
_VOICES = (
    "clipped and dry",
    "warm, full of questions",
    "formal, careful with words",
    "quick, funny, deflecting",
    "quiet, then suddenly blunt",
    "lyrical and distracted",
)
_PLACE_A = (
    "Harbor",
    "Salt",
    "Lantern",
    "Gray",
    "North",
    "Cinder",
    "Reed",
    "Iron",
    "Hollow",
    "Bell",
)
_PLACE_B = ("Street", "Point", "Market", "Row", "Yard", "Quay", "Hill", "House", "Gate", "Archive")
_TONES = ("wistful and tense", "dark but hopeful", "wry and warm", "quiet and uncanny")
_STOP = frozenset(
    "about after again their there which while where would could should these those being "
    "other under every something through with from into that this then than they them were "
    "have been what when will your over only just also some each very more most such must upon "
    "onto whom whose does done made make before during until because against among between "
    "without within toward towards across behind beyond since though although unless whether "
    "himself herself themselves itself nothing anything everything someone anyone everyone "
    "nobody somebody another always never often still even once soon here away back down says "
    "said goes went gets came comes knows knew takes took find finds found tells told might "
    "shall ever spoke year years time times life lives way ways thing things story".split()
)
# words that are rarely nouns: adjectives and verbs a premise often carries
_NOT_NOUNS = frozenset(
    "young little small great strange quiet dark ancient lonely broken hidden forgotten golden "
    "silent distant beautiful famous former final first last other same whole new old long "
    "short tiny huge large cold warm dead alive lost free true real only late early remote "
    "rural local secretive mysterious grieving estranged reclusive elderly stubborn bitter "
    "brave wealthy poor rich blind deaf sick wants needs tries learns must begins returns "
    "discovers uncovers inherits receives becomes decides meets loses keeps hides seeks search "
    "searches follows struggles fights wrote broke chose stole gave fell rose sank left kept "
    "held return discover uncover inherit receive become decide seek follow".split()
)
_ADJ_IVE = frozenset(
    "elusive massive expensive naive furtive protective possessive abusive attractive "
    "aggressive defensive impulsive sensitive secretive reclusive native active passive".split()
)
_SUFFIX_NOUNS = frozenset(  # nouns that end like verbs or adverbs
    "ring string spring wedding building painting evening morning ceiling clothing wing king "
    "sibling darling stocking family belly jelly lily ally folly bully rally assembly supply "
    "holly gully seed shed reed creed steed sled weed tweed speed greed".split()
)
_DETERMINERS = frozenset(
    "a an the her his their my its our your this that these those every some each one two three".split()
)
_SUBJECTS = frozenset(
    "she he they who i we it you which that to nobody someone everyone never ever".split()
)
_CONCRETE = ("letter", "lamp", "river", "key", "photograph", "boat")


def _rng(seed: int, variant: str, *parts: object) -> random.Random:
    blob = json.dumps([seed, variant, *parts], sort_keys=True, default=str)
    return random.Random(int(hashlib.sha256(blob.encode()).hexdigest()[:16], 16))


def motifs(premise: str) -> list[str]:
    """Distinctive nouns of the premise, used as images and objects in the prose (worked out
    once per premise: every chapter's draft asks)."""
    return list(_motifs(premise))


@functools.lru_cache(maxsize=16)
def _motifs(premise: str) -> tuple[str, ...]:
    """:func:`motifs`, uncached.

    Simple heuristics keep nouns only: no function words, no words ending in -ed, -ly or -ing
    (bar a few nouns such as "ring" or "family"), no common adjectives or verbs, no word right after a
    subject pronoun or "to" (a verb), none right before a determiner ("finds a letter"), and no
    proper names mid-sentence. Falls back to concrete objects when nothing is left.
    """
    tokens = re.findall(r"[A-Za-z][A-Za-z-]*|[.!?;:]", re.sub(r"['’]s\b", "", premise))
    seen: list[str] = []
    for i, token in enumerate(tokens):
        word = token.lower()
        if not word.isalpha() or len(word) < 4 or word in _STOP or word in _NOT_NOUNS:
            continue
        if word.endswith(("ed", "ly", "ing")) and word not in _SUFFIX_NOUNS:
            continue
        if word.endswith(("ous", "ful", "less", "able", "ible", "ish")) or word in _ADJ_IVE:
            continue
        before = tokens[i - 1].lower() if i else "."
        after = tokens[i + 1].lower() if i + 1 < len(tokens) else "."
        if before in _SUBJECTS or after in _DETERMINERS:
            continue
        if token[0].isupper() and before not in ".!?;:":
            continue  # a name
        if word not in seen:
            seen.append(word)
    return tuple(seen[:8] or _CONCRETE[:3])


def _premise(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    premise = ctx["premise"]
    found = motifs(premise)
    return {
        "logline": premise if len(premise) < 240 else premise[:237] + "...",
        "genre": ctx.get("genre", "literary fiction"),
        "themes": [f"the cost of {found[0]}", "loyalty against truth", "what a place remembers"],
        "tone": rng.choice(_TONES),
        "pov": "third person limited",
        "tense": "past",
        "premise": premise,
    }


def _world(ctx: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    found = motifs(ctx["premise"]["premise"])
    names = rng.sample([f"{a} {b}" for a in _PLACE_A for b in _PLACE_B], 5)
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
    names = rng.sample(_FIRST, count)
    cast = []
    for i, name in enumerate(names):
        role = _ROLES[i] if i < len(_ROLES) else "ally"
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
                "flaw": rng.choice(_FLAWS),
                "arc": rng.choice(
                    (
                        "learns to trust",
                        "lets go of the past",
                        "chooses honesty",
                        "finds courage",
                        "accepts a loss",
                    )
                ),
                "voice": rng.choice(_VOICES),
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
