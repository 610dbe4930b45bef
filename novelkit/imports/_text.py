"""Plain-text measures of imported prose: names, places, sentences, excerpts within a budget.

Both the extraction prompts (as hints a real model may use) and the offline backend (as its
whole answer) rely on them, so the offline import is deterministic and reads the text itself.
"""

from __future__ import annotations

import re
from collections import Counter

from .._artefacts import SCENE_BREAK

__all__ = ["excerpt", "person", "places", "proper_names", "sentences", "tense"]

_SENTENCE = re.compile(r"(?<=[.!?”\"])\s+(?=[“\"A-Z0-9])")
_CAPS = re.compile(r"\b[A-Z][a-z’']+(?:[ ][A-Z][a-z’']+){0,2}\b")
_PLACE = re.compile(
    r"\b(?:in|at|to|from|into|near|toward|towards|across|through|inside|outside|reached|entered)\s+"
    r"(?:the\s+)?((?:[A-Z][a-z’']+)(?:\s+[A-Z][a-z’']+){0,2})"
)
_COMMON = frozenset(
    "The A An And But Or So Then There They Their That This These Those When What Where Who Why "
    "How He She It We You I His Her Its Our Your My Mine Him Them Us If In On At To From For With "
    "Without By Of Not No Yes Now Later Once After Before Still Even Just Only All Some Every Each "
    "Nothing Something Someone Nobody Everyone Everything Anything Here Outside Inside Behind Above "
    "Below Perhaps Maybe Sometimes Because While Though Although Until Since As Mr Mrs Ms Dr Miss "
    "Sir Lady Lord God Chapter Part Monday Tuesday Wednesday Thursday Friday Saturday Sunday "
    "January February March April May June July August September October November December "
    "Oh Ah Well Please Thank Thanks Good Okay OK Hello Goodbye Yes Tell Show Say Look Come Go "
    "Let Did Do Does Was Were Is Are Had Has Have Would Could Should Will Can Must Might Shall "
    "Never Ever Always Again Too Very Much Many More Most Less First Last Next One Two Three "
    "Say Somewhere Another Other Such Whatever Whoever Which Whose Whom Yet Nor Both Either".split()
)


def sentences(text: str) -> list[str]:
    out = []
    for paragraph in text.split("\n\n"):
        if paragraph.strip() == SCENE_BREAK:
            continue
        out += [s.strip() for s in _SENTENCE.split(paragraph) if s.strip()]
    return out


def _clean_name(name: str) -> str:
    words = name.split()
    while words and words[0] in _COMMON:
        words = words[1:]
    while words and words[-1] in _COMMON:
        words = words[:-1]
    return " ".join(words).removesuffix("’s").removesuffix("'s")


def proper_names(text: str, limit: int = 12) -> list[tuple[str, int]]:
    """Character-like names by how often they occur (mid-sentence capitalised words, with
    a first name folded into the full name it belongs to)."""
    counts: Counter[str] = Counter()
    openers: Counter[str] = Counter()
    for match in _CAPS.finditer(text):
        start = match.start()
        name = _clean_name(match.group(0))
        if not name or len(name) < 3 or name[:2] in ("I'", "I’"):
            continue
        prev = text[max(0, start - 4) : start].rstrip()[-1:] if start else ""
        opener = not prev or prev in '.!?“"”:—'
        if opener and " " not in name and match.group(0).startswith(name):
            openers[name] += 1  # a capitalised sentence opener counts if it occurs mid-sentence too
            continue
        counts[name] += 1
    for name, count in openers.items():
        if counts[name]:
            counts[name] += count
    for place in {p for p, _ in places(text, 20)}:
        counts.pop(place, None)
    full = [n for n in counts if " " in n]
    for name in list(counts):
        if " " in name:
            continue
        owners = [f for f in full if f.split()[0] == name or f.split()[-1] == name]
        if len(owners) == 1:
            counts[owners[0]] += counts.pop(name)
    ranked = [(n, c) for n, c in counts.most_common() if c >= 2]
    return ranked[:limit]


def places(text: str, limit: int = 8) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for match in _PLACE.finditer(text):
        name = _clean_name(match.group(1))
        if name and name not in _COMMON:
            counts[name] += 1
    return counts.most_common(limit)


def person(text: str) -> str:
    words = re.findall(r"\b\w+\b", text[:200_000])
    first = sum(1 for w in words if w in ("I", "me", "my"))
    third = sum(1 for w in words if w.lower() in ("he", "she", "his", "her", "they"))
    if first > third * 0.6 and first > 5:
        return "first person"
    return "third person limited"


def tense(text: str) -> str:
    sample = text[:200_000].lower()
    past = len(re.findall(r"\b(was|were|had|said|looked|went|did)\b", sample))
    present = len(re.findall(r"\b(is|are|has|says|looks|goes|does)\b", sample))
    return "present" if present > past * 1.3 else "past"


def excerpt(text: str, words: int) -> str:
    """The text if it fits in ``words``, else its beginning and end with a marked gap."""
    parts = text.split()
    if len(parts) <= words:
        return text
    head = int(words * 0.6)
    tail = words - head
    return " ".join(parts[:head]) + " […] " + " ".join(parts[-tail:])
