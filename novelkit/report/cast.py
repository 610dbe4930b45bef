"""The cast on the page: who appears in which chapter, who was never planned, who never came,
and which names may be one person.

A name counts as a character when it speaks or acts ("Ines said", "asked Ines", "Ines turned",
"Mr Hale"): capitalised words alone are too often places, days or the first word of a sentence.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from pydantic import BaseModel

__all__ = ["Alias", "CastPresence", "StrayName", "cast_presence", "edit_distance"]

_VERBS = (
    "said|asked|replied|whispered|shouted|called|muttered|answered|murmured|snapped|"
    "walked|took|turned|crossed|laughed|shook|waited|stood|went|looked|smiled|opened|ran|"
    "reached|nodded|frowned|sighed|stepped|pulled|pushed|grabbed|knelt|leaned|shrugged|"
    "says|asks|walks|turns|looks|smiles|nods|stands|waits|runs|reaches|laughs"
)
_ACTOR = re.compile(
    rf"\b([A-Z][a-z]{{2,}})\s+(?:{_VERBS})\b"
    r"|\b(?:said|asked|replied|whispered|shouted|muttered|answered|murmured)\s+([A-Z][a-z]{2,})\b"
    r"|\b(?:Mr|Mrs|Ms|Dr|Miss|Captain|Father|Sister|Aunt|Uncle)\.?\s+([A-Z][a-z]{2,})\b"
)
_INSIDE = re.compile(r"(?<=[a-z,;:’'] )([A-Z][a-z]{2,})\b")
NOT_NAMES = frozenset(
    "The Then There They That This These Those When What Where Which While Who Why How "
    "Nobody Somebody Someone Everyone Everybody Somewhere Outside Inside Later Every Chapter "
    "Tell Show Not Say Her His She Him Its Our Your Their And But Yet For Nor Now Once "
    "Perhaps Maybe Still Even Only Just Again Above Below After Before Behind Beside Between "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April "
    "June July August September October November December God Lord Sir Madam Mother "
    "Father Mum Dad Mama Papa Something Nothing Everything Anything Yes Well Here Part "
    "Without With Across Through Over Under Near Far Together Alone Both Each Neither".split()
)


class StrayName(BaseModel):
    name: str
    chapters: list[int]
    quote: str


class Alias(BaseModel):
    names: list[str]
    reason: str


class CastPresence(BaseModel):
    """Mentions of each cast member per chapter (in the order of ``chapters``)."""

    chapters: list[int]
    presence: dict[str, list[int]]
    stray: list[StrayName]
    absent: list[str]
    aliases: list[Alias]


@functools.lru_cache(maxsize=65_536)
def edit_distance(x: str, y: str) -> int:
    """Levenshtein distance (short strings)."""
    previous = list(range(len(y) + 1))
    for i, cx in enumerate(x, 1):
        current = [i]
        for j, cy in enumerate(y, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (cx != cy)))
        previous = current
    return previous[-1]


def _quote(text: str, name: str) -> str:
    for sentence in re.split(r"(?<=[.!?”])\s+", text):
        if re.search(rf"\b{re.escape(name)}\b", sentence):
            return " ".join(sentence.split())[:240]
    return name


def _name_parts(cast: Sequence[str]) -> dict[str, list[str]]:
    """Each character's name parts of three letters or more that no other character shares."""
    counts: dict[str, int] = {}
    for name in cast:
        for part in set(name.split()):
            counts[part] = counts.get(part, 0) + 1
    return {
        name: [p for p in dict.fromkeys(name.split()) if len(p) >= 3 and counts[p] == 1] or [name]
        for name in cast
    }


def cast_presence(
    chapters: Sequence[tuple[int, str]], cast: Sequence[str], places: Sequence[str] = ()
) -> CastPresence:
    """Who appears where. ``chapters`` is (number, text) in order; ``cast`` the planned names;
    ``places`` the world's place names (their words are never taken for people)."""
    owner = {part: name for name, parts in _name_parts(cast).items() for part in parts}
    presence = {name: [0] * len(chapters) for name in cast}
    if owner:  # one pass over each chapter for the whole cast, longest names first
        pattern = re.compile(
            r"\b(?:" + "|".join(map(re.escape, sorted(owner, key=len, reverse=True))) + r")\b"
        )
        for index, (_, text) in enumerate(chapters):
            for part in pattern.findall(text):
                presence[owner[part]][index] += 1
    known = {w for name in cast for w in name.split()} | {w for p in places for w in p.split()}

    # a word counts as a name only where it is capitalised inside a sentence too ("Rain ran"
    # opens a sentence; "Ines watched Corwin" shows Corwin is a name)
    inside = {w for _, text in chapters for w in _INSIDE.findall(text)}
    stray: dict[str, list[int]] = {}
    quotes: dict[str, str] = {}
    for number, text in chapters:
        for match in _ACTOR.finditer(text):
            name = match.group(1) or match.group(2) or match.group(3)
            if name in known or name in NOT_NAMES or (match.group(1) and name not in inside):
                continue
            if number not in stray.setdefault(name, []):
                stray[name].append(number)
            quotes.setdefault(name, _quote(text, name))

    aliases: list[Alias] = []
    first_names: dict[str, list[str]] = {}
    for name in cast:
        first_names.setdefault(name.split()[0], []).append(name)
    for first, names in first_names.items():
        if len(names) > 1:
            aliases.append(
                Alias(names=names, reason=f"the cast has {len(names)} people called {first}")
            )
    strays = []
    for name, where in sorted(stray.items()):
        near = [
            c
            for c in cast
            for part in c.split()
            if len(part) >= 4 and edit_distance(name, part) <= (1 if len(part) < 7 else 2)
        ]
        if near:
            aliases.append(
                Alias(names=[name, near[0]], reason=f"{name!r} is spelled like {near[0]!r}")
            )
            continue
        strays.append(StrayName(name=name, chapters=where, quote=quotes[name]))
    return CastPresence(
        chapters=[number for number, _ in chapters],
        presence=presence,
        stray=strays,
        absent=[name for name, counts in presence.items() if not any(counts)] if chapters else [],
        aliases=aliases,
    )
