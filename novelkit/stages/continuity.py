"""Stage 8: continuity findings with evidence, from the model and from deterministic checks.

The checks run on every backend, the offline one included: a named character missing from
the cast, a dead or absent character acting, a name or place spelled two ways.
"""

from __future__ import annotations

import functools
import re

from .. import _artefacts as a
from .._answers import Shape
from .._pipeline import Outputs, Stage
from .._runner import UnitContext
from ..imports._material import SERIES, optional_material

# each pattern starts with a lookahead for its first letter: the scan skips most positions fast
_SPEECH = re.compile(
    r"(?=[A-Zsarwm])(?:"
    r"\b([A-Z][a-z]{2,})\s+(?:said|asked|replied|whispered|shouted|called|muttered|answered)\b"
    r"|\b(?:said|asked|replied|whispered|shouted|muttered|answered)\s+([A-Z][a-z]{2,})\b)"
)
_ACTS = re.compile(
    r"(?=[A-Z])\b([A-Z][a-z]{2,})\s+(?:said|asked|walked|took|turned|crossed|laughed|shook|waited|"
    r"stood|went|looked|smiled|opened|ran|reached|counted|set|poured)\b"
)
_CAPITALISED = re.compile(r"\b(?=[A-Z])(?<![.!?“\"]\s)(?<!^)([A-Z][a-z]{3,})\b", re.MULTILINE)
_NOT_NAMES = {
    "Then",
    "There",
    "They",
    "That",
    "This",
    "When",
    "What",
    "Where",
    "Nobody",
    "Somewhere",
    "Outside",
    "Later",
    "Every",
    "Chapter",
    "Tell",
    "Show",
    "Not",
    "Who",
    "Say",
}


def _sentence_with(text: str, word: str) -> str:
    for sentence in re.split(r"(?<=[.!?”])\s+", text):
        if re.search(rf"\b{re.escape(word)}\b", sentence):
            return sentence.strip()[:300]
    return word


@functools.lru_cache(maxsize=65_536)  # the same words recur in every chapter
def _distance(x: str, y: str) -> int:
    """Levenshtein distance, small strings only."""
    previous = list(range(len(y) + 1))
    for i, cx in enumerate(x, 1):
        current = [i]
        for j, cy in enumerate(y, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (cx != cy)))
        previous = current
    return previous[-1]


def check_chapter(chapter: int, text: str, cast: a.Cast, world: a.World) -> list[a.Finding]:
    """Deterministic continuity checks of one chapter's text against the story bible."""
    findings: list[a.Finding] = []
    known_words = {part for c in cast.characters for part in c.name.split()}
    place_words = {part for loc in world.locations for part in loc.name.split()}
    known = known_words | place_words
    by_first = {c.name.split()[0]: c for c in cast.characters}

    speakers = {m.group(1) or m.group(2) for m in _SPEECH.finditer(text)}
    for name in sorted(speakers - known - _NOT_NAMES):
        if any(_distance(name, k) <= 1 for k in known):
            continue  # reported below as a spelling variant
        findings.append(
            a.Finding(
                kind="unknown-character",
                severity="warning",
                chapter=chapter,
                quote=_sentence_with(text, name),
                bible_entry="Cast: " + ", ".join(cast.names()),
                explanation=f"{name} speaks but is not in the cast",
            )
        )

    for match in _ACTS.finditer(text):
        person = by_first.get(match.group(1))
        if person is not None and person.status != "alive":
            findings.append(
                a.Finding(
                    kind=f"{person.status}-character-acts",
                    severity="error",
                    chapter=chapter,
                    quote=_sentence_with(text, match.group(1)),
                    bible_entry=f"Character: {person.name} (status: {person.status})",
                    explanation=f"{person.name} is {person.status} in the bible but acts here",
                )
            )
            break

    candidates = set(_CAPITALISED.findall(text)) - known - _NOT_NAMES
    by_length: dict[int, list[str]] = {}  # bible names of four letters or more, by length
    for name in known:
        if len(name) >= 4:
            by_length.setdefault(len(name), []).append(name)
    for word in sorted(candidates):
        near = sorted(  # only names whose length is within the edit limit can match
            canonical
            for size in range(len(word) - 2, len(word) + 3)
            for canonical in by_length.get(size, ())
            if abs(len(word) - size) <= (1 if size < 7 else 2)
        )
        for canonical in near:
            limit = 1 if len(canonical) < 7 else 2
            if _distance(word, canonical) <= limit:
                is_place = canonical in place_words
                entry = (
                    next(
                        (
                            f"Location: {loc.name}"
                            for loc in world.locations
                            if canonical in loc.name.split()
                        ),
                        None,
                    )
                    if is_place
                    else next(
                        (
                            f"Character: {c.name}"
                            for c in cast.characters
                            if canonical in c.name.split()
                        ),
                        None,
                    )
                )
                findings.append(
                    a.Finding(
                        kind="spelling",
                        severity="warning",
                        chapter=chapter,
                        quote=_sentence_with(text, word),
                        bible_entry=entry or canonical,
                        explanation=f"{word!r} looks like a misspelling of {canonical!r}",
                        wrong=word,
                        right=canonical,
                    )
                )
                break
    return findings


class Continuity(Stage):
    name = "continuity"
    version = "2"  # answers shaped by _answers.Shape
    description = "Continuity findings per chapter, with evidence against the story bible."
    inputs = ("characters", "world", "draft")
    per_chapter = True
    parallel = True
    path = "08-continuity/{ch}.json"
    model = a.ContinuityReport
    optional_inputs = (SERIES,)  # a sequel is checked against the book before it too
    prompt = (
        "Check chapter {unit} against the story bible in the material. Report each contradiction "
        "as a finding with the chapter, an exact quote, the bible entry it contradicts and why."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        cast: a.Cast = ctx.read("characters", shared=True)
        world: a.World = ctx.read("world", shared=True)
        draft: a.ChapterText = ctx.read("draft", ctx.chapter)
        context = {
            "unit": unit,
            "chapter": ctx.chapter,
            "text": draft.text,
            "cast": [{"name": c.name, "status": c.status, "role": c.role} for c in cast.characters],
            "locations": [loc.name for loc in world.locations],
            **optional_material(ctx, self.optional_inputs),
        }
        shape = Shape(
            items={"findings": (0, 5)},
            fixed={
                "chapter": ctx.chapter,
                "findings[].chapter": ctx.chapter,
                "findings[].source": "model",
                "findings[].wrong": "",
                "findings[].right": "",
            },
        )
        report = await ctx.json("continuity", context, a.ContinuityReport, shape)
        # evidence is a quote from the chapter: a finding quoting words the chapter does not
        # have is the model's invention, not a contradiction
        model_findings = [f for f in report.findings if _quoted(f.quote, draft.text)]
        checks = check_chapter(ctx.chapter, draft.text, cast, world)
        merged = a.ContinuityReport(chapter=ctx.chapter, findings=model_findings + checks)
        return {self.output_paths(unit)[0]: merged}


def _quoted(quote: str, text: str) -> bool:
    def squeeze(value: str) -> str:
        return " ".join(re.findall(r"[\w'’]+", value.casefold()))

    needle = squeeze(quote)
    return bool(needle) and needle in squeeze(text)
