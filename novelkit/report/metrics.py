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
    "mattr_sums",
    "narration",
    "paragraphs",
    "person_of",
    "plain_words",
    "seam_overlap",
    "sentence_lengths",
    "tense_of",
    "words",
]

MATTR_WINDOW = 500  # Covington & McFall (2010): moving-average type-token ratio, 500-word window
# the same words as novelkit._artefacts.count_words, so a chapter's count is its token count
_WORD = re.compile(r"[\w'’-]+")
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
    """The text's words, lower-cased: runs of letters, digits, apostrophes and hyphens (the
    words ``count_words`` counts, one for one)."""
    return list(map(str.lower, _WORD.findall(text)))


def paragraphs(text: str) -> list[str]:
    """Paragraphs of a chapter body: blank-line separated, headings and scene breaks left out."""
    return list(_paragraphs(text))


@functools.lru_cache(maxsize=256)
def _paragraphs(text: str) -> tuple[str, ...]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if block and not block.startswith("#") and block.strip("*· ") != "":
            out.append(block)
    return tuple(out)


_PUNCTUATION = str.maketrans({c: " " for c in "\"“”‘’'.,;:!?()[]{}—–-…*_/\\"})


def plain_words(text: str) -> list[str]:
    """Lower-case words split at spaces and punctuation: cheaper than :func:`words`, for
    comparing passages with each other (not for counting)."""
    return text.lower().translate(_PUNCTUATION).split()


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
    """Words per sentence, paragraph by paragraph (a word: a run without spaces)."""
    lengths = []
    for paragraph in _paragraphs(text):
        for sentence in _SENTENCE_END.split(paragraph):
            n = len(sentence.split())
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
    tokens = words(text)
    return _flesch(Counter(tokens), len(tokens), len(sentence_lengths(text)))


def _flesch(counts: Counter[str], total: int, sentences: int) -> float:
    if not total or not sentences:
        return 0.0
    syllables = sum(_syllables(w) * n for w, n in counts.items())
    score = 206.835 - 1.015 * total / sentences - 84.6 * syllables / total
    return round(score, 1)


def mattr(tokens: list[str], window: int = MATTR_WINDOW) -> float:
    """Moving-average type-token ratio: the mean share of distinct words in every window of
    ``window`` words (the plain ratio for a shorter text). Unlike TTR it does not fall with
    length, so chapters and books of any size compare."""
    total, windows = mattr_sums(tokens, window)
    return round(total / windows, 4) if windows else 0.0


def mattr_sums(tokens: list[str], window: int = MATTR_WINDOW) -> tuple[float, int]:
    """The sum of the windows' type-token ratios and how many windows: a book's MATTR is the
    sum of its chapters' sums over the sum of their windows (no window spans two chapters)."""
    if not tokens:
        return 0.0, 0
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens), 1
    ids: dict[str, int] = {}
    numbered = [ids.setdefault(t, len(ids)) for t in tokens]  # list indexing beats dict lookups
    counts = [0] * len(ids)
    distinct = 0
    for i in numbered[:window]:
        if not counts[i]:
            distinct += 1
        counts[i] += 1
    total = distinct
    for gone, come in zip(numbered, numbered[window:], strict=False):
        counts[gone] -= 1
        if not counts[gone]:
            distinct -= 1
        if not counts[come]:
            distinct += 1
        counts[come] += 1
        total += distinct
    return total / window, len(tokens) - window + 1


def tense_of(text: str) -> tuple[str, float]:
    """``("past" | "present" | "mixed" | "unknown", share of past forms)`` of the narration."""
    return _tense(Counter(words(narration(text))))


def _tense(counts: Counter[str]) -> tuple[str, float]:
    past = sum(counts[w] for w in _PAST)
    present = sum(counts[w] for w in _PRESENT)
    if past + present < 5:
        return "unknown", 0.0
    share = past / (past + present)
    kind = "past" if share >= 0.7 else "present" if share <= 0.3 else "mixed"
    return kind, round(share, 3)


def person_of(text: str) -> str:
    """``"first" | "second" | "third" | "unknown"``: the narration's grammatical person."""
    return _person(Counter(words(narration(text))))


def _person(counts: Counter[str]) -> str:
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
    mattr_sums: tuple[float, int]  # for the book's MATTR
    tense: str
    past_share: float
    person: str
    cut_off: bool
    repeated_ngram_share: float  # repeated word 12-grams within the chapter


REPORT_NGRAM = 12


@functools.lru_cache(maxsize=256)
def chapter_figures(text: str) -> ChapterFigures:
    """Every per-chapter figure, cached by text (the text is split into words twice: all of
    it, and the narration)."""
    from ..stages.finishing import ngram_profile

    tokens = words(text)
    every = Counter(tokens)
    told = every - Counter(words(" ".join(_QUOTED.findall(text))))  # narration: not quoted
    lengths = sentence_lengths(text)
    tense, past = _tense(told)
    profile = ngram_profile(text, REPORT_NGRAM)
    sums = mattr_sums(tokens)
    spoken = len(tokens) - sum(told.values())
    return ChapterFigures(
        words=len(tokens),
        dialogue_share=round(spoken / len(tokens), 4) if tokens else 0.0,
        sentence_mean=round(statistics.fmean(lengths), 2) if lengths else 0.0,
        sentence_spread=round(statistics.pstdev(lengths), 2) if len(lengths) > 1 else 0.0,
        readability=_flesch(every, len(tokens), len(lengths)),
        mattr=round(sums[0] / sums[1], 4) if sums[1] else 0.0,
        mattr_sums=sums,
        tense=tense,
        past_share=past,
        person=_person(told),
        cut_off=looks_cut_off(text),
        repeated_ngram_share=(
            round(sum(profile.repeated.values()) / profile.total, 4) if profile.total else 0.0
        ),
    )
