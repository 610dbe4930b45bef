"""The stock phrases and words the scorecard counts as "slop", versioned.

Source: the kind of list EQ-Bench counts for its "slop score" (github.com/EQ-bench,
creative-writing-bench and Longform; phrases over-represented in language-model fiction
against human writing) and the antislop sampler's lists (github.com/sam-paech/antislop-sampler).
This is novelkit's own short selection of the best-known entries, written out here rather than
copied, so that a figure means the same thing in every run: **bump ``VERSION`` whenever an
entry is added or removed**, and the scorecard records the version it counted with, so two
scorecards compare only when their versions match.

Matching is case-insensitive on whole words; a phrase's words may be separated by any
whitespace. The rate is hits per 1,000 words.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

__all__ = ["PHRASES", "VERSION", "WORDS", "slop_hits"]

VERSION = "novelkit-slop-1"

PHRASES: tuple[str, ...] = (
    "a testament to",
    "a symphony of",
    "a tapestry of",
    "a dance of",
    "a kaleidoscope of",
    "barely above a whisper",
    "sent shivers down",
    "shivers down her spine",
    "shivers down his spine",
    "a shiver ran down",
    "eyes sparkling with",
    "eyes glinting with",
    "a mix of",
    "a mixture of",
    "little did she know",
    "little did he know",
    "the weight of the world",
    "the air was thick with",
    "the air grew thick",
    "hung heavy in the air",
    "a wave of",
    "couldn't help but",
    "could not help but",
    "in the grand scheme of things",
    "it's not about",
    "maybe, just maybe",
    "a stark reminder",
    "a stark contrast",
    "the calm before the storm",
    "time seemed to stand still",
    "breath she didn't know she was holding",
    "breath he didn't know he was holding",
    "a ghost of a smile",
    "the ghost of a smile",
    "with newfound determination",
    "steeled herself",
    "steeled himself",
    "her heart pounding",
    "his heart pounding",
    "an unspoken understanding",
    "palpable tension",
    "the tension was palpable",
    "testament to the",
    "echoed through the",
    "voice dripping with",
    "a pang of",
    "jaw clenched",
    "knuckles white",
    "unbeknownst to",
    "in that moment",
    "something shifted",
)

WORDS: tuple[str, ...] = (
    "tapestry",
    "delve",
    "delved",
    "delving",
    "palpable",
    "myriad",
    "ethereal",
    "labyrinthine",
    "kaleidoscope",
    "symphony",
    "intricate",
    "testament",
    "unwavering",
    "indomitable",
    "camaraderie",
)


_ENTRIES = tuple(sorted({*PHRASES, *WORDS}, key=len, reverse=True))  # longest first wins


@functools.lru_cache(maxsize=64)
def _pattern(entries: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = (r"\s+".join(map(re.escape, e.split())) for e in entries)
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _hits(text: str) -> tuple[tuple[str, int], ...]:
    flat = " ".join(text.lower().split())
    present = tuple(e for e in _ENTRIES if e in flat)  # a fast substring test first
    if not present:
        return ()
    found = Counter(" ".join(m.group(0).lower().split()) for m in _pattern(present).finditer(text))
    return tuple(sorted(found.items()))


def slop_hits(text: str) -> dict[str, int]:
    """Each listed phrase or word found in ``text`` and how often (longest match first, so a
    phrase is not counted again as its words)."""
    return dict(_hits(text.replace("’", "'")))
