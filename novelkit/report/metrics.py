"""Figures of prose, computed from the text alone: no model, no network, no randomness.

Each function takes text (narration and dialogue as written) and returns a number or a small
structure. Chapter-level results are cached by text, so the assemble stage, ``project.report()``
and a comparison of runs work each chapter out once.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import Counter
from dataclasses import dataclass

__all__ = [
    "ChapterFigures",
    "chapter_figures",
    "dialogue_share",
    "flesch_reading_ease",
    "looks_cut_off",
    "mattr",
    "narration",
    "paragraphs",
    "person_of",
    "seam_overlap",
    "sentence_lengths",
    "tense_of",
    "words",
]

MATTR_WINDOW = 500  # Covington & McFall (2010): moving-average type-token ratio, 500-word window
_WORD = re.compile(r"[A-Za-zÀ-ÿ0-9]+(?:['’][A-Za-zÀ-ÿ]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[”\"’')\]]*\s+")
# quoted speech: curly or straight double quotes (a paragraph may leave one open)
_QUOTED = re.compile(r"“[^”]*(?:”|$)|\"[^\"\n]*(?:\"|$)", re.MULTILINE)
_VOWELS = re.compile(r"[aeiouy]+")
_ENDINGS = (".", "!", "?", "…", "”", '"', "’", "'", "*", "—", ")")

# Common verbs in both tenses: narration in the past uses the first form, in the present the
# second. Auxiliaries and the most frequent verbs of fiction carry the signal in a few hundred words.
_TENSE_PAIRS = {
    "was": "is",
    "were": "are",
    "had": "has",
    "did": "does",
    "said": "says",
    "went": "goes",
    "came": "comes",
    "looked": "looks",
    "turned": "turns",
    "thought": "thinks",
    "felt": "feels",
    "knew": "knows",
    "saw": "sees",
    "took": "takes",
    "made": "makes",
    "stood": "stands",
    "walked": "walks",
    "asked": "asks",
    "told": "tells",
    "held": "holds",
    "found": "finds",
    "kept": "keeps",
    "began": "begins",
    "seemed": "seems",
    "opened": "opens",
    "waited": "waits",
    "watched": "watches",
    "smiled": "smiles",
    "nodded": "nods",
    "pulled": "pulls",
    "reached": "reaches",
    "stepped": "steps",
    "sat": "sits",
    "ran": "runs",
    "left": "leaves",
    "wanted": "wants",
    "tried": "tries",
    "heard": "hears",
    "could": "can",
    "would": "will",
}
_PAST = frozenset(_TENSE_PAIRS)
_PRESENT = frozenset(_TENSE_PAIRS.values()) | {"am"}
_FIRST = frozenset({"i", "me", "my", "mine", "myself", "we", "us", "our"})
_SECOND = frozenset({"you", "your", "yours", "yourself"})
_THIRD = frozenset({"he", "she", "him", "her", "his", "hers", "they", "them", "their"})


def words(text: str) -> list[str]:
    """The text's words, lower-cased (letters, digits, inner apostrophes)."""
    return _WORD.findall(text.lower())


def paragraphs(text: str) -> list[str]:
    """Paragraphs of a chapter body: blank-line separated, headings and scene breaks left out."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if block and not block.startswith("#") and block.strip("*· ") != "":
            out.append(block)
    return out


def narration(text: str) -> str:
    """The text with quoted speech removed."""
    return _QUOTED.sub(" ", text)


def dialogue_share(text: str) -> float:
    """Share of the words that are inside quotation marks."""
    total = len(words(text))
    if not total:
        return 0.0
    return round(1 - len(words(narration(text))) / total, 4)


def sentence_lengths(text: str) -> list[int]:
    """Words per sentence, paragraph by paragraph."""
    lengths = []
    for paragraph in paragraphs(text):
        for sentence in _SENTENCE_END.split(paragraph):
            n = len(_WORD.findall(sentence))
            if n:
                lengths.append(n)
    return lengths


def _syllables(word: str) -> int:
    groups = len(_VOWELS.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee")) and groups > 1:
        groups -= 1
    return max(1, groups)


def flesch_reading_ease(text: str) -> float:
    """Flesch (1948) reading ease: 206.835 − 1.015·words/sentence − 84.6·syllables/word.
    Higher reads easier; most published fiction sits between 60 and 90."""
    found = words(text)
    sentences = len(sentence_lengths(text))
    if not found or not sentences:
        return 0.0
    syllables = sum(_syllables(w) for w in found)
    score = 206.835 - 1.015 * len(found) / sentences - 84.6 * syllables / len(found)
    return round(score, 1)


def mattr(tokens: list[str], window: int = MATTR_WINDOW) -> float:
    """Moving-average type-token ratio: the mean share of distinct words in every window of
    ``window`` words (the plain ratio for a shorter text). Unlike TTR it does not fall with
    length, so chapters and books of any size compare."""
    if not tokens:
        return 0.0
    if len(tokens) <= window:
        return round(len(set(tokens)) / len(tokens), 4)
    counts = Counter(tokens[:window])
    total = len(counts)
    for i in range(window, len(tokens)):
        gone, come = tokens[i - window], tokens[i]
        counts[gone] -= 1
        if not counts[gone]:
            del counts[gone]
        counts[come] += 1
        total += len(counts)
    return round(total / ((len(tokens) - window + 1) * window), 4)


def tense_of(text: str) -> tuple[str, float]:
    """``("past" | "present" | "mixed" | "unknown", share of past forms)`` of the narration."""
    counts = Counter(w for w in words(narration(text)) if w in _PAST or w in _PRESENT)
    past = sum(n for w, n in counts.items() if w in _PAST)
    present = sum(n for w, n in counts.items() if w in _PRESENT)
    if past + present < 5:
        return "unknown", 0.0
    share = past / (past + present)
    kind = "past" if share >= 0.7 else "present" if share <= 0.3 else "mixed"
    return kind, round(share, 3)


def person_of(text: str) -> str:
    """``"first" | "second" | "third" | "unknown"``: the narration's grammatical person."""
    counts = Counter(words(narration(text)))
    first = sum(counts[w] for w in _FIRST)
    second = sum(counts[w] for w in _SECOND)
    third = sum(counts[w] for w in _THIRD)
    if first + second + third < 5:
        return "unknown"
    if first >= 0.5 * third and first >= second:
        return "first"
    if second > 0.5 * third and second > first:
        return "second"
    return "third"


def looks_cut_off(text: str) -> bool:
    """The chapter stops mid-sentence: its last paragraph has no closing punctuation."""
    found = paragraphs(text)
    return bool(found) and not found[-1].rstrip().endswith(_ENDINGS)


def seam_overlap(previous_end: str, start: str, n: int = 3) -> float:
    """How much of a chapter's opening paragraph repeats the previous chapter's last one:
    the share of the opening's word trigrams that were in the ending (0 = a clean seam)."""
    a, b = words(previous_end), words(start)
    grams_a = set(zip(*(a[i:] for i in range(n)), strict=False))
    grams_b = list(zip(*(b[i:] for i in range(n)), strict=False))
    if not grams_b:
        return 0.0
    return round(sum(g in grams_a for g in grams_b) / len(grams_b), 3)


@dataclass(frozen=True)
class ChapterFigures:
    words: int
    dialogue_share: float
    sentence_mean: float
    sentence_spread: float  # standard deviation of words per sentence
    readability: float
    mattr: float
    tense: str
    past_share: float
    person: str
    cut_off: bool
    repeated_ngram_share: float  # repeated word 8-grams within the chapter


WITHIN_NGRAM = 8


@functools.lru_cache(maxsize=256)
def chapter_figures(text: str) -> ChapterFigures:
    """Every per-chapter figure, cached by text."""
    tokens = words(text)
    lengths = sentence_lengths(text)
    tense, past = tense_of(text)
    grams = Counter(zip(*(tokens[i:] for i in range(WITHIN_NGRAM)), strict=False))
    total = max(0, len(tokens) - WITHIN_NGRAM + 1)
    repeated = sum(c for c in grams.values() if c > 1)
    return ChapterFigures(
        words=len(tokens),
        dialogue_share=dialogue_share(text),
        sentence_mean=round(statistics.fmean(lengths), 2) if lengths else 0.0,
        sentence_spread=round(statistics.pstdev(lengths), 2) if len(lengths) > 1 else 0.0,
        readability=flesch_reading_ease(text),
        mattr=mattr(tokens),
        tense=tense,
        past_share=past,
        person=person_of(text),
        cut_off=looks_cut_off(text),
        repeated_ngram_share=round(repeated / total, 4) if total else 0.0,
    )
